"""Data selection: LEAD's two-stage selection and the baselines, one interface.

Every method is a `Selector` (see `base`): `select(state, inputs, rng) -> ids`,
`done(state)` and `scores_of(ids, inputs)` (what selected.jsonl records as
each pick's score), plus `needs`, the signals the loop must compute for it
and their forward-pass cost. `record(state, ids)` is the one state
transition.

Every method is one entry of the registry (`registry.METHODS`): its selector
factory, its needs, the offline score it ranks by (top-k methods), its
schedule (one-shot, iterative, replay), what loop.train_step=auto resolves to,
whether it is a diagnostic, and a one-line description. The table:

  python -c "from lead_jax import selection; print(selection.registry.table())"

  lead, odm        LEAD and ODM inside the bandit's cluster (`lead`)
  full, random, random_balanced, ppl, ifd, superfilter, less
                   one-shot baselines (`static`)
  iterative_rescore  the top of the pool by a score recomputed every
                   iteration (`rescore`)
  oracle, replay   diagnostics (`DIAGNOSTICS`; reference points, not methods
                   that compete: they use what no method knows; `diagnostics`)

`make(name, config.select, layout, scores_N=...)` builds one by name;
`needs(name, cfg, reference)` declares what it needs before anything is built
(the loop reads it to decide what the offline stage computes; `reference`,
the run's idu.reference, adds the reference loss an IDU method then ranks
against, `REFERENCE_SCORES`); `get(name)` is its
entry, `names(**fields)` the methods with the given entry fields.
"""

from __future__ import annotations

from lead_jax.selection import registry
from lead_jax.selection.base import (OFFLINE_SCORES, PASSES_PER_SCORE, REFERENCE_SCORES,
                                     RESCORE_SCORES, SCORES, Inputs, Needs, Score, Selector,
                                     check_scores)
from lead_jax.selection.diagnostics import read_replay, read_tiers
from lead_jax.selection.registry import (DIAGNOSTICS, ITERATIVE, NAMES, ONE_SHOT, REPLAY,
                                         TRAIN_STEPS, Method, get, make, names, needs,
                                         offline_scores_N, train_step)
from lead_jax.selection.rescore import iteration_size
from lead_jax.selection.state import (Layout, Limits, SelectionState, budget_done, build_layout,
                                      from_dict, init_state, record, resolve_limits, to_dict)

__all__ = [
    "DIAGNOSTICS", "ITERATIVE", "Inputs", "Layout", "Limits", "Method", "NAMES", "Needs",
    "OFFLINE_SCORES", "ONE_SHOT", "PASSES_PER_SCORE", "REFERENCE_SCORES", "REPLAY",
    "RESCORE_SCORES", "SCORES", "Score", "SelectionState", "Selector", "TRAIN_STEPS", "budget_done",
    "build_layout", "check_scores", "from_dict", "get", "init_state", "iteration_size", "make",
    "names", "needs", "offline_scores_N", "read_replay", "read_tiers", "record", "registry",
    "resolve_limits", "to_dict", "train_step"
]
