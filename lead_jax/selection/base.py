"""The interface every selector implements, and its cost declaration.

The loop drives every method the same way:

    selector = selection.make(name, config.select, layout, scores_N=...)
    while not selector.done(sel_state):
      cluster = bandit draw            if selector.needs.bandit
      scores_N = idu_N                 if selector.needs.idu
               = fresh pool scores     if selector.needs.rescore
      ids_S = selector.select(sel_state, Inputs(cluster, scores_N), rng)
      sel_state = selection.record(sel_state, ids_S)
      train on ids_S ...

`needs` says what the loop must compute for the selector; `scoring_passes`
turns it into the forward sample passes outside training that the method
costs, so a run's compute accounting can be checked against its declaration.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Protocol

import numpy as np

from lead_jax.selection.state import SelectionState

# Forward passes per pool sample of each score the loop may compute.
PASSES_PER_SCORE = {
    "base_loss": 1,  # response loss under the base model (IDU_0, ppl)
    "ifd": 2,  # response loss with and without the prompt
    "proxy_ifd": 2,  # the same under a small proxy model (Superfiltering)
    "dev_grad_cosine": 1,  # forward + backward per sample (LESS gradients)
    "loss": 1,  # per-iteration rescoring by current loss
}
# Scores that also pass over every dev sample once (LESS: the dev gradients).
DEV_PASSES = {"dev_grad_cosine": 1}


@dataclasses.dataclass(frozen=True)
class Needs:
  bandit: bool = False  # the loop draws `Inputs.cluster` from the bandit
  idu: bool = False  # the loop keeps the IDU table and passes it as scores_N
  offline_scores: tuple[str, ...] = ()  # pool-wide scores computed once
  rescore: Optional[str] = None  # score recomputed over the pool per iteration
  tiers: bool = False  # the loop reads the pool file's `tier` per sample (oracle)
  replay: bool = False  # the loop reads select.replay_from's sample-passes (replay)

  def scoring_passes(self, num_pool: int, iterations: int, num_dev: int = 0) -> dict[str, int]:
    """Forward sample passes outside training: offline and per iteration."""
    offline = sum(PASSES_PER_SCORE[s] * num_pool + DEV_PASSES.get(s, 0) * num_dev
                  for s in self.offline_scores)
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


def check_scores(scores_N: Optional[np.ndarray], num_pool: int, who: str) -> np.ndarray:
  if scores_N is None or np.shape(scores_N) != (num_pool,):
    got = None if scores_N is None else np.shape(scores_N)
    raise ValueError(f"selection {who!r}: needs one score per pool sample "
                     f"(shape ({num_pool},)), got {got}.")
  return np.asarray(scores_N)
