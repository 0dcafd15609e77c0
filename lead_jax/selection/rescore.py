"""Iterative re-scoring: every iteration, the top samples of the whole pool by
a score the loop recomputes under the current model (the model-aware class
whose pool-wide inference LEAD is designed to avoid).

Per iteration t, given fresh scores s_N (current loss, or IFD):
  1. candidates: samples whose use count is below the reuse cap R;
  2. take the `size` candidates with the highest score, ties to smaller ids;
  3. budget: samples never selected before count against the distinct budget;
     when they exceed what remains, the best-scored new ones are kept and the
     already-used picks (free) stay, so the last iteration ends on the budget.

The per-iteration size is comparable with LEAD's by construction: LEAD takes
floor(n_{c,tau} * rho) from each task stratum of one cluster out of K, so its
expected iteration (clusters drawn uniformly) selects about rho * N / K
samples; `size` defaults to max(1, floor(rho * N / K)) and the stopping rule
(budget or T_max) is LEAD's. Both methods then reach the budget in a similar
number of iterations, and the T x N re-scoring passes are the difference.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from lead_jax.selection import ranking
from lead_jax.selection.base import Inputs, Needs, check_scores, picked
from lead_jax.selection.state import Limits, SelectionState, budget_done


def iteration_size(cfg, num_pool: int) -> int:
  """Samples per iteration: `rescore_size`, or LEAD's mean iteration."""
  if cfg.rescore_size > 0:
    return int(cfg.rescore_size)
  return max(1, int(math.floor(cfg.sample_rate * num_pool / cfg.num_clusters + 1e-9)))


@dataclasses.dataclass(frozen=True)
class RescoreSelector:
  name: str
  needs: Needs
  limits: Limits
  size: int  # samples per iteration (before the budget trim)

  def done(self, state: SelectionState) -> bool:
    return budget_done(state, self.limits)

  def select(self, state: SelectionState, inputs: Inputs, rng: np.random.Generator) -> np.ndarray:
    del rng  # deterministic given the scores
    num_pool = state.use_count_N.shape[0]
    scores_N = check_scores(inputs.scores_N, num_pool, self.name)
    cands = np.flatnonzero(state.use_count_N < self.limits.reuse_cap)
    pos = ranking.top_k(cands, scores_N[cands], self.size)
    ids_S = cands[pos].astype(np.int64)
    score_S = scores_N[ids_S]
    new_S = state.use_count_N[ids_S] == 0
    keep_S = ranking.trim_to_budget(new_S, ranking.quota_fraction(new_S), score_S, ids_S,
                                    self.limits.budget - state.num_distinct)
    return ids_S[keep_S]

  def scores_of(self, ids_S, inputs: Inputs):
    return picked(inputs.scores_N, ids_S)  # the iteration's fresh scores
