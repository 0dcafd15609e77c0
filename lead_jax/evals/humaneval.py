"""HumanEval: sampled completions run in the sandbox, unbiased pass@k (open-instruct).

File: <dir>/HumanEval.jsonl.gz (or HumanEval.jsonl), openai/human-eval's
problems: `task_id`, `prompt`, `entry_point`, `canonical_solution`, `test`.

Each prompt is completed as plain text (no chat template; the tokenizer's
special tokens added, e.g. BOS), `num_samples` times at `temperature` with
top-p 0.95, up to 512 new tokens, cut at the Codex stop sequences. A sample
passes when
  prompt + completion + "\\n" + test + "\\n" + f"check({entry_point})"
runs to its end in the sandbox within `timeout_s` (3 s, human-eval's value).
pass@k is the unbiased estimator averaged over problems, reported for each k
<= num_samples. `limit` keeps `random.Random(42).sample(problems, limit)`.
"""

from __future__ import annotations

import collections
import gzip
import json
import os
import random

import jax

from lead_jax.evals import lm, metrics, sandbox

STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
FILES = ("HumanEval.jsonl.gz", "HumanEval.jsonl")


def find_file(data_dir: str) -> str:
  for name in FILES:
    path = os.path.join(data_dir, name)
    if os.path.isfile(path):
      return path
  raise FileNotFoundError(f"HumanEval: none of {FILES} in {data_dir}; get HumanEval.jsonl.gz "
                          "from openai/human-eval (experiments.fetch_assets writes it)")


def read_problems(path: str) -> list[dict]:
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rt", encoding="utf-8") as f:
    problems = [json.loads(line) for line in f if line.strip()]
  for p in problems:
    missing = {"task_id", "prompt", "entry_point", "test"} - set(p)
    if missing:
      raise ValueError(f"{path}: problem {p.get('task_id', '?')} lacks {sorted(missing)}")
  return problems


def check_program(problem: dict, completion: str) -> str:
  """The program human-eval runs for one completion."""
  return (problem["prompt"] + completion + "\n" + problem["test"] + "\n" +
          f"check({problem['entry_point']})")


def score(problems: list[dict], completions: list[str], cfg) -> dict:
  """pass@k of `cfg.num_samples` completions per problem (grouped by problem)."""
  n = cfg.num_samples
  if len(completions) != n * len(problems):
    raise ValueError(f"{len(completions)} completions for {len(problems)} problems x {n}")
  programs = [check_program(problems[i // n], c) for i, c in enumerate(completions)]
  results = sandbox.execute_many(programs, cfg.timeout_s, cfg.memory_mb, workers=cfg.workers,
                                 desc="humaneval tests")
  correct = [sum(r.passed for r in results[i * n:(i + 1) * n]) for i in range(len(problems))]
  out = metrics.mean_pass_at_k([n] * len(problems), correct, cfg.ks)
  out.update(
      num_problems=len(problems), samples_per_problem=n,
      statuses=dict(collections.Counter(r.status for r in results)),
      per_problem={p["task_id"]: c for p, c in zip(problems, correct)})
  return out


def evaluate(model_config, params, tokenizer, data_dir: str, cfg, *, key: jax.Array,
             limit: int | None = None):
  """pass@k (0-1) per k; `cfg` is the `humaneval` sub-config."""
  problems = read_problems(find_file(data_dir))
  if limit and len(problems) > limit:
    problems = random.Random(42).sample(problems, limit)
  n = cfg.num_samples
  prompt_ids = [tokenizer.encode(p["prompt"]) for p in problems]
  completions = lm.generate(
      model_config, params, tokenizer, [ids for ids in prompt_ids for _ in range(n)], key,
      batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
      top_p=cfg.top_p, stop_strings=STOP_SEQUENCES, desc="humaneval")
  out = score(problems, completions, cfg)
  out["examples"] = [{"task_id": problems[i // n]["task_id"], "completion": c}
                     for i, c in enumerate(completions[:5])]
  return out
