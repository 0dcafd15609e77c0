"""LEAD's two-stage selection inside the bandit's cluster (and ODM's).

Given the drawn cluster c:
  1. candidates: members of c whose use count is below the reuse cap R;
  2. for every task stratum tau of c (or the whole cluster without task
     strata), quota q = max(min_per_task, floor(n_{c,tau} * rate)), with
     n_{c,tau} the stratum's size (all members, used up or not); take the
     min(q, candidates) candidates with the highest IDU, ties to smaller ids;
  3. budget: samples never selected before count against the distinct budget;
     if they exceed what remains, `ranking.trim_to_budget` cuts every stratum
     proportionally (its best stay), so the last iteration ends exactly on
     the budget; already-used picks cost nothing and stay.
The result is ordered by IDU, highest first. An exhausted cluster (no
candidates) yields an empty selection; the loop decides what to do with it.

ODM uses the same strata and quotas with a uniformly random ranking in place
of the IDU, i.e. a random sample of the cluster of the same size.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lead_jax.selection import ranking
from lead_jax.selection.base import Inputs, Needs, check_scores, picked
from lead_jax.selection.state import Layout, Limits, SelectionState, budget_done


@dataclasses.dataclass(frozen=True)
class ClusterSelector:
  name: str
  needs: Needs
  layout: Layout
  limits: Limits
  sample_rate: float
  min_per_task: int
  stratify_by_task: bool
  random_ranking: bool = False  # ODM: random order instead of IDU

  def done(self, state: SelectionState) -> bool:
    return budget_done(state, self.limits)

  def _member_scores(self, members_M, inputs, rng) -> np.ndarray:
    if self.random_ranking:
      return rng.random(members_M.shape[0])
    scores_N = check_scores(inputs.scores_N, self.layout.num_pool, self.name)
    return scores_N[members_M]

  def _strata(self, cluster: int, num_members: int) -> np.ndarray:
    if self.stratify_by_task:
      return self.layout.stratum_bounds(cluster)
    return np.array([0, num_members])

  def select(self, state: SelectionState, inputs: Inputs, rng: np.random.Generator) -> np.ndarray:
    c = inputs.cluster
    if not 0 <= c < self.layout.num_clusters:
      raise ValueError(f"selection {self.name!r}: cluster {c} out of range "
                       f"[0, {self.layout.num_clusters}); pass the bandit arm.")
    members_M = self.layout.members(c)
    scores_M = self._member_scores(members_M, inputs, rng)
    candidate_M = state.use_count_N[members_M] < self.limits.reuse_cap
    bounds = self._strata(c, members_M.shape[0])
    quota = ranking.stratum_quota(np.diff(bounds), self.sample_rate, self.min_per_task)
    picks, fractions = [], []
    for t in np.flatnonzero(quota):  # a loop over strata, not samples
      lo, hi = bounds[t], bounds[t + 1]
      pos = lo + np.flatnonzero(candidate_M[lo:hi])
      pos = pos[ranking.top_k(members_M[pos], scores_M[pos], quota[t])]
      picks.append(pos)
      fractions.append(ranking.quota_fraction(state.use_count_N[members_M[pos]] == 0))
    pos_S = np.concatenate(picks) if picks else np.zeros(0, np.int64)
    ids_S = members_M[pos_S].astype(np.int64)
    score_S = scores_M[pos_S]
    new_S = state.use_count_N[ids_S] == 0
    remaining = self.limits.budget - state.num_distinct
    keep_S = ranking.trim_to_budget(new_S,
                                    np.concatenate(fractions) if fractions else np.zeros(0),
                                    score_S, ids_S, remaining)
    ids_S, score_S = ids_S[keep_S], score_S[keep_S]
    return ids_S[np.lexsort((ids_S, -score_S))]

  def scores_of(self, ids_S, inputs: Inputs):
    """The IDU of the picks (LEAD); None for ODM's random ranking."""
    return None if self.random_ranking else picked(inputs.scores_N, ids_S)
