"""Compute accounting of a run: sample-passes, token-passes and wall seconds.

Every pass of a model over a sample is booked under a phase and an activity:

  phase      offline | training | selection | evaluation (+ `setup` and
             `checkpoint` for wall seconds only)
  activity   what the passes were for, e.g. `warmup_train`, `ifd`, `base_loss`,
             `crossfit_train` and `crossfit_il` (idu.reference = warmup),
             `train`, `rescore`, `dev_loss`, `test_loss`, `test_generate`,
             `test_decode` (one token-pass per generated position and row)

with four counters: forward and backward sample-passes (one real row through
the model once) and forward and backward token-passes (the real tokens of
those rows; padding is not counted). A training step books a forward and a
backward for each real row; a scoring pass books forwards only. Wall seconds
are booked per phase. Totals are sums of the phases, which are sums of their
activities, so they add up by construction (`check` verifies a loaded file).

The ledger is a frozen value: `add` and `add_seconds` return a new one, and
`to_dict` / `from_dict` give its JSON form (checkpointed with the host state,
so a resumed run continues the count of the run it resumes).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

PHASES = ("offline", "training", "selection", "evaluation")
WALL_PHASES = ("setup",) + PHASES + ("checkpoint",)
COUNTERS = ("forward_samples", "forward_tokens", "backward_samples", "backward_tokens")
# Activities whose forward passes are forward-only scoring of samples (not the
# forward half of a training step): `forward_sample_passes` of a run.
SCORING = ("ifd", "base_loss", "features_hidden", "features_grad", "rescore", "dev_loss",
           "proxy_ifd", "less_grads", "less_dev_grads", "crossfit_il")


@dataclasses.dataclass(frozen=True)
class Ledger:
  passes: Mapping[str, Mapping[str, Mapping[str, int]]]  # phase -> activity -> counter
  seconds: Mapping[str, float]  # wall seconds per phase in WALL_PHASES


def empty() -> Ledger:
  return Ledger({p: {} for p in PHASES}, {p: 0.0 for p in WALL_PHASES})


def passes_of_batch(batch: Mapping[str, np.ndarray], backward: bool) -> dict[str, int]:
  """Counters of one pass over the real rows of a batch (host arrays)."""
  real_B = ~np.asarray(batch["is_pad_B"])
  tokens = int(np.asarray(batch["attention_mask_BxL"])[real_B].sum())
  samples = int(real_B.sum())
  return {
      "forward_samples": samples, "forward_tokens": tokens,
      "backward_samples": samples if backward else 0, "backward_tokens": tokens if backward else 0
  }


def add(ledger: Ledger, phase: str, activity: str, counts: Mapping[str, int]) -> Ledger:
  if phase not in PHASES:
    raise ValueError(f"accounting: phase {phase!r}; use one of {PHASES}")
  unknown = set(counts) - set(COUNTERS)
  if unknown:
    raise ValueError(f"accounting: unknown counters {sorted(unknown)}; use {COUNTERS}")
  passes = {p: {a: dict(c) for a, c in acts.items()} for p, acts in ledger.passes.items()}
  row = passes[phase].setdefault(activity, {c: 0 for c in COUNTERS})
  for name, value in counts.items():
    row[name] += int(value)
  return dataclasses.replace(ledger, passes=passes)


def add_seconds(ledger: Ledger, phase: str, seconds: float) -> Ledger:
  if phase not in WALL_PHASES:
    raise ValueError(f"accounting: wall phase {phase!r}; use one of {WALL_PHASES}")
  return dataclasses.replace(
      ledger, seconds=dict(ledger.seconds, **{phase: ledger.seconds[phase] + seconds}))


def phase_totals(ledger: Ledger, phase: str) -> dict[str, int]:
  rows = ledger.passes[phase].values()
  return {c: sum(r[c] for r in rows) for c in COUNTERS}


def totals(ledger: Ledger) -> dict[str, int]:
  return {c: sum(phase_totals(ledger, p)[c] for p in PHASES) for c in COUNTERS}


def forward_sample_passes(ledger: Ledger) -> int:
  """Forward-only scoring passes outside training steps (offline and selection)."""
  return sum(row["forward_samples"]
             for p in ("offline", "selection")
             for a, row in ledger.passes[p].items()
             if a in SCORING)


def wall_seconds(ledger: Ledger) -> float:
  return float(sum(ledger.seconds.values()))


def to_dict(ledger: Ledger) -> dict:
  """The JSON form: per phase its activities and totals, plus the run totals."""
  phases = {
      p: {
          "activities": {a: dict(r) for a, r in sorted(ledger.passes[p].items())},
          "totals": phase_totals(ledger, p)
      } for p in PHASES
  }
  return {
      "phases": phases, "totals": totals(ledger),
      "forward_sample_passes": forward_sample_passes(ledger), "wall_seconds": {
          **{p: round(s, 3) for p, s in ledger.seconds.items()},
          "total": round(wall_seconds(ledger), 3)
      }
  }


def from_dict(d: Mapping) -> Ledger:
  passes = {
      p: {a: {c: int(r[c]) for c in COUNTERS} for a, r in d["phases"][p]["activities"].items()}
      for p in PHASES
  }
  seconds = {p: float(d["wall_seconds"].get(p, 0.0)) for p in WALL_PHASES}
  return Ledger(passes, seconds)


def check(d: Mapping) -> None:
  """Raises when a ledger's JSON form does not add up (phases vs totals)."""
  for c in COUNTERS:
    for p in PHASES:
      acts = d["phases"][p]["activities"].values()
      if sum(r[c] for r in acts) != d["phases"][p]["totals"][c]:
        raise ValueError(f"accounting: phase {p} {c} does not equal its activities' sum")
    if sum(d["phases"][p]["totals"][c] for p in PHASES) != d["totals"][c]:
      raise ValueError(f"accounting: the phases' {c} do not add up to the total")
  wall = d["wall_seconds"]
  if abs(sum(v for k, v in wall.items() if k != "total") - wall["total"]) > 0.01:
    raise ValueError("accounting: wall seconds of the phases do not add up to the total")
