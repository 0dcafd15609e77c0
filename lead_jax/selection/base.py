"""The interface every selector implements, the scores it may rank by, and
its cost declaration.

The loop drives every method the same way:

    selector = selection.make(name, config.select, layout, scores_N=...)
    while not selector.done(sel_state):
      cluster = bandit draw            if selector.needs.bandit
      scores_N = idu_N                 if selector.needs.idu
               = fresh pool scores     if selector.needs.rescore
      inputs = Inputs(cluster, scores_N)
      ids_S = selector.select(sel_state, inputs, rng)
      scores_S = selector.scores_of(ids_S, inputs)   # selected.jsonl's `score`
      sel_state = selection.record(sel_state, ids_S)
      train on ids_S ...

`SCORES` names every score once: the name a method's `Needs` lists is also
the offline stage's artifact of that name (`lead_jax.offline.stage`) and the key of
its cost here; `Score.field` is the `offline.Result` field that holds it.
`REFERENCE_SCORES` maps each `idu.reference` to the offline score the ranking
subtracts from the IDU (`registry.needs` adds it to an IDU method's needs).
`needs` says what the loop must compute for the selector; `scoring_passes`
turns it into the forward sample passes outside training that the method
costs, so a run's compute accounting can be checked against its declaration.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Protocol

import numpy as np

from lead_jax.selection.state import SelectionState


@dataclasses.dataclass(frozen=True)
class Score:
  """One per-sample score the loop can compute for a selector."""
  passes: int  # forward passes per pool sample (LESS: forward + backward, counted once)
  field: Optional[str] = None  # the offline.Result field holding it; None: not offline
  dev_passes: int = 0  # passes per dev sample as well (LESS: the dev gradients)
  warmup_passes: int = 0  # passes per warmup-subset sample (warmup_il: its cross-fitted loss)
  rescore: bool = False  # the loop can recompute it over the pool every iteration
  about: str = ""


SCORES = {
    "base_loss":
        Score(1, "idu0_N", about="response loss under the base model (IDU_0, ppl)"),
    "loss":
        Score(1, rescore=True, about="response loss under the current model (rescore)"),
    "ifd":
        Score(
            2, "ifd_N", rescore=True,
            about="response loss with and without the prompt -> IFD (warmup model "
            "offline, current model when rescored)"),
    "proxy_ifd":
        Score(2, "proxy_ifd_N", about="IFD under a small proxy model (Superfiltering)"),
    "less":
        Score(1, "less_N", dev_passes=1,
              about="cosine of projected LoRA gradients with the dev set's (LESS)"),
    "warmup_il":
        Score(
            0, "reference_N", warmup_passes=1,
            about="warmup model's response loss IL (idu.reference=warmup): the IFD pass's "
            "for the pool, cross-fitted on the warmup subset (one pass each, plus two "
            "half-size warmup trainings)"),
}
# Forward passes per pool sample of each score the loop may compute.
PASSES_PER_SCORE = {name: s.passes for name, s in SCORES.items()}
# Scores that also pass over every dev sample (LESS: the dev gradients).
DEV_PASSES = {name: s.dev_passes for name, s in SCORES.items() if s.dev_passes}
# Scores that also pass over every warmup-subset sample (warmup_il: cross-fitting).
WARMUP_PASSES = {name: s.warmup_passes for name, s in SCORES.items() if s.warmup_passes}
OFFLINE_SCORES = tuple(name for name, s in SCORES.items() if s.field)
RESCORE_SCORES = tuple(name for name, s in SCORES.items() if s.rescore)
# The offline score each `idu.reference` other than none subtracts from the IDU.
REFERENCE_SCORES = {"warmup": "warmup_il"}


@dataclasses.dataclass(frozen=True)
class Needs:
  bandit: bool = False  # the loop draws `Inputs.cluster` from the bandit
  idu: bool = False  # the loop keeps the IDU table and passes it as scores_N
  offline_scores: tuple[str, ...] = ()  # pool-wide scores computed once (OFFLINE_SCORES)
  rescore: Optional[str] = None  # score recomputed over the pool per iteration (RESCORE_SCORES)
  tiers: bool = False  # the loop reads the pool file's `tier` per sample (oracle)
  replay: bool = False  # the loop reads select.replay_from's sample-passes (replay)

  @property
  def dev_set(self) -> bool:
    """An offline score passes over the dev set (the loop loads it)."""
    return any(DEV_PASSES.get(s, 0) for s in self.offline_scores)

  def scoring_passes(self, num_pool: int, iterations: int, num_dev: int = 0,
                     num_warmup: int = 0) -> dict[str, int]:
    """Forward sample passes outside training: offline and per iteration
    (`num_warmup`: the warmup subset's size, `offline.stage.warmup_size`)."""
    offline = sum(PASSES_PER_SCORE[s] * num_pool + DEV_PASSES.get(s, 0) * num_dev +
                  WARMUP_PASSES.get(s, 0) * num_warmup for s in self.offline_scores)
    online = (PASSES_PER_SCORE[self.rescore] * num_pool * iterations if self.rescore else 0)
    return {"offline": offline, "selection": online, "total": offline + online}


@dataclasses.dataclass(frozen=True)
class Inputs:
  """What changes between iterations, supplied by the loop."""
  cluster: int = -1  # the bandit's arm, for selectors with needs.bandit
  scores_N: Optional[np.ndarray] = None  # IDU table or fresh pool scores


class Selector(Protocol):
  name: str
  needs: Needs

  def select(self, state: SelectionState, inputs: Inputs, rng: np.random.Generator) -> np.ndarray:
    """Distinct pool ids (int64) to train on this iteration, best first."""
    ...

  def done(self, state: SelectionState) -> bool:
    """True once the method has nothing more to select."""
    ...

  def scores_of(self, ids_S: np.ndarray, inputs: Inputs) -> Optional[np.ndarray]:
    """The score each of `select`'s picks was ranked by (the IDU, the fresh
    or the fixed score), or None for selectors that rank by none."""
    ...


def picked(scores_N: Optional[np.ndarray], ids_S: np.ndarray) -> Optional[np.ndarray]:
  """`scores_N[ids_S]`, or None without scores (the selectors' `scores_of`)."""
  return None if scores_N is None else np.asarray(scores_N)[ids_S]


def check_scores(scores_N: Optional[np.ndarray], num_pool: int, who: str) -> np.ndarray:
  if scores_N is None or np.shape(scores_N) != (num_pool,):
    got = None if scores_N is None else np.shape(scores_N)
    raise ValueError(f"selection {who!r}: needs one score per pool sample "
                     f"(shape ({num_pool},)), got {got}.")
  return np.asarray(scores_N)
