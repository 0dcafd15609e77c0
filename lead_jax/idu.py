"""The IDU table (instance-level dynamic utility) and its update rule.

Per trained sample i of iteration t (cluster c = c_t, learning rate eta):

    u_i   = l_i + dL_i                    predicted loss after the update
    IDU_i <- (1 - b) IDU_i + b u_i        exponential smoothing

with dL_i from `cfg.grad_term`:
  update   dL_i given by the train step (<g_i, delta_theta> in full LoRA space)
  history  dL_i = -eta <g^_i, beta G_tk + (1 - beta) G_t-1>
  cluster  dL   = -eta [beta^2 d_k + (1-beta)^2 d_p
                        + 2 beta (1-beta) sqrt(d_k d_p) cos_phi]   (one value)
  none     dL_i = 0
G_tk is the mean projected gradient of the last iteration that trained c,
G_t-1 that of the previous iteration (a zero vector before any), d_k = |G_tk|^2,
d_p = |G_t-1|^2, cos_phi their cosine (0 when either is zero). beta is beta*
(`beta_star`), the minimiser of |beta G_tk + (1 - beta) G_t-1|^2 over [0, 1];
it is 0 for a cluster never trained before.

Inputs are the train step's per-example outputs for the whole iteration,
concatenated in training order (`StepOutputs`). Rows that are padding
(index -1) or not finite (flag, loss, dL or gradient) never touch the table.
A sample seen several times in one iteration is updated once, from its last
valid occurrence: its latest loss is the freshest estimate of the loss after
the iteration. The iteration's mean gradient G_t averages every valid row.

Ranking score (`ranking_scores`, `cfg.reference`; an extension beyond the
paper, docs/method.md "Reducible utility"): the selector ranks candidates by

  none     IDU_i                          (default: the paper's rule)
  warmup   IDU_i - w IL_i                 (w = cfg.reference_weight >= 0)

with IL_i the warmup model's conditional response loss, an estimate of the
loss no training removes (RHO-LOSS's irreducible loss), cross-fitted on the
warmup subset by the offline stage (`warmup_il`). The table and its update
are the same in both modes; only the order of the candidates changes.
`check_config` rejects an unknown reference or a negative weight.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

GRAD_TERMS = ("update", "history", "cluster", "none")
REWARDS = ("idu_gain", "loss", "dev_gain")
REFERENCES = ("none", "warmup")  # idu.reference: what the ranking subtracts from the IDU


@dataclasses.dataclass(frozen=True)
class IduState:
  idu_N: np.ndarray  # float32 current utility of every pool sample
  grad_last_CxK: np.ndarray  # float32 G_tk per cluster (its last iteration)
  trained_C: np.ndarray  # bool, cluster has a recorded G_tk
  grad_prev_K: np.ndarray  # float32 G_t-1, the previous iteration's

  def __post_init__(self):
    for field in dataclasses.fields(self):
      getattr(self, field.name).setflags(write=False)


@dataclasses.dataclass(frozen=True)
class StepOutputs:
  """Per-example train-step outputs of one iteration, in training order."""
  index_B: np.ndarray  # int pool index, -1 on padding rows
  loss_B: np.ndarray  # response loss before the update
  finite_B: np.ndarray  # bool, False where the step saw non-finite values
  dL_B: Optional[np.ndarray] = None  # first-order loss change (mode update)
  g_BxK: Optional[np.ndarray] = None  # projected per-example gradients

  @staticmethod
  def concatenate(parts) -> "StepOutputs":

    def cat(name):
      arrays = [getattr(p, name) for p in parts]
      return None if arrays[0] is None else np.concatenate(arrays)

    return StepOutputs(*(cat(f.name) for f in dataclasses.fields(StepOutputs)))


@dataclasses.dataclass(frozen=True)
class UpdateInfo:
  ids_S: np.ndarray  # int64 distinct samples whose IDU was updated, ascending
  idu_before_S: np.ndarray  # float32
  idu_after_S: np.ndarray  # float32
  loss_S: np.ndarray  # loss of the occurrence used
  dL_S: np.ndarray  # dL of the occurrence used
  beta: float  # mixing weight used (0 for update / none)
  mean_dL: float  # cluster-level dL: mean of dL_S (propagated when enabled)
  num_invalid: int  # non-padding rows dropped as non-finite
  num_propagated: int  # untrained cluster members moved by mean_dL


def init(idu0_N: np.ndarray, num_clusters: int, k: int) -> IduState:
  idu0_N = np.asarray(idu0_N)
  if idu0_N.ndim != 1 or not np.isfinite(idu0_N).all():
    raise ValueError("idu.init: IDU_0 must be a finite 1-D array (one base "
                     "loss per pool sample); rescore the non-finite samples.")
  return IduState(
      idu_N=idu0_N.astype(np.float32), grad_last_CxK=np.zeros((num_clusters, k), np.float32),
      trained_C=np.zeros(num_clusters, bool), grad_prev_K=np.zeros(k, np.float32))


def beta_star(d_k: float, d_p: float, cos_phi: float, eps: float) -> float:
  """argmin over [0, 1] of |beta a + (1 - beta) c|^2, |a|^2 = d_k, |c|^2 = d_p.

  The guard is relative: a denominator |a - c|^2 below eps * (d_k + d_p)
  (a == c up to rounding, including both zero) gives beta = 0.
  """
  cross = np.sqrt(d_k * d_p) * cos_phi
  denom = d_k + d_p - 2.0 * cross
  if denom <= eps * (d_k + d_p) or denom <= 0.0:
    return 0.0
  return float(np.clip((d_p - cross) / denom, 0.0, 1.0))


def cluster_delta(d_k, d_p, cos_phi, beta, lr) -> float:
  """The paper's per-cluster formula (docs/method.md), literally."""
  return float(-lr * (beta**2 * d_k + (1 - beta)**2 * d_p + 2 * beta *
                      (1 - beta) * np.sqrt(d_k * d_p) * cos_phi))


def _history_stats(state: IduState, cluster: int, eps: float):
  """(G_tk, G_t-1, d_k, d_p, cos_phi, beta) in float64 for cluster c."""
  g_k = state.grad_last_CxK[cluster].astype(np.float64)
  g_p = state.grad_prev_K.astype(np.float64)
  d_k, d_p = float(g_k @ g_k), float(g_p @ g_p)
  cos_phi = float(g_k @ g_p / np.sqrt(d_k * d_p)) if d_k * d_p > 0 else 0.0
  beta = beta_star(d_k, d_p, cos_phi, eps) if state.trained_C[cluster] else 0.0
  return g_k, g_p, d_k, d_p, cos_phi, beta


def _valid_rows(out: StepOutputs, grad_term: str, num_pool: int, k: int):
  index_B = np.asarray(out.index_B)
  if index_B.min(initial=0) < -1 or index_B.max(initial=-1) >= num_pool:
    raise ValueError(f"idu.update: index_B holds values outside [-1, "
                     f"{num_pool}); the batch does not come from this pool.")
  if grad_term == "update" and out.dL_B is None:
    raise ValueError("idu.update: grad_term 'update' needs dL_B from the "
                     "train step; set the step to return it or change mode.")
  if grad_term in ("history", "cluster") and out.g_BxK is None:
    raise ValueError(f"idu.update: grad_term {grad_term!r} needs the "
                     "projected gradients g_BxK from the train step.")
  if out.g_BxK is not None and out.g_BxK.shape != (index_B.shape[0], k):
    raise ValueError(f"idu.update: g_BxK has shape {out.g_BxK.shape}, "
                     f"expected ({index_B.shape[0]}, {k}) (projection dim).")
  ok_B = np.asarray(out.finite_B, bool) & np.isfinite(out.loss_B)
  if out.dL_B is not None:
    ok_B &= np.isfinite(out.dL_B)
  if out.g_BxK is not None:
    ok_B &= np.isfinite(out.g_BxK).all(axis=1)
  real_B = index_B >= 0
  return real_B & ok_B, int((real_B & ~ok_B).sum())


def _delta_B(out, cfg, stats, lr, valid_B) -> np.ndarray:
  n = valid_B.shape[0]
  if cfg.grad_term == "none":
    return np.zeros(n)
  if cfg.grad_term == "update":
    return np.where(valid_B, out.dL_B, 0.0).astype(np.float64)
  g_k, g_p, d_k, d_p, cos_phi, beta = stats
  if cfg.grad_term == "cluster":
    return np.full(n, cluster_delta(d_k, d_p, cos_phi, beta, lr))
  direction_K = beta * g_k + (1.0 - beta) * g_p
  g_BxK = np.where(valid_B[:, None], out.g_BxK, 0.0).astype(np.float64)
  return -lr * (g_BxK @ direction_K)


def _last_occurrence(index_B, valid_B) -> np.ndarray:
  """Rows (into the batch) of each valid id's last occurrence, ids ascending."""
  rows = np.flatnonzero(valid_B)[::-1]
  _, first_in_reversed = np.unique(index_B[rows], return_index=True)
  return rows[first_in_reversed]


def update(state: IduState, cfg, out: StepOutputs, *, cluster: int, lr: float,
           members_M: Optional[np.ndarray] = None) -> tuple[IduState, UpdateInfo]:
  """Applies one iteration's outputs; `members_M`: the cluster's pool ids,
  needed only with `cfg.propagate_to_cluster`."""
  if cfg.grad_term not in GRAD_TERMS:
    raise ValueError(f"idu.grad_term must be one of {GRAD_TERMS}, got "
                     f"{cfg.grad_term!r}.")
  num_pool, k = state.idu_N.shape[0], state.grad_prev_K.shape[0]
  if not 0 <= cluster < state.trained_C.shape[0]:
    raise ValueError(f"idu.update: cluster {cluster} out of range "
                     f"[0, {state.trained_C.shape[0]}).")
  valid_B, num_invalid = _valid_rows(out, cfg.grad_term, num_pool, k)
  stats = _history_stats(state, cluster, cfg.beta_eps)
  delta_B = _delta_B(out, cfg, stats, lr, valid_B)
  index_B = np.asarray(out.index_B)
  rows_S = _last_occurrence(index_B, valid_B)
  ids_S = index_B[rows_S].astype(np.int64)
  loss_S = np.asarray(out.loss_B, np.float64)[rows_S]
  before_S = state.idu_N[ids_S]
  after_S = ((1.0 - cfg.b) * before_S.astype(np.float64) + cfg.b *
             (loss_S + delta_B[rows_S])).astype(np.float32)
  idu_N = state.idu_N.copy()
  idu_N[ids_S] = after_S
  mean_dL = float(delta_B[rows_S].mean()) if ids_S.size else 0.0
  num_propagated = 0
  if cfg.propagate_to_cluster:
    num_propagated = _propagate(idu_N, members_M, ids_S, cfg.b * mean_dL)
  new_state = _record_gradient(state, idu_N, out, valid_B, cluster)
  info = UpdateInfo(ids_S=ids_S, idu_before_S=before_S, idu_after_S=after_S, loss_S=loss_S,
                    dL_S=delta_B[rows_S], beta=stats[5] if cfg.grad_term in ("history",
                                                                             "cluster") else 0.0,
                    mean_dL=mean_dL, num_invalid=num_invalid, num_propagated=num_propagated)
  return new_state, info


def _propagate(idu_N, members_M, ids_S, shift: float) -> int:
  """Moves the untrained members of the cluster in place (a fresh copy):
  u = IDU + dL gives IDU <- IDU + b dL. Returns how many moved."""
  if members_M is None:
    raise ValueError("idu.update: propagate_to_cluster needs members_M, "
                     "the pool ids of the trained cluster.")
  trained_N = np.zeros(idu_N.shape[0], bool)
  trained_N[ids_S] = True
  rest = members_M[~trained_N[members_M]]
  idu_N[rest] = (idu_N[rest] + shift).astype(np.float32)
  return int(rest.size)


def _record_gradient(state, idu_N, out, valid_B, cluster) -> IduState:
  """G_t (mean valid projected gradient) becomes G_t-1 and cluster c's G_tk.

  Without gradients (or without a valid row) the history is left unchanged.
  """
  grad_last, trained, grad_prev = (state.grad_last_CxK, state.trained_C, state.grad_prev_K)
  if out.g_BxK is not None and valid_B.any():
    mean_K = np.asarray(out.g_BxK, np.float64)[valid_B].mean(axis=0)
    grad_prev = mean_K.astype(np.float32)
    grad_last = grad_last.copy()
    grad_last[cluster] = grad_prev
    trained = trained.copy()
    trained[cluster] = True
  return IduState(idu_N=idu_N, grad_last_CxK=grad_last, trained_C=trained, grad_prev_K=grad_prev)


def reward(kind: str, info: UpdateInfo, dev_loss_before: Optional[float] = None,
           dev_loss_after: Optional[float] = None) -> float:
  """The bandit reward of the iteration; 0 when nothing was trained."""
  if kind == "idu_gain":
    diff = info.idu_before_S.astype(np.float64) - info.idu_after_S
    return float(diff.mean()) if diff.size else 0.0
  if kind == "loss":
    return float(info.loss_S.mean()) if info.loss_S.size else 0.0
  if kind == "dev_gain":
    if dev_loss_before is None or dev_loss_after is None:
      raise ValueError("idu.reward: 'dev_gain' needs the dev loss before and "
                       "after the iteration's training pass.")
    return float(dev_loss_before - dev_loss_after)
  raise ValueError(f"bandit.reward must be one of {REWARDS}, got {kind!r}.")


def check_config(cfg) -> None:
  """One-line errors for the `idu` sub-config's ranking fields (the loop calls
  it before anything is loaded or computed)."""
  if cfg.reference not in REFERENCES:
    raise ValueError(f"idu.reference={cfg.reference!r}; use one of {REFERENCES}")
  if not cfg.reference_weight >= 0:  # also rejects NaN
    raise ValueError(f"idu.reference_weight={cfg.reference_weight!r}; use a weight >= 0")


def ranking_scores(idu_N: np.ndarray, cfg, reference_N: Optional[np.ndarray] = None) -> np.ndarray:
  """The score the selector ranks by: `idu_N` itself (reference none), or
  IDU_i - w IL_i in float64 (reference warmup, w = cfg.reference_weight,
  IL = `reference_N`); w = 0 gives the IDU's values, so the same ranking."""
  check_config(cfg)
  if cfg.reference == "none":
    return idu_N
  reference_N = None if reference_N is None else np.asarray(reference_N)
  if reference_N is None or reference_N.shape != np.shape(idu_N):
    got = None if reference_N is None else reference_N.shape
    raise ValueError(f"idu.reference={cfg.reference!r} needs one reference loss per pool sample "
                     f"(shape {np.shape(idu_N)}), got {got}")
  if not np.isfinite(reference_N).all():
    raise ValueError(f"idu.reference={cfg.reference!r}: the reference losses hold NaN or inf")
  return np.asarray(idu_N,
                    np.float64) - float(cfg.reference_weight) * reference_N.astype(np.float64)


def to_dict(state: IduState) -> dict[str, np.ndarray]:
  return {f.name: np.array(getattr(state, f.name)) for f in dataclasses.fields(state)}


def from_dict(d) -> IduState:
  names = {f.name for f in dataclasses.fields(IduState)}
  if set(d) != names:
    raise ValueError(f"idu.from_dict: expected keys {sorted(names)}, got "
                     f"{sorted(d)}; the checkpoint is not an IDU state.")
  return IduState(
      idu_N=np.array(d["idu_N"], np.float32), grad_last_CxK=np.array(d["grad_last_CxK"],
                                                                     np.float32),
      trained_C=np.array(d["trained_C"], bool), grad_prev_K=np.array(d["grad_prev_K"], np.float32))
