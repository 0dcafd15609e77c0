"""Held-out evaluation on messages JSONL test sets (the synthetic lake's, or any).

Every record of the test file ends with an assistant turn, the reference.
  loss         the per-example response loss (token-mean cross-entropy over
               the response, the training loss), averaged over examples, per
               task and overall; samples are tokenised and truncated exactly
               like the training pool (`lead_jax.data`)
  exact match  greedy generation from the conversation up to the last
               assistant header (the data layer's template), stopped at EOS /
               end of turn; the output and the reference are compared after
               stripping surrounding whitespace; per task, overall (mean over
               examples) and macro (mean over tasks)
`limit` keeps the first `limit` records of every task.
"""

from __future__ import annotations

import collections
import dataclasses

import jax
import numpy as np

from lead_jax.train import scoring
from lead_jax.data import load, pool as pool_lib, templates
from lead_jax.evals import lm


def read(data_cfg, path: str, limit: int | None = None):
  """Validated test records, at most `limit` per task, in file order."""
  records, _ = load.read_records(data_cfg, path)
  for r in records:
    if r.messages[-1][0] != "assistant":
      raise ValueError(f"{r.where}: a test record must end with the assistant's reference")
  if not limit:
    return records
  kept, seen = [], collections.Counter()
  for r in records:
    seen[r.task] += 1
    if seen[r.task] <= limit:
      kept.append(r)
  return kept


def held_out_loss(model_config, params, tokenizer, records, data_cfg, template, batch_size):
  """{task: mean response loss} and the overall mean over examples (packed
  forward passes, `lead_jax.train.scoring.losses`, `batch_size` rows per call)."""
  task_lengths = pool_lib.parse_task_lengths(data_cfg.max_length_per_task, data_cfg.max_length)
  pool, _ = pool_lib.build(records, tokenizer, template, data_cfg.max_length, task_lengths)
  pool = dataclasses.replace(
      pool, buckets=load.normalize_buckets(tuple(data_cfg.buckets), data_cfg.max_length))
  out, _ = scoring.losses(
      scoring.Scorer(model_config, batch_size), params, pool, np.arange(len(pool)), batch_size,
      None, desc="held-out loss")
  loss_N = out["loss"].astype(np.float64)
  tasks = np.asarray(pool.task_names)[pool.task_N]
  per_task = {t: float(loss_N[tasks == t].mean()) for t in pool.task_names}
  return float(loss_N.mean()) if len(loss_N) else 0.0, per_task


def generate(model_config, params, tokenizer, records, template, cfg, key,
             stats: dict | None = None) -> list[str]:
  """Greedy responses to every record's conversation up to its last assistant
  turn; `stats` accumulates the decoding token-passes (`lm.generate`)."""
  ids = [templates.encode_prompt(template, tokenizer, r.messages[:-1]) for r in records]
  return lm.generate(model_config, params, tokenizer, ids, key, batch_size=cfg.batch_size,
                     max_new_tokens=cfg.max_new_tokens, extra_eos_ids=templates.stop_token_ids(
                         template, tokenizer), desc="synthetic", stats=stats)


def exact_match(records, outputs: list[str]):
  """(overall, macro over tasks, {task: fraction}) of stripped exact matches."""
  hits = collections.defaultdict(list)
  for r, out in zip(records, outputs):
    hits[r.task].append(out.strip() == r.messages[-1][1].strip())
  per_task = {t: float(np.mean(h)) for t, h in sorted(hits.items())}
  overall = float(np.mean([h for v in hits.values() for h in v])) if hits else 0.0
  macro = float(np.mean(list(per_task.values()))) if per_task else 0.0
  return overall, macro, per_task


def evaluate(model_config, params, tokenizer, test_path: str, data_cfg, cfg, *, key: jax.Array,
             limit: int | None = None):
  """Loss and exact match on `test_path`; `cfg` is the `synthetic` sub-config,
  `data_cfg` the data sub-config of the run (template, lengths, format)."""
  template = templates.resolve(tokenizer, data_cfg.template)
  records = read(data_cfg, test_path, limit)
  loss, loss_per_task = held_out_loss(model_config, params, tokenizer, records, data_cfg, template,
                                      cfg.batch_size)
  stats = {"decode_token_passes": 0}
  outputs = generate(model_config, params, tokenizer, records, template, cfg, key, stats)
  em, em_macro, em_per_task = exact_match(records, outputs)
  return {
      "loss":
          loss, "exact_match":
              em, "exact_match_macro":
                  em_macro, "decode_token_passes":
                      stats["decode_token_passes"],
      "per_task": {
          t: {"loss": loss_per_task.get(t), "exact_match": em_per_task[t]} for t in em_per_task
      }, "num_examples":
          len(records),
      "examples": [
          {"reference": r.messages[-1][1], "output": o} for r, o in list(zip(records, outputs))[:5]
      ]
  }
