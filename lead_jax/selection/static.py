"""Selectors that fix their subset up front: full, random, random_balanced,
and top-k by a precomputed score (ppl, ifd, superfilter, less).

Candidates are the samples never selected before; each selector spends the
whole remaining distinct budget in its first iteration and is then done (the
loop sets how many epochs to train on it). `full` takes the whole pool.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lead_jax.selection import ranking
from lead_jax.selection.base import Inputs, Needs, picked
from lead_jax.selection.state import Layout, Limits, SelectionState, budget_done


def _fresh(state: SelectionState) -> np.ndarray:
  return np.flatnonzero(state.use_count_N == 0)


def _remaining(state: SelectionState, limits: Limits) -> int:
  return max(limits.budget - state.num_distinct, 0)


@dataclasses.dataclass(frozen=True)
class FullSelector:
  name: str = "full"
  needs: Needs = Needs()

  def done(self, state: SelectionState) -> bool:
    return state.iteration >= 1

  def select(self, state, inputs: Inputs, rng) -> np.ndarray:
    return _fresh(state).astype(np.int64)

  def scores_of(self, ids_S, inputs: Inputs) -> None:
    return None  # unranked


@dataclasses.dataclass(frozen=True)
class RandomSelector:
  """Uniform over the pool, or (balanced) equal shares per task."""
  name: str
  needs: Needs
  layout: Layout
  limits: Limits
  balanced: bool

  def done(self, state: SelectionState) -> bool:
    return budget_done(state, self.limits)

  def select(self, state, inputs: Inputs, rng: np.random.Generator) -> np.ndarray:
    fresh = _fresh(state)
    k = min(_remaining(state, self.limits), fresh.size)
    if not self.balanced:
      return rng.choice(fresh, size=k, replace=False).astype(np.int64)
    task_F = self.layout.task_N[fresh]
    by_task = fresh[np.argsort(task_F, kind="stable")]  # radix sort, O(N)
    available_T = np.bincount(task_F, minlength=self.layout.num_tasks)
    bounds = np.concatenate([[0], np.cumsum(available_T)])
    quota_T = ranking.balanced_quota(available_T, k)
    picks = [
        rng.choice(by_task[bounds[t]:bounds[t + 1]], size=quota_T[t], replace=False)
        for t in np.flatnonzero(quota_T)
    ]  # a loop over tasks
    return np.concatenate(picks).astype(np.int64) if picks else fresh[:0]

  def scores_of(self, ids_S, inputs: Inputs) -> None:
    return None  # unranked


@dataclasses.dataclass(frozen=True)
class TopKSelector:
  """The budget's worth of best samples by a fixed score array."""
  name: str
  needs: Needs
  limits: Limits
  scores_N: np.ndarray
  highest: bool = True  # False: take the lowest scores

  def __post_init__(self):
    if not np.isfinite(self.scores_N).all():
      raise ValueError(f"selection {self.name!r}: the score array holds NaN "
                       "or inf; rescore those samples before selecting.")

  def done(self, state: SelectionState) -> bool:
    return budget_done(state, self.limits)

  def select(self, state, inputs: Inputs, rng) -> np.ndarray:
    fresh = _fresh(state)
    scores = self.scores_N[fresh]
    pos = ranking.top_k(fresh, scores if self.highest else -scores, _remaining(state, self.limits))
    return fresh[pos].astype(np.int64)

  def scores_of(self, ids_S, inputs: Inputs) -> np.ndarray:
    return picked(self.scores_N, ids_S)  # the fixed score array
