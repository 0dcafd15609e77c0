"""The one driver of every training pass, and the passes it books.

Every loop that trains runs its steps through `train`: the loop's
iterations (`lead_jax.loop.iteration`), the offline warmup
(`lead_jax.offline.stage`), plain fine-tuning (`lead_jax.train.finetune`) and
base pretraining (`lead_jax.train.pretrain`). For each host batch it calls the
jitted step with the fold of the step key for its global step number, copies
the outputs to the host once (`step.fetch`), counts the step's passes and
yields a `Step`, so the caller can checkpoint, log or collect per-example
outputs between steps. Pool-scoring passes are `lead_jax.train.scoring`'s.

Booking, one way for all: a step books a forward and a backward pass of each
real row under `activity` (`accounting.passes_of_batch`); when the LEAD step
took `dL_B` from a forward-mode pass (`metrics.dl_jvp`), that extra forward is
booked under `<activity>_dl_jvp`. Callers sum the steps' `counts` with `add`
and put the sums into their ledger with `book`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional

import jax
import tqdm

from lead_jax import accounting
from lead_jax.train import sharding
from lead_jax.train import step as step_lib

Counts = Mapping[str, Mapping[str, int]]  # activity -> counter -> passes


@dataclasses.dataclass(frozen=True)
class Step:
  """One finished training step."""
  index: int  # its global step number (the step key's fold)
  batch: dict  # the host batch it trained on
  state: Any  # the state after the step
  out: dict  # its outputs (host arrays when fetched)
  counts: Counts  # its passes
  bar: Any  # the progress bar (for a caller's postfix)


def counts_of(batch: Mapping, activity: str, dl_jvp: bool = False) -> dict:
  """The passes of one training step on `batch` (see the module docstring)."""
  counts = {activity: accounting.passes_of_batch(batch, backward=True)}
  if dl_jvp:
    counts[f"{activity}_dl_jvp"] = accounting.passes_of_batch(batch, backward=False)
  return counts


def add(a: Counts, b: Counts) -> dict:
  """The sum of two `counts` (activity by activity, counter by counter)."""
  out = {act: dict(c) for act, c in a.items()}
  for act, c in b.items():
    row = out.setdefault(act, {})
    for name, value in c.items():
      row[name] = row.get(name, 0) + value
  return out


def book(ledger: accounting.Ledger, phase: str, counts: Counts) -> accounting.Ledger:
  """`ledger` with every activity of `counts` added under `phase`."""
  for activity, c in counts.items():
    ledger = accounting.add(ledger, phase, activity, c)
  return ledger


def train(step: Callable, state, base, batches: Iterable[dict], *, mesh, step_key: Optional[Any],
          start: int = 0, total: Optional[int] = None, desc: str = "train", activity: str = "train",
          fetch: bool = True, leave: bool = False) -> Iterator[Step]:
  """Yields a `Step` for each batch of `batches`, in order.

  `step(state, base, batch, key) -> (state, outputs)` is a compiled step
  (`step.compile`: `Steps.train` or `Steps.plain`, or any step of that
  signature); the batch is sharded over `mesh` and the key is
  `fold_in(step_key, index)` with `index` counting from `start` (None:
  keyless steps get None). `fetch=False` leaves the outputs on the device (a
  caller that fetches a window of them at once); `total` and `start` place the
  progress bar of a resumed pass.
  """
  bar = tqdm.tqdm(total=total, initial=start if total is not None else 0, desc=desc, leave=leave,
                  disable=None)
  with bar:
    for k, batch in enumerate(batches, start):
      key = None if step_key is None else jax.random.fold_in(step_key, k)
      state, out = step(state, base, sharding.shard_batch(mesh, batch), key)
      if fetch:
        out = step_lib.fetch(out)  # the one device->host copy of the step
      jvp = fetch and bool(int(out.get("metrics", {}).get("dl_jvp", 0)))
      bar.update()
      yield Step(k, batch, state, out, counts_of(batch, activity, jvp), bar)
