"""Data selection: LEAD's two-stage selection and the baselines, one interface.

Every method is a `Selector` (see `base`): `select(state, inputs, rng) -> ids`
and `done(state)`, plus `needs`, the signals the loop must compute for it and
their forward-pass cost. `make(name, config.select, layout, scores_N=...)`
builds one by name; `record(state, ids)` is the one state transition.

  lead             top IDU per task stratum in the bandit's cluster
  odm              same strata and quotas, random inside the bandit's cluster
  full             the whole pool
  random           uniform, the whole budget at once
  random_balanced  equal shares per task, the whole budget at once
  ppl              top base-model loss (`ppl_highest`; False: the lowest)
  ifd              top IFD under the warmup model (Cherry)
  superfilter      top IFD under a small proxy model (Superfiltering)
  less             top cosine of projected gradients with a dev set (LESS)
  iterative_rescore  each iteration, the top of the whole pool by a score
                   recomputed under the current model (`rescore`)

Diagnostics (`DIAGNOSTICS`; reference points, not methods that compete: they
use what no method knows; see `diagnostics`):
  oracle           uniform among the pool's clean-tier samples (the lake's
                   `tier` labels), the whole budget at once
  replay           a finished run's trained multiset (select.replay_from),
                   one shuffled pass

`needs(name, cfg)` declares what a method needs before anything is built (the
loop reads it to decide what the offline stage computes).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from lead_jax.selection.base import (PASSES_PER_SCORE, Inputs, Needs, Selector, check_scores)
from lead_jax.selection.diagnostics import make_diagnostic, read_replay, read_tiers
from lead_jax.selection.lead import ClusterSelector
from lead_jax.selection.rescore import RescoreSelector, iteration_size
from lead_jax.selection.state import (Layout, Limits, SelectionState, budget_done, build_layout,
                                      from_dict, init_state, record, resolve_limits, to_dict)
from lead_jax.selection.static import FullSelector, RandomSelector, TopKSelector

# Offline scores LEAD itself needs: IFD for the clusters, base loss for IDU_0.
_LEAD_SCORES = ("ifd", "base_loss")
_TOP_K_SCORES = {
    "ppl": "base_loss", "ifd": "ifd", "superfilter": "proxy_ifd", "less": "dev_grad_cosine"
}
RESCORE_SCORES = ("loss", "ifd")
DIAGNOSTICS = ("oracle", "replay")
NAMES = ("lead", "odm", "full", "random", "random_balanced", *_TOP_K_SCORES, "iterative_rescore",
         *DIAGNOSTICS)


def needs(name: str, cfg) -> Needs:
  """What method `name` needs from the loop; `cfg` is the `select` sub-config."""
  if name not in NAMES:
    raise ValueError(f"selection: unknown method {name!r}; choose one of "
                     f"{', '.join(NAMES)}.")
  if name == "lead":
    return Needs(bandit=True, idu=True, offline_scores=_LEAD_SCORES)
  if name == "odm":
    return Needs(bandit=True, offline_scores=("ifd",))
  if name in _TOP_K_SCORES:
    return Needs(offline_scores=(_TOP_K_SCORES[name],))
  if name == "iterative_rescore":
    if cfg.rescore_score not in RESCORE_SCORES:
      raise ValueError(f"select.rescore_score={cfg.rescore_score!r}; use one of "
                       f"{RESCORE_SCORES}.")
    return Needs(rescore=cfg.rescore_score)
  if name == "oracle":
    return Needs(tiers=True)
  if name == "replay":
    return Needs(replay=True)
  return Needs()


def make(name: str, cfg, layout: Layout, *, scores_N: Optional[np.ndarray] = None,
         tier_N: Optional[np.ndarray] = None, passes_M: Optional[np.ndarray] = None) -> Selector:
  """The selector `name`; `scores_N` is the score array of the top-k ones,
  `tier_N` the pool's tiers (oracle), `passes_M` the replayed sample-passes."""
  need = needs(name, cfg)
  limits = resolve_limits(cfg, layout.num_pool)
  if name in DIAGNOSTICS:
    return make_diagnostic(name, need, limits, layout.num_pool, tier_N, passes_M)
  if name in ("lead", "odm"):
    if cfg.sample_rate <= 0 and cfg.min_per_task <= 0:
      raise ValueError("select.sample_rate and select.min_per_task are both 0: "
                       "every iteration would select nothing.")
    return ClusterSelector(name=name, needs=need, layout=layout, limits=limits,
                           sample_rate=cfg.sample_rate, min_per_task=cfg.min_per_task,
                           stratify_by_task=cfg.stratify_by_task, random_ranking=name == "odm")
  if name == "full":
    return FullSelector()
  if name in ("random", "random_balanced"):
    return RandomSelector(name=name, needs=need, layout=layout, limits=limits,
                          balanced=name == "random_balanced")
  if name == "iterative_rescore":
    return RescoreSelector(name=name, needs=need, limits=limits,
                           size=iteration_size(cfg, layout.num_pool))
  scores_N = check_scores(scores_N, layout.num_pool, name)
  return TopKSelector(name=name, needs=need, limits=limits, scores_N=scores_N,
                      highest=cfg.ppl_highest if name == "ppl" else True)


__all__ = [
    "DIAGNOSTICS", "Inputs", "Layout", "Limits", "NAMES", "Needs", "PASSES_PER_SCORE",
    "RESCORE_SCORES", "iteration_size", "needs", "read_replay", "read_tiers", "SelectionState",
    "Selector", "budget_done", "build_layout", "from_dict", "init_state", "make", "record",
    "resolve_limits", "to_dict"
]
