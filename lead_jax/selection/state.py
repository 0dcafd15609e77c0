"""Per-sample selection state, the static strata layout, budget and stopping.

Per pool sample the host keeps (bytes): IDU float32 (4, in `idu.IduState`),
use count uint8 (1), cluster uint8 (1), task uint16 (2) and its position in the
strata layout int32 (4): 12 bytes. "Ever selected" is `use_count > 0`, and the
distinct count is carried incrementally, so no pass over N is needed for it.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

MAX_USES = np.iinfo(np.uint8).max


@dataclasses.dataclass(frozen=True)
class Layout:
  """Static strata: pool ids grouped by (cluster, task), ascending inside.

  Stratum g = cluster * num_tasks + task holds
  `order_N[offsets_G1[g]:offsets_G1[g + 1]]`, so a cluster's members are one
  contiguous slice and its task strata are consecutive sub-slices.
  """
  cluster_N: np.ndarray  # uint8
  task_N: np.ndarray  # uint16
  order_N: np.ndarray  # int32 pool ids sorted by (cluster, task, id)
  offsets_G1: np.ndarray  # int64 stratum boundaries into order_N
  num_clusters: int
  num_tasks: int

  def __post_init__(self):
    for name in ("cluster_N", "task_N", "order_N", "offsets_G1"):
      getattr(self, name).setflags(write=False)

  @property
  def num_pool(self) -> int:
    return int(self.order_N.shape[0])

  @property
  def counts_CxT(self) -> np.ndarray:
    return np.diff(self.offsets_G1).reshape(self.num_clusters, self.num_tasks)

  def members(self, cluster: int) -> np.ndarray:
    t = self.num_tasks
    return self.order_N[self.offsets_G1[cluster * t]:self.offsets_G1[(cluster + 1) * t]]

  def stratum_bounds(self, cluster: int) -> np.ndarray:
    """Task boundaries relative to `members(cluster)`, length num_tasks + 1."""
    t = self.num_tasks
    bounds = self.offsets_G1[cluster * t:(cluster + 1) * t + 1]
    return bounds - bounds[0]

  def nbytes(self) -> int:
    return sum(getattr(self, n).nbytes for n in ("cluster_N", "task_N", "order_N", "offsets_G1"))


def build_layout(cluster_N, task_N, num_clusters: int, num_tasks: int) -> Layout:
  cluster_N, task_N = np.asarray(cluster_N), np.asarray(task_N)
  if cluster_N.shape != task_N.shape or cluster_N.ndim != 1:
    raise ValueError(f"selection: cluster_N {cluster_N.shape} and task_N "
                     f"{task_N.shape} must be 1-D arrays of the pool's size.")
  if not 1 <= num_clusters <= 256 or not 1 <= num_tasks <= 65536:
    raise ValueError(f"selection: {num_clusters} clusters / {num_tasks} tasks "
                     "exceed the uint8 / uint16 per-sample state "
                     "(256 / 65536).")
  for name, a, hi in (("cluster", cluster_N, num_clusters), ("task", task_N, num_tasks)):
    if a.size and (a.min() < 0 or a.max() >= hi):
      raise ValueError(f"selection: {name} ids must lie in [0, {hi}), got "
                       f"[{a.min()}, {a.max()}]; renumber them densely.")
  if cluster_N.size >= 2**31:
    raise ValueError("selection: pools of 2**31 samples or more need int64 "
                     "ids.")
  key_N = cluster_N.astype(np.int64) * num_tasks + task_N
  if num_clusters * num_tasks <= 65536:  # 16-bit keys sort by radix in O(N)
    key_N = key_N.astype(np.uint16)
  order_N = np.argsort(key_N, kind="stable").astype(np.int32)
  counts = np.bincount(key_N, minlength=num_clusters * num_tasks)
  offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
  return Layout(
      cluster_N=cluster_N.astype(np.uint8), task_N=task_N.astype(np.uint16), order_N=order_N,
      offsets_G1=offsets, num_clusters=num_clusters, num_tasks=num_tasks)


@dataclasses.dataclass(frozen=True)
class Limits:
  budget: int  # distinct samples to select in total
  t_max: int  # iterations at most
  reuse_cap: int  # candidates have use count < reuse_cap


def resolve_limits(cfg, num_pool: int) -> Limits:
  """Budget: `budget_samples` when > 0, else floor(budget_fraction * N)."""
  if cfg.budget_samples > 0:
    budget = int(cfg.budget_samples)
  else:
    budget = int(math.floor(cfg.budget_fraction * num_pool + 1e-9))
  if not 1 <= budget <= num_pool:
    raise ValueError(f"select: the budget resolves to {budget} samples for a pool of "
                     f"{num_pool}; set select.budget_fraction or select.budget_samples so "
                     "that it lies in [1, N].")
  if not 1 <= cfg.reuse_cap <= MAX_USES:
    raise ValueError(f"select.reuse_cap must be in [1, {MAX_USES}] (uint8 use "
                     f"counts), got {cfg.reuse_cap}.")
  if cfg.t_max < 1:
    raise ValueError(f"select.t_max must be >= 1, got {cfg.t_max}.")
  return Limits(budget=budget, t_max=int(cfg.t_max), reuse_cap=int(cfg.reuse_cap))


@dataclasses.dataclass(frozen=True)
class SelectionState:
  use_count_N: np.ndarray  # uint8 iterations each sample was selected in
  num_distinct: int  # samples with use_count > 0
  iteration: int  # iterations recorded so far

  def __post_init__(self):
    self.use_count_N.setflags(write=False)


def init_state(num_pool: int) -> SelectionState:
  return SelectionState(use_count_N=np.zeros(num_pool, np.uint8), num_distinct=0, iteration=0)


def record(state: SelectionState, ids_S: np.ndarray) -> SelectionState:
  """The state after training on `ids_S` (distinct) in one iteration."""
  ids_S = np.asarray(ids_S, np.int64)
  sorted_S = np.sort(ids_S)  # (np.unique hashes, much slower at this size)
  if (sorted_S[1:] == sorted_S[:-1]).any():
    raise ValueError("selection.record: ids_S holds duplicates; a selection "
                     "is a set of distinct pool ids.")
  uses_S = state.use_count_N[ids_S]
  if (uses_S == MAX_USES).any():
    raise ValueError(f"selection.record: a sample would exceed {MAX_USES} "
                     "uses (uint8 counter); lower select.reuse_cap.")
  use_count_N = state.use_count_N.copy()
  use_count_N[ids_S] += 1
  num_new = int((uses_S == 0).sum())
  return SelectionState(use_count_N=use_count_N, num_distinct=state.num_distinct + num_new,
                        iteration=state.iteration + 1)


def budget_done(state: SelectionState, limits: Limits) -> bool:
  """Stop rule: the distinct budget is reached or T_max iterations ran."""
  return state.num_distinct >= limits.budget or state.iteration >= limits.t_max


def to_dict(state: SelectionState) -> dict[str, np.ndarray]:
  return {
      "use_count_N": np.array(state.use_count_N),
      "num_distinct": np.array(state.num_distinct,
                               np.int64), "iteration": np.array(state.iteration, np.int64)
  }


def from_dict(d) -> SelectionState:
  if set(d) != {"use_count_N", "num_distinct", "iteration"}:
    raise ValueError(f"selection.from_dict: unexpected keys {sorted(d)}; the "
                     "checkpoint is not a selection state.")
  use_count_N = np.array(d["use_count_N"], np.uint8)
  num_distinct = int(d["num_distinct"])
  if num_distinct != int(np.count_nonzero(use_count_N)):
    raise ValueError("selection.from_dict: num_distinct disagrees with the "
                     "use counts; the checkpoint is corrupt.")
  return SelectionState(use_count_N=use_count_N, num_distinct=num_distinct,
                        iteration=int(d["iteration"]))
