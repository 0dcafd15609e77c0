"""LEAD's host side for any trainer: propose the ids to train, observe their outputs.

    sel = LeadSelector.create(tasks_N, ifd_N, idu0_N, config, seed)
    while not sel.done:
      ids_S = sel.propose()                  # this iteration's selection
      for ids_B in batches of ids_S:         # train them; per_example gives the outputs
        info = sel.observe(ids_B, loss_B, dL_B, g_BxK, lr=lr)
    # info.ended: the iteration's IDU update, reward and bandit update are done

It runs the loop's host steps with the loop's functions, in the loop's order
(`lead_jax.loop.iteration`): propose = `bandit.draw_distinct` (one arm),
`idu.ranking_scores`, the registry's `lead` selector, `selection.record`
(the use counts) and the training order `Generator.permutation(ids_S)`, all
from the run's seeded Generator (`loop.host.seeded_generator`); the end of an
iteration = `idu.update` over all its observed rows, in the order observed,
`idu.reward` and `bandit.update`. Fed the loop's per-example outputs, it makes
the loop's selections, probabilities, rewards and IDU table, bit for bit.

An iteration ends when every proposed id has been observed at least once (in
the observe call that completes it), or at `end_iteration()` (some ids were
not trained). Rows with id -1 are padding. An id observed twice counts once,
from its last valid row (`idu.update`). An empty proposal (the drawn cluster
is used up) ends its iteration at once: call propose again. Calling propose
again before the iteration ends returns the same ids.

`config` holds `select`, `bandit` and `idu` (and `offline` for `create`: the
IFD mapping and k-means restarts), as a run config does (configs/default.py).
The selector runs the paper's schedule: one cluster per iteration
(select.clusters_per_iteration = 1), no replay, and a reward over the trained
samples (bandit.reward = idu_gain or loss; dev_gain needs the loop's dev passes).

`state()` is a flat dict of NumPy arrays (np.savez, torch.save, orbax);
`from_state(state, config)` rebuilds the selector from it, mid-iteration too.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lead_jax import bandit, idu, selection
from lead_jax.api import offline as offline_lib
from lead_jax.api import state_io
from lead_jax.api.state_io import Pending
from lead_jax.loop import host, schedule


@dataclasses.dataclass(frozen=True)
class Info:
  """What `observe` / `end_iteration` did; the last fields once `ended`."""
  rows: int  # rows of this call, padding excluded
  remaining: int  # proposed ids not observed yet
  ended: bool  # this call ended the iteration
  iteration: int  # the iteration's index t
  arm: int  # its cluster
  p_C: np.ndarray  # the probabilities the arm was drawn with
  reward: float | None = None
  update: idu.UpdateInfo | None = None  # the IDU update's details
  log_w_C: np.ndarray | None = None  # the bandit's log-weights after the update


def _check_config(config) -> None:
  bandit.check_config(config.bandit)
  idu.check_config(config.idu)
  if config.select.clusters_per_iteration != 1:
    raise ValueError(f"select.clusters_per_iteration={config.select.clusters_per_iteration}: "
                     "LeadSelector draws one cluster per iteration; set it to 1 or use the loop")
  if config.bandit.reward not in ("idu_gain", "loss"):
    raise ValueError(f"bandit.reward={config.bandit.reward!r}: LeadSelector rewards the trained "
                     "samples; use idu_gain or loss (dev_gain needs the loop's dev passes)")
  if config.idu.grad_term not in idu.GRAD_TERMS:
    raise ValueError(f"idu.grad_term={config.idu.grad_term!r}; use one of {idu.GRAD_TERMS}")


def _vector(name: str, x, n: int | None) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != 1 or (n is not None and x.shape[0] != n):
    want = "a 1-D array" if n is None else f"shape ({n},)"
    raise ValueError(f"{name} has shape {x.shape}; expected {want}, one value per row")
  return x


class LeadSelector:
  """LEAD's host state and steps for a trainer of your own (module doc)."""

  def __init__(self, config, static: state_io.Static, core: state_io.Core):
    _check_config(config)
    self.config, self._static, self._core = config, static, core
    self._selector = selection.make("lead", config.select, static.layout,
                                    reference=config.idu.reference)

  # ------------------------------------------------------------------ constructors
  @classmethod
  def from_clusters(cls, tasks_N, cluster_N, idu0_N, config, seed: int, *, proj_dim: int = 0,
                    num_tasks: int | None = None, reference_N=None) -> LeadSelector:
    """From the clusters (labels 0..K-1); `proj_dim`: K of the g_BxK you observe (0: none);
    `reference_N`: IL, for idu.reference = warmup."""
    _check_config(config)
    tasks_N = _vector("tasks_N", tasks_N, None)
    n = tasks_N.shape[0]
    if not n:
      raise ValueError("tasks_N is empty: the selector needs a pool of at least one sample")
    if config.idu.reference != "none" and reference_N is None:
      raise ValueError(f"idu.reference={config.idu.reference!r} ranks by IDU - w IL: pass "
                       "reference_N (IL, one loss per sample), or set idu.reference='none'")
    cluster_N = _vector("cluster_N", cluster_N, n).astype(np.int64)
    idu0_N = _vector("idu0_N", idu0_N, n)
    k = int(cluster_N.max()) + 1
    num_tasks = int(tasks_N.max()) + 1 if num_tasks is None else num_tasks
    static = state_io.Static(
        selection.build_layout(cluster_N, tasks_N, k, num_tasks),
        None if reference_N is None else _vector("reference_N", reference_N, n))
    core = state_io.Core(
        sel=selection.init_state(n), arms=bandit.init(k), table=idu.init(idu0_N, k, proj_dim),
        rng_state=host.seeded_generator(seed).bit_generator.state, pending=None)
    return cls(config, static, core)

  @classmethod
  def create(cls, tasks_N, ifd_N, idu0_N, config, seed: int, **kwargs) -> LeadSelector:
    """From the IFD values: the offline stage's k-means (`api.offline.clusters`)."""
    ifd_N = _vector("ifd_N", ifd_N, np.shape(tasks_N)[0])
    return cls.from_clusters(tasks_N, offline_lib.clusters(ifd_N, config, seed), idu0_N, config,
                             seed, **kwargs)

  @classmethod
  def from_offline(cls, result, tasks_N, config, seed: int, **kwargs) -> LeadSelector:
    """From an `offline.Result` (the stage's or `api.offline.run`'s)."""
    if result.cluster_N is None or result.idu0_N is None:
      raise ValueError("from_offline: the offline result has no clusters or IDU_0; compute "
                       "ifd, base_loss and clusters")
    kwargs.setdefault("reference_N", result.reference_N)
    return cls.from_clusters(tasks_N, result.cluster_N, result.idu0_N, config, seed, **kwargs)

  # ------------------------------------------------------------------ state
  @property
  def done(self) -> bool:
    """The budget or T_max is reached and no iteration is in flight."""
    return self._core.pending is None and self._selector.done(self._core.sel)

  @property
  def idu_N(self) -> np.ndarray:
    return self._core.table.idu_N

  @property
  def use_count_N(self) -> np.ndarray:
    return self._core.sel.use_count_N

  @property
  def iteration(self) -> int:
    """Iterations proposed so far (the one in flight included)."""
    return self._core.sel.iteration

  def probabilities(self) -> np.ndarray:
    """The bandit's current p_C (the next draw's)."""
    return bandit.probabilities(self._core.arms, self.config.bandit)

  def state(self) -> dict[str, np.ndarray]:
    return state_io.to_arrays(self._static, self._core)

  @classmethod
  def from_state(cls, arrays, config) -> LeadSelector:
    static, core = state_io.from_arrays(arrays)
    return cls(config, static, core)

  # ------------------------------------------------------------------ steps
  def propose(self) -> np.ndarray:
    """This iteration's ids (int64), in the loop's training order."""
    c = self._core
    if c.pending is not None:
      return c.pending.ids_S.copy()
    if self.done:
      raise ValueError("propose: the selector is done (distinct budget or select.t_max "
                       "reached); stop selecting, or create a new selector")
    rng = host.generator(c.rng_state)
    arms, p_MxC = bandit.draw_distinct(c.arms, self.config.bandit, rng, 1)
    scores_N = idu.ranking_scores(c.table.idu_N, self.config.idu, self._static.reference_N)
    ids_S = self._selector.select(c.sel, selection.Inputs(arms[0], scores_N), rng)
    sel = selection.record(c.sel, ids_S)
    order_S = rng.permutation(ids_S) if ids_S.size else ids_S
    pending = Pending(arms[0], p_MxC[0], order_S, np.zeros(ids_S.size, bool), (), float("nan"))
    self._core = dataclasses.replace(c, sel=sel, rng_state=rng.bit_generator.state,
                                     pending=pending if ids_S.size else None)
    return order_S.copy()

  def observe(self, ids_B, loss_B, dL_B=None, g_BxK=None, *, valid_B=None,
              lr: float | None = None) -> Info:
    """Records one batch's per-example outputs (loss before the update, dL, projected
    gradient; `valid_B` False drops a row); ends the iteration when it completes it."""
    p = self._pending("observe")
    out = self._outputs(p, ids_B, loss_B, dL_B, g_BxK, valid_B)
    seen_S = p.seen_S | np.isin(p.ids_S, out.index_B)
    lr = p.lr if lr is None else float(lr)
    p = dataclasses.replace(p, seen_S=seen_S, rows=p.rows + (out,), lr=lr)
    self._core = dataclasses.replace(self._core, pending=p)
    rows = int((out.index_B >= 0).sum())
    if seen_S.all():
      return self._end(rows)
    return Info(rows, int((~seen_S).sum()), False, self.iteration - 1, p.arm, p.p_C)

  def end_iteration(self) -> Info:
    """Ends the iteration with the rows observed so far (unobserved ids keep their IDU)."""
    p = self._pending("end_iteration")
    if not p.rows:
      raise ValueError("end_iteration: nothing observed in this iteration; observe at least one "
                       "batch of the proposed ids first")
    return self._end(0)

  # ------------------------------------------------------------------ internals
  def _pending(self, who: str) -> Pending:
    if self._core.pending is not None:
      return self._core.pending
    if self._selector.done(self._core.sel):
      raise ValueError(f"{who}: the selector is done (budget or select.t_max reached); "
                       "nothing is proposed, so nothing can be observed")
    raise ValueError(f"{who}: no iteration in flight; call propose() first and observe its ids")

  def _outputs(self, p: Pending, ids_B, loss_B, dL_B, g_BxK, valid_B) -> idu.StepOutputs:
    ids_B = _vector("ids_B", ids_B, None).astype(np.int64)
    b, cfg = ids_B.shape[0], self.config.idu
    loss_B = _vector("loss_B", loss_B, b)
    dL_B = None if dL_B is None else _vector("dL_B", dL_B, b)
    valid_B = np.ones(b, bool) if valid_B is None else _vector("valid_B", valid_B, b).astype(bool)
    k = self._core.table.grad_prev_K.shape[0]
    if g_BxK is not None and np.shape(g_BxK) != (b, k):
      raise ValueError(f"g_BxK has shape {np.shape(g_BxK)}; expected ({b}, {k}): one row per id "
                       f"and the proj_dim={k} the selector was created with")
    if cfg.grad_term == "update" and dL_B is None:
      raise ValueError("observe: idu.grad_term='update' needs dL_B (api.per_example gives it)")
    if cfg.grad_term in ("history", "cluster") and g_BxK is None:
      raise ValueError(f"observe: idu.grad_term={cfg.grad_term!r} needs g_BxK and proj_dim > 0")
    if p.rows and ((p.rows[0].dL_B is None) != (dL_B is None) or
                   (p.rows[0].g_BxK is None) != (g_BxK is None)):
      raise ValueError("observe: give dL_B and g_BxK in every call of an iteration or in none")
    stray = np.setdiff1d(ids_B[ids_B != -1], p.ids_S)
    if stray.size:
      raise ValueError(f"observe: ids {stray[:8].tolist()} were not proposed in this iteration "
                       f"({p.ids_S.size} ids); observe only propose()'s ids, -1 for padding")
    return idu.StepOutputs(ids_B, loss_B, valid_B, dL_B,
                           None if g_BxK is None else np.asarray(g_BxK, np.float32))

  def _end(self, rows: int) -> Info:
    """The loop's learning step: IDU update, reward, bandit update."""
    c, cfg = self._core, self.config
    p = c.pending
    outs = idu.StepOutputs.concatenate(p.rows)
    table, update = schedule.update_idu(cfg, self._static.layout, c.table, outs, p.arm, p.lr)
    reward = idu.reward(cfg.bandit.reward, update)
    arms = bandit.update(c.arms, cfg.bandit, p.arm, reward)
    self._core = dataclasses.replace(c, table=table, arms=arms, pending=None)
    return Info(rows, int((~p.seen_S).sum()), True, self.iteration - 1, p.arm, p.p_C, reward,
                update, arms.log_w_C)
