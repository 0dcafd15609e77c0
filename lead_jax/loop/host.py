"""The host half of a run's state, checkpointed with the device state."""

from __future__ import annotations

import dataclasses
import json
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
  trained_N: np.ndarray  # bool: the sample went through at least one training step
  arms: Optional[bandit.BanditState]  # the bandit (methods with needs.bandit)
  table: Optional[idu.IduState]  # the IDU table (methods with needs.idu)
  ledger: accounting.Ledger
  history: tuple  # one summary dict per iteration
  dev_loss: Optional[float]  # dev loss after the last iteration (dev_gain's "before")
  fingerprint: str  # pool, model, method and clusters the checkpoint belongs to
  settings: Optional[dict] = None  # the config fields that shape the run (`settings`)


def seeded_generator(seed: int) -> np.random.Generator:
  """The run's one NumPy Generator, fresh from `config.seed` (bandit draws,
  shuffles; `lead_jax.api.selector` starts from the same one)."""
  return np.random.default_rng([seed, _HOST_SEED])


# The config fields that decide what a run computes beyond its fingerprint (pool,
# model, method, clusters): a checkpoint resumes only under the same values. The
# rest may change on resume: checkpointing, the mesh, evaluation, plots, export.
SHAPING = ("seed", "select", "bandit", "idu", "optim", "lora", "train.batch_size",
           "train.projection_dim", "train.projection_targets", "loop.replay_fraction",
           "loop.static_epochs", "loop.train_step")


def settings(config) -> dict:
  """{"field.path": JSON value} of the `SHAPING` fields of `config`."""
  out = {}
  for name in SHAPING:
    value = config
    for part in name.split("."):
      value = value[part]
    if hasattr(value, "to_dict"):
      out.update({f"{name}.{k}": v for k, v in value.to_dict().items()})
    else:
      out[name] = value
  return json.loads(json.dumps(out, sort_keys=True))  # tuples as lists, as a checkpoint holds them


def changed(saved: Optional[dict], now: dict) -> list[str]:
  """`field: saved -> now` for each shaping field that differs (none for a
  checkpoint written before the settings were recorded)."""
  if saved is None:
    return []
  return [
      f"{k}={saved.get(k)!r} (this run: {now.get(k)!r})" for k in sorted(set(saved) | set(now))
      if saved.get(k) != now.get(k)
  ]


def initial(run, ledger: accounting.Ledger) -> Host:
  k = run.offline.num_clusters
  rng = seeded_generator(run.config.seed)
  table = idu.init(run.offline.idu0_N, k, run.proj_dim) if run.needs.idu else None
  return Host(iteration=0, train_steps=0, skipped_steps=0, rng_state=rng.bit_generator.state,
              sel=selection.init_state(len(run.pool)), trained_N=np.zeros(len(run.pool), bool),
              arms=bandit.init(k) if run.needs.bandit else None, table=table, ledger=ledger,
              history=(), dev_loss=None, fingerprint=run.fingerprint, settings=settings(run.config))


def to_dict(h: Host) -> dict:
  return {
      "iteration": h.iteration, "train_steps": h.train_steps, "skipped_steps": h.skipped_steps,
      "rng_state": h.rng_state, "sel": selection.to_dict(h.sel), "trained_N": h.trained_N,
      "arms": None if h.arms is None else bandit.to_dict(h.arms),
      "table": None if h.table is None else idu.to_dict(h.table), "ledger": accounting.to_dict(
          h.ledger), "history": list(h.history), "dev_loss": h.dev_loss,
      "fingerprint": h.fingerprint, "settings": h.settings
  }


def from_dict(d: dict) -> Host:
  return Host(
      iteration=int(d["iteration"]), train_steps=int(d["train_steps"]), skipped_steps=int(
          d["skipped_steps"]), rng_state=d["rng_state"], sel=selection.from_dict(d["sel"]),
      trained_N=np.asarray(d["trained_N"],
                           bool), arms=None if d["arms"] is None else bandit.from_dict(d["arms"]),
      table=None if d["table"] is None else idu.from_dict(d["table"]),
      ledger=accounting.from_dict(d["ledger"]), history=tuple(d["history"]), dev_loss=d["dev_loss"],
      fingerprint=d["fingerprint"], settings=d.get("settings"))


def generator(state: dict) -> np.random.Generator:
  rng = np.random.default_rng()
  rng.bit_generator.state = state
  return rng
