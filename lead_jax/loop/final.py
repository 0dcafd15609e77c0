"""The end of a LEAD-loop run: final evaluation, the IDU check, reports.

  evaluation      `lead_jax.evals.runner` on the final model: the synthetic
                  suite (held-out loss and per-task exact match on the run's
                  test set) and any other configured benchmark
  IDU check       the true current loss (final model) of a seeded sample of
                  pool samples and of selected samples, against the IDU table
                  and against IDU_0 (docs/method.md, claim 4): Pearson and Spearman
                  correlations and mean absolute errors
  files           eval_results.json, accounting.json, final_metrics.json,
                  idu_vs_loss.npz, plots/*.png
  export          with loop.export_dir set, the final model as a merged
                  Hugging Face checkpoint and as PEFT adapters there
                  (`lead_jax.train.export`, docs/export.md), its seconds
                  booked in the `checkpoint` phase

Evaluation passes are booked in the `evaluation` phase: the held-out loss (one
forward per test record, `test_loss`), the generation prefill (one forward per
record over its prompt, `test_generate`) and the decoding steps (`test_decode`:
one token-pass per step and real row of each batch, no sample-passes).
Benchmarks other than the synthetic suite book seconds only.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

import numpy as np

from lead_jax import accounting, artifacts, report, selection
from lead_jax.train import export, scoring
from lead_jax.data import DataError, pool as pool_lib, templates
from lead_jax.offline import stage as offline
from lead_jax.evals import runner, synthetic

log = logging.getLogger(__name__)
_DIAG_SEED = 0xD1A


def check_test_set(data_cfg, path: str) -> None:
  """Reads the held-out test set up front, so bad input stops the run before
  any training (with the data layer's one-line error)."""
  try:
    synthetic.read(data_cfg, path)
  except DataError:
    raise
  except ValueError as e:
    raise DataError(str(e)) from None


def _test_counts(run, path: str, decode_token_passes: int) -> dict:
  """Passes of the synthetic suite: the loss pass, the generation prefill and
  the decoding steps."""
  cfg = run.config
  records = synthetic.read(cfg.data, path, cfg.eval.limit or None)
  template = templates.resolve(run.tok, cfg.data.template)
  lengths = pool_lib.parse_task_lengths(cfg.data.max_length_per_task, cfg.data.max_length)
  pool, _ = pool_lib.build(records, run.tok, template, cfg.data.max_length, lengths)
  n, tokens = len(pool), int(pool.length_N.sum())
  prompt = int((pool.length_N - pool.view_length_N).sum())
  return {
      "test_loss": {"forward_samples": n, "forward_tokens": tokens},
      "test_generate": {"forward_samples": n, "forward_tokens": prompt},
      "test_decode": {"forward_tokens": decode_token_passes}
  }


def evaluate(run, state, ledger):
  """`(report or None, ledger)` of the configured benchmarks on the final model."""
  names = runner.parse_benchmarks(run.config.eval.benchmarks)
  if "synthetic" in names and not run.test_path:
    log.warning("no held-out test set (data.test_path): skipping the synthetic suite")
    names = [n for n in names if n != "synthetic"]
  if not names:
    return None, ledger
  t0 = time.monotonic()
  eval_cfg = run.config.eval.copy_and_resolve_references()
  with eval_cfg.unlocked():
    eval_cfg.benchmarks = ",".join(names)
  result = runner.run(run.model_config, run.params(state), run.tok, eval_cfg, run.config.data,
                      test_path=run.test_path)
  if "synthetic" in names:
    decoded = result["benchmarks"]["synthetic"]["decode_token_passes"]
    for activity, counts in _test_counts(run, run.test_path, decoded).items():
      ledger = accounting.add(ledger, "evaluation", activity, counts)
  return result, accounting.add_seconds(ledger, "evaluation", time.monotonic() - t0)


def export_model(run, state, h, ledger):
  """Writes the final model into `loop.export_dir` when it is set; returns the ledger."""
  out = run.config.loop.export_dir
  if not out:
    return ledger
  t0 = time.monotonic()
  meta = {
      "workdir": os.path.abspath(run.workdir), "method": run.config.method,
      "iteration": h.iteration, "train_steps": h.train_steps
  }
  export.write(out, run.model_config, run.params(state), run.tok, run.base_checkpoint, meta)
  log.info("exported the final model to %s (merged/, adapter/)", out)
  return accounting.add_seconds(ledger, "checkpoint", time.monotonic() - t0)


def _stats(idu_n, idu0_n, loss_n) -> dict:
  from scipy import stats  # only the final report needs it
  out = {"n": int(loss_n.size)}
  for name, x in (("idu", idu_n), ("idu0", idu0_n)):
    ok = loss_n.size > 2 and np.std(x) > 0 and np.std(loss_n) > 0
    out[f"pearson_{name}"] = float(np.corrcoef(x, loss_n)[0, 1]) if ok else None
    out[f"spearman_{name}"] = float(stats.spearmanr(x, loss_n)[0]) if ok else None
    out[f"mae_{name}"] = float(np.mean(np.abs(x - loss_n))) if loss_n.size else None
  return out


def idu_check(run, state, h, ledger):
  """`(summary, arrays, ledger)`: IDU and IDU_0 against the true current loss."""
  t0 = time.monotonic()
  rng = np.random.default_rng([run.config.seed, _DIAG_SEED])
  n = run.config.loop.diag_samples
  pool_ids = np.sort(rng.choice(len(run.pool), min(n, len(run.pool)), replace=False))
  used = np.flatnonzero(h.sel.use_count_N > 0)
  sel_ids = np.sort(rng.choice(used, min(n, used.size), replace=False))
  ids = np.union1d(pool_ids, sel_ids)
  out, counts = scoring.losses(run.steps.score, run.params(state), run.pool, ids,
                               run.config.offline.score_batch_size, run.mesh, desc="IDU check")
  loss, idu_n, idu0_n = out["loss"], h.table.idu_N[ids], run.offline.idu0_N[ids]
  in_pool, in_sel = np.isin(ids, pool_ids), np.isin(ids, sel_ids)
  summary = {
      "all": _stats(idu_n, idu0_n, loss), "pool_sample": _stats(idu_n[in_pool], idu0_n[in_pool],
                                                                loss[in_pool]),
      "selected_sample": _stats(idu_n[in_sel], idu0_n[in_sel], loss[in_sel])
  }
  arrays = {"ids": ids, "loss": loss, "idu": idu_n, "idu0": idu0_n, "selected": np.isin(ids, used)}
  ledger = accounting.add(ledger, "evaluation", "idu_check", counts)
  return summary, arrays, accounting.add_seconds(ledger, "evaluation", time.monotonic() - t0)


def _summary(run, h, result, check) -> dict:
  synth = (result or {}).get("benchmarks", {}).get("synthetic")
  acts = h.ledger.passes["training"]
  training = acts.get("train", {})  # with loop.replay_fraction, the replayed rows' passes too:
  replay = acts.get("replay_train", {})  # train_sample_passes counts every training row
  training = {k: training.get(k, 0) + replay.get(k, 0) for k in set(training) | set(replay)}
  limits = selection.resolve_limits(run.config.select, len(run.pool))
  final = {
      "method":
          run.config.method,
      "pool_size":
          len(run.pool),
      "budget":
          limits.budget,
      "exact_match":
          synth["exact_match"] if synth else None,
      "exact_match_macro":
          synth["exact_match_macro"] if synth else None,
      "test_loss":
          synth["loss"] if synth else None,
      "per_task_exact_match":
          ({t: v["exact_match"] for t, v in synth["per_task"].items()} if synth else {}),
      "per_task_test_loss": ({t: v["loss"] for t, v in synth["per_task"].items()} if synth else {}),
      "samples_selected":
          int(h.sel.num_distinct),
      "samples_trained":
          int(h.trained_N.sum()),
      "iterations":
          h.iteration,
      "train_steps":
          h.train_steps,
      "skipped_steps":
          h.skipped_steps,
      "train_sample_passes":
          int(training.get("forward_samples", 0)),
      "train_token_passes":
          int(training.get("forward_tokens", 0)),
      "forward_sample_passes":
          accounting.forward_sample_passes(h.ledger),
      "declared_scoring_passes":
          run.needs.scoring_passes(
              len(run.pool), h.iteration,
              len(run.dev_pool) if run.dev_pool else 0,
              offline.warmup_size(run.config.offline.warmup_fraction, len(run.pool)))["total"],
      "benchmarks": (result or {}).get("summary", {}),
  }
  if replay:
    final["replay_sample_passes"] = int(replay.get("forward_samples", 0))
  if check is not None:
    final["idu_loss_spearman"] = check["all"]["spearman_idu"]
    final["idu0_loss_spearman"] = check["all"]["spearman_idu0"]
    final["idu_loss_pearson"] = check["all"]["pearson_idu"]
    final["idu0_loss_pearson"] = check["all"]["pearson_idu0"]
    final["idu_check"] = check
  return final


def finish(run, state, h, writer) -> dict:
  """Evaluates, checks the IDU table, writes the reports; returns final_metrics."""
  ledger = h.ledger
  result, ledger = evaluate(run, state, ledger)
  check = arrays = None
  if h.table is not None and run.offline.idu0_N is not None:
    check, arrays, ledger = idu_check(run, state, h, ledger)
  if writer.enabled:
    ledger = export_model(run, state, h, ledger)
  h = dataclasses.replace(h, ledger=ledger)
  final = _summary(run, h, result, check)
  t0 = time.monotonic()
  workdir = run.workdir
  if writer.enabled:
    if result is not None:
      artifacts.write_json(os.path.join(workdir, "eval_results.json"), result)
    if arrays is not None:
      artifacts.save_npz(os.path.join(workdir, "idu_vs_loss.npz"), arrays)
    if run.config.loop.plots:
      report.plots(workdir, arrays, run.offline.num_clusters if run.clusters is not None else 0)
  ledger = accounting.add_seconds(ledger, "evaluation", time.monotonic() - t0)
  final["wall_seconds"] = accounting.wall_seconds(ledger)
  writer.write(
      h.iteration,
      {k: v for k, v in final.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
      split="final")
  if writer.enabled:
    artifacts.write_json(os.path.join(workdir, "accounting.json"), accounting.to_dict(ledger))
    artifacts.write_json(os.path.join(workdir, "final_metrics.json"), final)
  log.info(
      "final: %s", {
          k: final[k] for k in ("exact_match", "test_loss", "samples_selected", "train_steps",
                               "forward_sample_passes")
      })
  return final
