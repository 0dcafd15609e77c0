"""Diagnostic selectors: reference points for reading LEAD's results, not
methods that compete with it (they use information no method has).

  oracle  uniform random among the pool samples whose record has
          `tier == "clean"` (the synthetic lake labels every record), at the
          distinct budget, in one shot like `random` (the same Generator
          draw). If the pool holds fewer clean samples than the budget, it
          takes all of them and logs a warning.
  replay  the multiset of sample-passes a finished run trained (its
          selected.jsonl), trained as one shuffled set: the same distinct
          samples and the same number of sample-passes, in i.i.d. order. Each
          distinct id is recorded once (use counts, budget); the loop trains
          `passes_M`, each id as often as the source run trained it. Its
          distinct budget is the source run's distinct count
          (select.budget_fraction and budget_samples are ignored; the
          `budget` in final_metrics is still the config's, so the suites set
          budget_samples to the source's distinct count).

Their inputs come from files, read once by the loop's set-up before anything
trains: `read_tiers` (the pool file's `id` and `tier` fields, aligned with
the Pool's order by the records' ids) and `read_replay` (the source run's
selected.jsonl, mapped to this run's pool by source id). A replay run's own
selected.jsonl lines also carry `passes` (how often the id was trained in
the iteration), so a replay of a replay trains the same multiset.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Optional

import numpy as np

from lead_jax.data import DataError, cache, jsonio, saved_train_path
from lead_jax.selection.base import Inputs, Needs
from lead_jax.selection.state import Limits, SelectionState, budget_done

CLEAN = "clean"  # the tier the oracle samples from
SELECTED = "selected.jsonl"  # lead_jax.outputs.SELECTED (not imported: it pulls in jax)
FINAL = "final_metrics.json"
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class OracleSelector:
  """Uniform among the fresh clean samples, the whole budget at once."""
  name: str
  needs: Needs
  limits: Limits
  clean_N: np.ndarray  # bool: the pool record's tier is "clean"

  def __post_init__(self):
    self.clean_N.setflags(write=False)

  def done(self, state: SelectionState) -> bool:
    return state.iteration >= 1 or budget_done(state, self.limits)

  def select(self, state, inputs: Inputs, rng: np.random.Generator) -> np.ndarray:
    fresh = np.flatnonzero(self.clean_N & (state.use_count_N == 0))
    k = min(max(self.limits.budget - state.num_distinct, 0), fresh.size)
    return rng.choice(fresh, size=k, replace=False).astype(np.int64)

  def scores_of(self, ids_S, inputs: Inputs) -> None:
    return None  # unranked


@dataclasses.dataclass(frozen=True)
class ReplaySelector:
  """The source run's distinct samples, once; the loop trains `passes_M`."""
  name: str
  needs: Needs
  limits: Limits
  passes_M: np.ndarray  # int64 pool ids, one per sample-pass of the source run

  def __post_init__(self):
    self.passes_M.setflags(write=False)

  def done(self, state: SelectionState) -> bool:
    return state.iteration >= 1

  def select(self, state, inputs: Inputs, rng) -> np.ndarray:
    ids = np.unique(self.passes_M)
    return ids[state.use_count_N[ids] == 0].astype(np.int64)

  def scores_of(self, ids_S, inputs: Inputs) -> None:
    return None  # unranked


def make_oracle(name: str, needs: Needs, limits: Limits, num_pool: int,
                tier_N: Optional[np.ndarray]) -> OracleSelector:
  """The oracle, from the pool's tiers (`read_tiers`)."""
  if tier_N is None or np.shape(tier_N) != (num_pool,):
    got = None if tier_N is None else np.shape(tier_N)
    raise ValueError(f"selection 'oracle': needs one tier per pool sample (shape "
                     f"({num_pool},)), got {got}.")
  clean_N = np.asarray(tier_N) == CLEAN
  if clean_N.sum() < limits.budget:
    log.warning(
        "oracle: the pool holds %d clean samples, fewer than the budget of %d; "
        "taking all of them", int(clean_N.sum()), limits.budget)
  return OracleSelector(name=name, needs=needs, limits=limits, clean_N=clean_N)


def make_replay(name: str, needs: Needs, limits: Limits, num_pool: int,
                passes_M: Optional[np.ndarray]) -> ReplaySelector:
  """The replay, from the replayed sample-passes (`read_replay`)."""
  passes_M = np.asarray([] if passes_M is None else passes_M, np.int64)
  if not passes_M.size or passes_M.min() < 0 or passes_M.max() >= num_pool:
    raise ValueError(f"selection 'replay': needs the replayed sample-passes as pool ids in "
                     f"[0, {num_pool}), got {passes_M.size} ids.")
  distinct = int(np.unique(passes_M).size)  # the source run's distinct budget
  return ReplaySelector(name=name, needs=needs, passes_M=passes_M,
                        limits=Limits(budget=distinct, t_max=1, reuse_cap=limits.reuse_cap))


def read_tiers(path: str, source_ids_N, max_record_bytes: int) -> np.ndarray:
  """The `tier` of every pool sample (str array in the Pool's order), from the
  pool file's records, matched by their `id`."""
  how = ("the oracle needs a `tier` field on every record of the pool file "
         "(e.g. the synthetic lake)")
  if not os.path.isfile(path):
    raise DataError(f"{path}: not a JSON or JSONL pool file; {how}")
  tier = {}
  for where, item in jsonio.items(path, max_record_bytes):
    if not isinstance(item, dict):  # rejected by the data layer: not in the pool
      continue
    if "tier" not in item:
      raise DataError(f"{where}: the record has no `tier` field; {how}")
    if item.get("id") is not None:
      tier[str(item["id"])] = str(item["tier"])
  missing = [s for s in source_ids_N if str(s) not in tier]
  if missing:
    raise DataError(f"{path}: pool sample {missing[0]!r} has no record with an `id` and a "
                    f"`tier` ({len(missing)} such samples); {how}")
  return np.array([tier[str(s)] for s in source_ids_N], dtype=np.str_)


def _check_source(workdir: str, pool, pool_path: str) -> dict:
  """The finished run's final metrics; errors for a missing or unfinished run
  or another pool (size, or file bytes where the run's pool file is known)."""
  if not workdir:
    raise DataError("method=replay needs select.replay_from: the workdir of a finished run "
                    "whose selected.jsonl to train")
  if not os.path.isdir(workdir):
    raise DataError(f"{workdir}: select.replay_from is not a directory; give the workdir of "
                    "a finished run")
  final = os.path.join(workdir, FINAL)
  if not os.path.isfile(final):
    raise DataError(f"{final}: not found, the run has not finished; replay a finished run "
                    "(select.replay_from)")
  with open(final, encoding="utf-8") as f:
    metrics = json.load(f)
  if not isinstance(metrics, dict) or "pool_size" not in metrics:
    raise DataError(f"{final}: has no pool_size; select.replay_from must be a LEAD-loop run")
  if int(metrics["pool_size"]) != len(pool):
    raise DataError(f"{final}: the run's pool has {metrics['pool_size']} samples, this run's "
                    f"{len(pool)}; replay with the source run's data config")
  source = saved_train_path(workdir)
  if (source and os.path.isfile(pool_path) and
      cache.file_digest(source) != cache.file_digest(pool_path)):
    raise DataError(f"{workdir}: its pool file {source} differs from this run's "
                    f"{pool_path}; replay on the same pool file")
  return metrics


def read_selected(path: str, fix: str) -> list[tuple[int, str, str, int]]:
  """`(line number, source_id, task or '', passes)` of every line of a
  selected.jsonl (`passes` defaults to 1); a line that is not one raises
  DataError ending with `fix` (what to point at instead)."""
  out = []
  with open(path, encoding="utf-8") as f:
    for line_no, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        r = json.loads(line)
        sid, task, passes = str(r["source_id"]), str(r.get("task") or ""), int(r.get("passes", 1))
      except (ValueError, KeyError, TypeError, AttributeError):
        raise DataError(f"{path}:{line_no}: not a selected.jsonl line (JSON with a `source_id`); "
                        f"{fix}") from None
      if passes < 0:
        raise DataError(f"{path}:{line_no}: passes={passes} is negative; fix or regenerate the "
                        "file")
      out.append((line_no, sid, task, passes))
  return out


def check_passes(path: str, count: int, metrics: dict) -> None:
  """`count` sample-passes listed in `path` equal the run's trained ones (its
  final metrics' train_sample_passes, when recorded)."""
  trained = metrics.get("train_sample_passes")
  if trained is not None and int(trained) != count:
    raise DataError(f"{path}: lists {count} sample-passes but the run trained "
                    f"{trained} ({FINAL}); use a run whose selected.jsonl lists every pass "
                    "(an iterative method, a replay, or a one-shot run of 1 epoch, without "
                    "loop.replay_fraction)")


def read_replay(workdir: str, pool, pool_path: str) -> np.ndarray:
  """`passes_M`: the `pool` ids (data.Pool) of every sample-pass listed in
  `<workdir>/selected.jsonl` (a line counts `passes` times, default once),
  matched by source id; the lines' tasks must agree with the pool's."""
  metrics = _check_source(workdir, pool, pool_path)
  path = os.path.join(workdir, SELECTED)
  if not os.path.isfile(path):
    raise DataError(f"{path}: not found; select.replay_from must be a finished run's workdir")
  index = {str(s): i for i, s in enumerate(pool.source_ids)}
  ids, counts = [], []
  for line_no, sid, task, passes in read_selected(path, "point select.replay_from at a run's "
                                                  "workdir"):
    i = index.get(sid)
    if i is None or (task and task != pool.task_names[int(pool.task_N[i])]):
      raise DataError(f"{path}:{line_no}: sample {sid!r} ({task or 'no task'}) is not in "
                      "this run's pool; replay on the pool file the source run used")
    ids.append(i)
    counts.append(passes)
  passes_M = np.repeat(np.asarray(ids, np.int64), np.asarray(counts, np.int64))
  if not passes_M.size:
    raise DataError(f"{path}: lists no sample-passes; replay a run that trained something")
  check_passes(path, passes_M.size, metrics)
  return passes_M
