"""Vectorised ranking primitives shared by the selectors.

Order everywhere: highest score first, ties broken by the smaller pool id, so
a selection is a deterministic function of its inputs.
"""

from __future__ import annotations

import numpy as np


def stratum_quota(counts_T: np.ndarray, rate: float, min_per_stratum: int) -> np.ndarray:
  """max(min, floor(n * rate)) per non-empty stratum, 0 for empty ones.

  A tiny epsilon keeps floor(200 * 0.015) at 3 despite binary rounding.
  """
  counts_T = np.asarray(counts_T, np.int64)
  quota = np.floor(counts_T * rate + 1e-9).astype(np.int64)
  quota = np.maximum(quota, min_per_stratum)
  return np.where(counts_T > 0, quota, 0)


def top_k(ids_M: np.ndarray, scores_M: np.ndarray, k: int) -> np.ndarray:
  """Positions of the k best of `ids_M` by score, best first. O(M).

  A partition finds the k-th largest score; everything above it is kept, and
  among the scores equal to it the smallest ids fill the remaining places.
  """
  m = ids_M.shape[0]
  k = min(int(k), m)
  if k <= 0:
    return np.zeros(0, np.int64)
  if not np.isfinite(scores_M).all():
    raise ValueError("selection: scores contain NaN or inf; the IDU table or "
                     "the score array fed to the selector is corrupt.")
  if k < m:
    kth = np.partition(scores_M, m - k)[m - k]
    above = np.flatnonzero(scores_M > kth)
    ties = np.flatnonzero(scores_M == kth)[:k - above.size]
    keep = np.concatenate([above, ties])
  else:
    keep = np.arange(m)
  order = np.lexsort((ids_M[keep], -scores_M[keep]))
  return keep[order]


def quota_fraction(new_S: np.ndarray) -> np.ndarray:
  """For one stratum's picks in priority order: rank among its new picks /
  number of new picks (in [0, 1)); inf for picks that are not new."""
  rank_S = np.cumsum(new_S) - 1
  return np.where(new_S, rank_S / max(int(new_S.sum()), 1), np.inf)


def trim_to_budget(new_S: np.ndarray, fraction_S: np.ndarray, score_S: np.ndarray,
                   ids_S: np.ndarray, remaining: int) -> np.ndarray:
  """Keep-mask so that at most `remaining` new (never selected) samples stay.

  Samples selected before cost no budget and are always kept. When the new
  ones exceed the remaining budget, they are kept in order of their
  `quota_fraction` within their stratum (then higher score, then smaller id):
  every stratum keeps its best picks and the cut is proportional to the
  strata's new picks, so the last iteration stays stratified.
  """
  keep_S = np.ones(new_S.shape[0], bool)
  num_new = int(new_S.sum())
  if num_new <= remaining:
    return keep_S
  new_idx = np.flatnonzero(new_S)
  order = np.lexsort((ids_S[new_idx], -score_S[new_idx], fraction_S[new_idx]))
  keep_S[new_idx[order[max(remaining, 0):]]] = False
  return keep_S


def balanced_quota(available_T: np.ndarray, total: int) -> np.ndarray:
  """Equal shares per stratum, capped by what each holds (water filling).

  Sums to min(total, sum(available)); uncapped strata differ by at most one,
  the extra units going to the lowest stratum ids.
  """
  available_T = np.asarray(available_T, np.int64)
  remaining = min(int(total), int(available_T.sum()))
  quota_T = np.zeros_like(available_T)
  order = np.argsort(available_T, kind="stable")
  j = 0
  while j < order.size:  # a loop over strata, not samples: cap the small ones
    t = order[j]
    if available_T[t] > remaining // (order.size - j):
      break
    quota_T[t] = available_T[t]
    remaining -= available_T[t]
    j += 1
  rest = np.sort(order[j:])  # every one of these holds more than the share
  if rest.size:
    base, extra = divmod(remaining, rest.size)
    quota_T[rest] = base
    quota_T[rest[:extra]] += 1
  return quota_T
