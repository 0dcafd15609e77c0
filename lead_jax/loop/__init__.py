"""The LEAD loop: offline stage -> selection iterations -> final evaluation.

The only code that sees the whole config; every library call gets its
sub-config. Per iteration t (until the selector is done: distinct budget
reached, T_max, or a one-shot selector's single iteration):

  selection  bandit draw (selectors with needs.bandit; m =
             select.clusters_per_iteration distinct arms, without
             replacement), selection.select on the IDU table (needs.idu;
             `idu.ranking_scores`: with idu.reference = warmup, IDU - w IL),
             on fresh scores of the whole pool under the current model
             (needs.rescore: iterative_rescore, N or 2N forward passes booked
             as `selection/rescore`) or on the selector's fixed scores, once
             per drawn cluster (S_t: their union), record (selected.jsonl's
             scores: selector.scores_of)
  training   one pass over S_t shuffled by the run's NumPy Generator (one-shot
             selectors: loop.static_epochs passes; with loop.replay_fraction
             f > 0, S_t and round(f |S_t| / (1 - f)) earlier selected samples
             shuffled together, booked as `training/replay_train`),
             fixed-shape batches; the LEAD step (per-example loss, dL,
             projected gradients) when loop.train_step resolves to it (auto:
             the registry's default, the LEAD step when the IDU table is
             kept), else the plain step (the same update); one fetch per step
  selection  idu.update from the fetched outputs of S_t (per drawn arm, on its
             rows), reward, bandit.update (once per drawn arm, in draw order)
  outputs    selected.jsonl, bandit.jsonl, metrics.jsonl, IDU snapshot
  checkpoint device state + host state (IDU table, bandit, selection state,
             Generator state, history, accounting) every checkpoint.every_steps
             iterations and after the last one

Per-step keys are fold_in(step key, global step); every host draw comes from
one Generator whose state is checkpointed, so a run resumed from any
checkpoint repeats the uninterrupted run bit for bit (on CPU).

One-shot selectors (the registry's schedule one_shot, `lead_jax.selection.registry`:
full, random, random_balanced, ppl, ifd, superfilter, less, and the oracle
diagnostic) select their whole subset in iteration 0 and train
`loop.static_epochs` epochs over it (a fractional last epoch takes the head
of a fresh permutation). Equal distinct budget is guaranteed by the
selector; comparable training compute is the experimenter's choice of
static_epochs (experiments/main.py and the suites set it so that the
sample-passes equal the LEAD run's: `experiments.suites.matched`), and
final_metrics reports training steps and sample-passes side by side so any
mismatch is visible. The replay diagnostic trains another run's selected
multiset (its samples, each as often as that run trained it) in one
shuffled pass.

The two schedules against forgetting (`lead_jax.loop.schedule`,
docs/method.md "Schedules that do not forget") are off by default: m = 1 and
f = 0 run the paper's LEAD, bit for bit.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable

from etils import epath

from lead_jax import accounting, lock, metrics, outputs, preempt
from lead_jax.train import checkpoint, sharding
from lead_jax.data import DataError
from lead_jax.loop import checks, final, host as host_lib, iteration as iteration_lib
from lead_jax.loop.setup import Run, setup

log = logging.getLogger(__name__)

__all__ = ["Run", "run", "setup"]


def _restore(run: Run, manager, state, shardings, fresh: host_lib.Host):
  """`(state, host)` of the newest checkpoint, or the fresh ones."""
  if not (run.config.checkpoint.resume and manager.latest_step() is not None):
    return state, fresh
  t0 = time.monotonic()
  state, raw = manager.restore(checkpoint.abstract(state, shardings))
  h = host_lib.from_dict(raw)
  if h.fingerprint != run.fingerprint:
    raise DataError(f"{run.workdir}: its checkpoints belong to another pool, model or "
                    "method; use a fresh --workdir")
  setup_s = fresh.ledger.seconds["setup"] + time.monotonic() - t0
  log.info("resumed after iteration %d", h.iteration)
  return state, dataclasses.replace(h, ledger=accounting.add_seconds(h.ledger, "setup", setup_s))


def _phase_seconds(h, *phases: str) -> float:
  return sum(h.ledger.seconds[p] for p in phases)


def run(config, workdir: str, say: Callable[[str], None] = log.info) -> dict:
  """Offline stage, iterations, final evaluation; returns the final metrics.

  `say` gets one line per phase with its wall seconds (set-up and offline
  stage, the iterations, the final evaluation); `experiments.main` prints them.
  The workdir is locked for the run (`lead_jax.lock`: a second process on it
  gets `lock.Busy`). SIGTERM or SIGINT during the iterations finishes the
  iteration in flight, checkpoints it and raises `preempt.Preempted`
  (`lead_jax.preempt`); the same call then resumes from that checkpoint.
  """
  checks.check(config)  # before the lock creates the workdir: a bad config writes nothing
  sharding.initialize(config.mesh)  # before the lock asks for the process index
  with lock.held(workdir):
    return _run(config, workdir, say)


def _check_settings(config, workdir: str) -> None:
  """A checkpoint resumes only under the config it was made with (`host.SHAPING`):
  checked before anything is built or written (no checkpoints: nothing to check)."""
  directory = checkpoint.directory(config.checkpoint, workdir)
  if not (config.checkpoint.resume and epath.Path(directory).exists()):
    return
  manager = checkpoint.Manager(directory, config.checkpoint)
  try:
    saved = manager.host_json()
  finally:
    manager.close()
  diff = host_lib.changed(saved.get("settings") if saved else None, host_lib.settings(config))
  if diff:
    more = f" and {len(diff) - 1} more" if len(diff) > 1 else ""
    raise DataError(f"{workdir}: its checkpoints were made with {diff[0]}{more}; rerun with "
                    "the checkpoint's settings to resume, or use a fresh --workdir")


def _run(config, workdir: str, say: Callable[[str], None]) -> dict:
  t0 = time.monotonic()
  _check_settings(config, workdir)
  run_, state, shardings, ledger = setup(config, workdir)
  manager = checkpoint.Manager(checkpoint.directory(config.checkpoint, workdir), config.checkpoint)
  state, h = _restore(run_, manager, state, shardings, host_lib.initial(run_, ledger))
  say(f"set-up and offline stage: {time.monotonic() - t0:.0f} s"
      f" (the offline artifacts' recorded cost: {ledger.seconds['offline']:.0f} s)" +
      (f"; resumed after iteration {h.iteration}" if h.iteration else ""))
  files, writer = outputs.Files(workdir), metrics.Writer(workdir)
  files.rewind(h.iteration)
  writer.truncate_after(h.iteration, drop_splits=("final",))
  if h.iteration == 0 and h.table is not None:
    files.snapshot("init", h.table.idu_N)
  every = max(int(config.checkpoint.every_steps), 1)
  t0, first, before = time.monotonic(), h.iteration, h
  with preempt.watch() as stop:
    while not run_.selector.done(h.sel):
      state, h = iteration_lib.run_iteration(run_, state, h, files, writer)
      t1 = time.monotonic()
      last = run_.selector.done(h.sel)
      signum = preempt.agree(stop)  # fixed for this iteration, the same on every process
      manager.save(h.iteration, state, host_lib.to_dict(h), force=last or
                   h.iteration % every == 0 or signum is not None)
      h = dataclasses.replace(
          h, ledger=accounting.add_seconds(h.ledger, "checkpoint",
                                           time.monotonic() - t1))
      if signum and not last:
        manager.close()
        writer.close()
        raise preempt.Preempted(
            signum,
            preempt.message(stop, f"iteration {h.iteration - 1}",
                            checkpoint.directory(config.checkpoint, workdir)))
  t1 = time.monotonic()
  manager.close()
  h = dataclasses.replace(
      h, ledger=accounting.add_seconds(h.ledger, "checkpoint",
                                       time.monotonic() - t1))
  spent = {
      p: _phase_seconds(h, p) - _phase_seconds(before, p)
      for p in ("training", "selection", "evaluation", "checkpoint")
  }
  n = h.iteration - first
  say(f"{n} iteration{'' if n == 1 else 's'}: {time.monotonic() - t0:.0f} s (training "
      f"{spent['training']:.0f} s, selection {spent['selection']:.0f} s, checkpoints "
      f"{spent['checkpoint']:.0f} s)")
  t0 = time.monotonic()
  result = final.finish(run_, state, h, writer)
  writer.close()
  say(f"final evaluation and report: {time.monotonic() - t0:.0f} s; {workdir}/final_metrics.json")
  return result
