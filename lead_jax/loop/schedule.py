"""Two schedules against forgetting, both off by default (docs/method.md,
"Schedules that do not forget"); host-side helpers of `lead_jax.loop.iteration`.

  select.clusters_per_iteration = m   each iteration draws m distinct clusters
      (`bandit.draw_distinct`: one after another, without replacement),
      selects in each exactly as LEAD does in one, trains the union in one
      shuffled pass and updates the bandit once per arm, in draw order, with
      that arm's reward computed over its own samples. Each update is one
      EXP3 round: its importance weight is the arm's probability under the
      state that update starts from (the first arm: its first-draw
      probability p_k). m = 1 is LEAD.
  loop.replay_fraction = f            the pass also trains
      round(f |S_t| / (1 - f)) samples drawn uniformly from those selected in
      earlier iterations and not in S_t (`replay_ids`), shuffled together with
      S_t, so that a fraction f of the rows is replay. Replayed rows are booked
      as `replay_train` in the training phase; they neither update the IDU
      table nor count as uses, the distinct budget or the reward. f = 0 is LEAD.
"""

from __future__ import annotations

import numpy as np

from lead_jax import idu
from lead_jax.train import passes

REPLAY_ACTIVITY = "replay_train"  # not the `replay` diagnostic (select.replay_from)


def update_idu(config, layout, table: idu.IduState, outs: idu.StepOutputs, arm: int, lr: float):
  """`(table, info)`: `idu.update` over one arm's trained rows, with the
  cluster's members when idu.propagate_to_cluster; the one IDU update of the
  loop (`lead_jax.loop.iteration`) and of `lead_jax.api.LeadSelector`."""
  members = layout.members(arm) if config.idu.propagate_to_cluster else None
  return idu.update(table, config.idu, outs, cluster=arm, lr=lr, members_M=members)


def check(config, num_clusters: int) -> None:
  """One-line ValueErrors for the two fields; `num_clusters` is K."""
  m = config.select.clusters_per_iteration
  if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= num_clusters:
    raise ValueError(f"select.clusters_per_iteration={m!r} must be an integer in [1, "
                     f"{num_clusters}] (K, the clusters)")
  f = config.loop.replay_fraction
  if not 0.0 <= f < 1.0:
    raise ValueError(f"loop.replay_fraction={f!r} must be in [0, 1)")


def replay_count(num_selected: int, fraction: float) -> int:
  """round(f |S_t| / (1 - f)): the replayed rows that make f of the pass."""
  return int(round(fraction * num_selected / (1.0 - fraction))) if fraction > 0 else 0


def replay_ids(use_count_N: np.ndarray, ids_S: np.ndarray, fraction: float,
               rng: np.random.Generator) -> np.ndarray:
  """The replayed pool ids of an iteration: `replay_count` draws, uniform over
  the samples selected before it (use count > 0 before this iteration's
  record) that are not in S_t, without replacement; when more are asked than
  there are, every candidate once per whole multiple and the rest without
  replacement. Empty before any earlier selection; no draw when f = 0."""
  n = replay_count(int(np.size(ids_S)), fraction)
  if not n:
    return np.zeros(0, np.int64)
  earlier_N = np.asarray(use_count_N) > 0
  earlier_N[np.asarray(ids_S, np.int64)] = False
  candidates = np.flatnonzero(earlier_N).astype(np.int64)
  if not candidates.size:
    return candidates
  whole, extra = divmod(n, candidates.size)
  parts = [candidates] * whole
  if extra:
    parts.append(rng.choice(candidates, extra, replace=False))
  return np.concatenate(parts)


def rows_of(outs: idu.StepOutputs, ids: np.ndarray) -> idu.StepOutputs:
  """The rows of `outs` whose pool index is in `ids`, in training order
  (padding rows, index -1, never are)."""
  keep_B = np.isin(outs.index_B, ids) & (np.asarray(outs.index_B) >= 0)
  return idu.StepOutputs(*(None if a is None else np.asarray(a)[keep_B]
                           for a in (outs.index_B, outs.loss_B, outs.finite_B, outs.dL_B,
                                     outs.g_BxK)))


def split_counts(step: passes.Step, replay_R: np.ndarray) -> dict:
  """One step's passes with its replayed rows under `replay_train` (and
  `replay_train_dl_jvp`) and the rest under `train`, as `passes.counts_of`
  books them."""
  batch = step.batch
  replay_B = np.isin(batch["index_B"], replay_R) & ~np.asarray(batch["is_pad_B"])
  jvp = "train_dl_jvp" in step.counts
  own = dict(batch, is_pad_B=np.asarray(batch["is_pad_B"]) | replay_B)
  counts = passes.counts_of(own, "train", jvp)
  if replay_B.any():
    counts = passes.add(counts,
                        passes.counts_of(dict(batch, is_pad_B=~replay_B), REPLAY_ACTIVITY, jvp))
  return counts


def iteration_mean_gradient(table: idu.IduState, infos, arms) -> np.ndarray:
  """G_t of an iteration of several arms: the mean valid projected gradient
  over all of S_t, i.e. the arms' means (each its G_tk after its update)
  weighted by their valid rows (one per updated sample: S_t is distinct)."""
  n_A = np.array([info.ids_S.size for info in infos], np.float64)
  mean_K = (n_A[:, None] * table.grad_last_CxK[list(arms)].astype(np.float64)).sum(0) / n_A.sum()
  return mean_K.astype(np.float32)


__all__ = [
    "REPLAY_ACTIVITY", "check", "iteration_mean_gradient", "replay_count", "replay_ids", "rows_of",
    "split_counts"
]
