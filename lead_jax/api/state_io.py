"""The selector's state as a flat dict of NumPy arrays, and back.

Keys are `part.field`: `static.*` (the strata layout's clusters and tasks,
the reference loss), `selection.*`, `bandit.*` and `idu.*` (their modules'
`to_dict`), `rng.pcg64` (the Generator's PCG64 state as 6 uint64 words:
state and increment as high and low halves, has_uint32, uinteger) and, while
an iteration is in flight, `pending.*` (the drawn arm, its probabilities, the
proposal, which ids were observed, the rows observed so far, concatenated, and
the last learning rate). Every value is a numeric array, so np.savez
(allow_pickle=False), torch.save and orbax store it as it is.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lead_jax import bandit, idu, selection

_MASK = (1 << 64) - 1
_ROWS = ("index_B", "loss_B", "finite_B", "dL_B", "g_BxK")


@dataclasses.dataclass(frozen=True)
class Static:
  """What never changes: the strata layout and the reference loss (or None)."""
  layout: selection.Layout
  reference_N: np.ndarray | None


@dataclasses.dataclass(frozen=True)
class Pending:
  """The iteration in flight: what was proposed and what was observed of it."""
  arm: int
  p_C: np.ndarray  # the probabilities the arm was drawn with
  ids_S: np.ndarray  # the proposal, in training order
  seen_S: np.ndarray  # bool: observed at least once
  rows: tuple  # idu.StepOutputs per observe call
  lr: float  # the last observed learning rate (idu.grad_term history / cluster)


@dataclasses.dataclass(frozen=True)
class Core:
  """What the steps change."""
  sel: selection.SelectionState
  arms: bandit.BanditState
  table: idu.IduState
  rng_state: dict  # the Generator's bit_generator.state
  pending: Pending | None


def _rng_words(state: dict) -> np.ndarray:
  if state["bit_generator"] != "PCG64":
    raise ValueError(f"selector state: a {state['bit_generator']} Generator; expected PCG64")
  s, inc = state["state"]["state"], state["state"]["inc"]
  return np.array(
      [s >> 64, s & _MASK, inc >> 64, inc & _MASK, state["has_uint32"], state["uinteger"]],
      np.uint64)


def _rng_state(words) -> dict:
  w = [int(x) for x in np.asarray(words, np.uint64)]
  return {
      "bit_generator": "PCG64", "state": {"state": (w[0] << 64) | w[1], "inc": (w[2] << 64) | w[3]},
      "has_uint32": w[4], "uinteger": w[5]
  }


def to_arrays(static: Static, core: Core) -> dict[str, np.ndarray]:
  layout, out = static.layout, {}
  out["static.cluster_N"] = np.array(layout.cluster_N)
  out["static.task_N"] = np.array(layout.task_N)
  out["static.num_clusters"] = np.array(layout.num_clusters, np.int64)
  out["static.num_tasks"] = np.array(layout.num_tasks, np.int64)
  if static.reference_N is not None:
    out["static.reference_N"] = np.array(static.reference_N)
  for part, d in (("selection", selection.to_dict(core.sel)), ("bandit", bandit.to_dict(core.arms)),
                  ("idu", idu.to_dict(core.table))):
    out.update({f"{part}.{k}": np.array(v) for k, v in d.items()})
  out["rng.pcg64"] = _rng_words(core.rng_state)
  p = core.pending
  if p is not None:
    out.update({
        "pending.arm": np.array(p.arm, np.int64), "pending.p_C": np.array(p.p_C),
        "pending.ids_S": np.array(p.ids_S), "pending.seen_S": np.array(p.seen_S),
        "pending.lr": np.array(p.lr, np.float64)
    })
    if p.rows:
      rows = idu.StepOutputs.concatenate(p.rows)
      out.update({
          f"pending.{k}": np.array(getattr(rows, k)) for k in _ROWS if getattr(rows, k) is not None
      })
  return out


def _part(arrays, prefix: str) -> dict:
  return {k[len(prefix) + 1:]: v for k, v in arrays.items() if k.startswith(prefix + ".")}


def from_arrays(arrays) -> tuple[Static, Core]:
  arrays = {k: np.asarray(v) for k, v in dict(arrays).items()}
  need = {
      "static.cluster_N", "static.task_N", "static.num_clusters", "static.num_tasks", "rng.pcg64"
  }
  if not need <= set(arrays):
    raise ValueError(f"from_state: missing {sorted(need - set(arrays))}; pass the dict that "
                     "LeadSelector.state() returned")
  layout = selection.build_layout(arrays["static.cluster_N"], arrays["static.task_N"],
                                  int(arrays["static.num_clusters"]),
                                  int(arrays["static.num_tasks"]))
  static = Static(layout, arrays.get("static.reference_N"))
  pending = None
  if "pending.ids_S" in arrays:
    rows = _part(arrays, "pending")
    rows = (idu.StepOutputs(*(rows.get(k) for k in _ROWS)),) if "index_B" in rows else ()
    pending = Pending(
        int(arrays["pending.arm"]), arrays["pending.p_C"], arrays["pending.ids_S"],
        arrays["pending.seen_S"].astype(bool), rows, float(arrays["pending.lr"]))
  core = Core(
      selection.from_dict(_part(arrays, "selection")), bandit.from_dict(_part(arrays, "bandit")),
      idu.from_dict(_part(arrays, "idu")), _rng_state(arrays["rng.pcg64"]), pending)
  return static, core
