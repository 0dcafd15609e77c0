"""Runs the configured benchmarks on one model and gathers a JSON-able report.

The LEAD loop's final evaluation and `experiments/evaluate.py` both call
`run`; params may be base-only or carry unmerged LoRA adapters (the model
config must then have `lora` set).
"""

from __future__ import annotations

import logging
import os
import time

import jax

from lead_jax.data import templates
from lead_jax.evals import gsm8k, humaneval, mmlu, synthetic, tydiqa

log = logging.getLogger(__name__)
BENCHMARKS = ("mmlu", "gsm8k", "tydiqa", "humaneval", "synthetic")
HEADLINE = {
    "mmlu": "accuracy", "gsm8k": "exact_match", "tydiqa": "f1", "humaneval": ("pass@10", "pass@1"),
    "synthetic": "exact_match"
}


def parse_benchmarks(spec: str) -> list[str]:
  names = [s.strip() for s in spec.split(",") if s.strip()]
  unknown = [n for n in names if n not in BENCHMARKS]
  if unknown:
    raise ValueError(f"unknown benchmarks {unknown}; choose from {list(BENCHMARKS)}")
  return names


def _data_dir(eval_cfg, name: str) -> str:
  if not eval_cfg.data_dir:
    raise ValueError(f"{name} needs eval.data_dir (--data_dir): the folder holding "
                     f"{name}/ (see configs/base_eval.py for the layout)")
  return os.path.join(eval_cfg.data_dir, name)


def _run_one(name, model_config, params, tokenizer, eval_cfg, data_cfg, template, key, test_path):
  limit = eval_cfg.limit or None
  common = (model_config, params, tokenizer)
  if name == "mmlu":
    return mmlu.evaluate(*common, _data_dir(eval_cfg, name), eval_cfg.mmlu, limit=limit)
  if name == "gsm8k":
    return gsm8k.evaluate(*common, _data_dir(eval_cfg, name), eval_cfg.gsm8k, template=template,
                          key=key, limit=limit)
  if name == "tydiqa":
    return tydiqa.evaluate(*common, _data_dir(eval_cfg, name), eval_cfg.tydiqa, template=template,
                           key=key, limit=limit)
  if name == "humaneval":
    return humaneval.evaluate(*common, _data_dir(eval_cfg, name), eval_cfg.humaneval, key=key,
                              limit=limit)
  if not test_path:
    raise ValueError("synthetic needs a held-out test set: set data.test_path, or run on a "
                     "workdir whose synthetic lake holds test.jsonl")
  return synthetic.evaluate(*common, test_path, data_cfg, eval_cfg.synthetic, key=key, limit=limit)


def headline(name: str, result: dict):
  keys = HEADLINE[name] if isinstance(HEADLINE[name], tuple) else (HEADLINE[name],)
  return next((result[k] for k in keys if k in result), None)


def run(model_config, params, tokenizer, eval_cfg, data_cfg, *, test_path: str = "") -> dict:
  """Every benchmark of `eval_cfg.benchmarks`: {"summary", "benchmarks", "seconds"}.

  `data_cfg` gives the chat template (the one used in training) and, for the
  synthetic suite, how test records are read and truncated.
  """
  template = templates.resolve(tokenizer, data_cfg.template)
  root = jax.random.PRNGKey(eval_cfg.seed)
  results, start = {}, time.monotonic()
  for name in parse_benchmarks(eval_cfg.benchmarks):
    t0 = time.monotonic()
    key = jax.random.fold_in(root, BENCHMARKS.index(name))
    result = _run_one(name, model_config, params, tokenizer, eval_cfg, data_cfg, template, key,
                      test_path)
    result["seconds"] = round(time.monotonic() - t0, 2)
    results[name] = result
    log.info("%s: %s (%.1fs)", name, headline(name, result), result["seconds"])
  return {
      "summary": {n: headline(n, r) for n, r in results.items()}, "benchmarks": results,
      "template": template.name, "seconds": round(time.monotonic() - start, 2)
  }
