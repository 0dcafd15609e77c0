"""The host half of a run's state, checkpointed with the device state."""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from lead_jax import accounting, bandit, idu, selection

_HOST_SEED = 0x5E1  # the run's one NumPy Generator: seeded by [config.seed, this]


@dataclasses.dataclass(frozen=True)
class Host:
  """The host half of the run's state; checkpointed with the device state."""
  iteration: int  # iterations done
  train_steps: int  # jitted training calls done (the per-step key index)
  skipped_steps: int  # calls whose update was not applied (non-finite)
  rng_state: dict  # the NumPy Generator's bit_generator.state
  sel: selection.SelectionState
  arms: Optional[bandit.BanditState]  # the bandit (methods with needs.bandit)
  table: Optional[idu.IduState]  # the IDU table (methods with needs.idu)
  ledger: accounting.Ledger
  history: tuple  # one summary dict per iteration
  dev_loss: Optional[float]  # dev loss after the last iteration (dev_gain's "before")
  fingerprint: str  # pool, model, method and clusters the checkpoint belongs to


def initial(run, ledger: accounting.Ledger) -> Host:
  k = run.offline.num_clusters
  rng = np.random.default_rng([run.config.seed, _HOST_SEED])
  table = idu.init(run.offline.idu0_N, k, run.proj_dim) if run.needs.idu else None
  return Host(0, 0, 0, rng.bit_generator.state, selection.init_state(len(run.pool)),
              bandit.init(k) if run.needs.bandit else None, table, ledger, (), None,
              run.fingerprint)


def to_dict(h: Host) -> dict:
  return {"iteration": h.iteration, "train_steps": h.train_steps,
          "skipped_steps": h.skipped_steps, "rng_state": h.rng_state,
          "sel": selection.to_dict(h.sel),
          "arms": None if h.arms is None else bandit.to_dict(h.arms),
          "table": None if h.table is None else idu.to_dict(h.table),
          "ledger": accounting.to_dict(h.ledger), "history": list(h.history),
          "dev_loss": h.dev_loss, "fingerprint": h.fingerprint}


def from_dict(d: dict) -> Host:
  return Host(int(d["iteration"]), int(d["train_steps"]), int(d["skipped_steps"]),
              d["rng_state"], selection.from_dict(d["sel"]),
              None if d["arms"] is None else bandit.from_dict(d["arms"]),
              None if d["table"] is None else idu.from_dict(d["table"]),
              accounting.from_dict(d["ledger"]), tuple(d["history"]), d["dev_loss"],
              d["fingerprint"])


def generator(state: dict) -> np.random.Generator:
  rng = np.random.default_rng()
  rng.bit_generator.state = state
  return rng

