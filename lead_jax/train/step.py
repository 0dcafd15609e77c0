"""The training state and the pure steps: LEAD, plain, scoring, projection.

  train_step(spec, tx, lr_fn, state, base, batch, key) -> (state, outputs)   LEAD
  plain_step(spec, tx, lr_fn, state, base, batch, key) -> (state, outputs)   baselines
  score_step(model_config, micro_batch, params, batch, response_batch=None) -> dict
  project_step(spec, params, batch)                    -> dict (no update)
`state` (`TrainState`) is what training changes: the step counter, the
adapters and the optimiser state. The frozen base weights (the `params`
collection) are a separate argument, never donated and never returned: the
caller's base stays valid and serves every later step, score and reader. The
forward-only steps take the model's variables `params = {"params": base,
"lora": adapters}` (`params(base, lora)`; without "lora": the base model alone).
`compile` binds the leading arguments and jits each step once, with shardings
and a donated state (the base is not donated); the unjitted functions stay
importable for tests.

LEAD outputs, one row per batch row (never NaN: bad values are zeroed and
flagged):
  loss_B     response loss before the update, from the forward of the batch loss
  dL_B       <g_i, delta>: first-order change of loss_i under the update delta
             this call applied (docs/method.md, grad_term `update`), in full LoRA space
  g_BxK      per-example LoRA gradients, projected (`lead_jax.train.projection`)
  g_mean_K   mean of g_BxK over the valid rows (for the historical directions)
  finite_B   the row's loss and gradient are finite
  valid_B    the row counts: real, has target tokens, finite, update applied
  finite     the whole step was finite, hence applied; if not, state is unchanged
  metrics    loss, grad_norm, update_norm, lr, skipped, boundary, examples, tokens,
             dl_jvp (1 when dL_B came from the forward-mode pass, `keeps_grads`)

Accumulation. The batch of one call is split into `micro_batch` chunks whose
gradients are summed before ONE update: dL_B is exact for every row. With
`optim.accum_steps` = A > 1 (optax.MultiSteps over calls), calls inside a window
apply a zero update, so their dL_B is 0 and `metrics.boundary` is 0; the last
call of the window applies the window's update and its rows get <g_i, delta>
for that update. Rows of earlier calls of the window are not revisited.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Any, Callable, Optional

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lead_jax import paths
from lead_jax.train import grads
from lead_jax.train import losses
from lead_jax.train import projection as projection_lib
from lead_jax.train import sharding as sharding_lib
from lead_jax.model import decoder as model_lib

DL_METHODS = ("auto", "jvp", "stored")
# dl_method=auto keeps the per-example gradients (stored) while the batch's
# B x LoRA-size float32 gradients fit in this many bytes, else recomputes (jvp).
DL_STORED_MAX_BYTES = 1 << 30


@flax.struct.dataclass
class TrainState:
  """What training changes, donated to the steps and checkpointed as is. The
  frozen base is not part of it: checkpoints never hold it (16 GB at 8B), every
  reader rebuilds it from the config (a checkpoint path or the seed)."""
  step: jax.Array  # int32: calls whose update was applied (skipped calls do not count)
  lora: Any  # the trainable adapters (`lora` collection)
  opt_state: Any

  @classmethod
  def create(cls, lora, tx: optax.GradientTransformation) -> "TrainState":
    return cls(jnp.zeros((), jnp.int32), lora, tx.init(lora))


def params(base, lora=None) -> dict:
  """The model's variables: the frozen `base` (`params` collection) and the
  adapters `lora` (a `TrainState`'s `lora`); without `lora`, the base alone."""
  return {"params": base} if lora is None else {"params": base, "lora": lora}


@dataclasses.dataclass(frozen=True)
class StepSpec:
  """Static settings of a step (hashable, closed over by jit)."""
  model: model_lib.ModelConfig
  micro_batch: int  # rows per vmap chunk; divides the batch size
  projection: Optional[projection_lib.Projection]  # None: g_BxK has K = 0
  dl_method: str = "auto"  # several chunks: auto | jvp (recompute, bounded memory) | stored
  accum_steps: int = 1  # optim.accum_steps
  mesh: Any = None  # set by `compile`: rows stay on the devices of the batch axes
  lora_shardings: tuple = ()  # set by `compile`: ((lora path, NamedSharding), ...)

  @property
  def batch_axes(self):
    return None if self.mesh is None else sharding_lib.BATCH_AXES

  @property
  def proj_shardings(self) -> Optional[dict]:
    return dict(self.lora_shardings) if self.lora_shardings else None

  def loss_fn(self, base):
    """`(lora, example, key) -> (loss, n)` for one example against `base`."""
    return functools.partial(losses.example_loss, self.model, base, mesh=self.mesh)

  def __post_init__(self):
    if self.dl_method not in DL_METHODS:
      raise ValueError(f"train.dl_method={self.dl_method!r}; use one of {DL_METHODS}")


def keeps_grads(spec: StepSpec, lora, batch_size: int) -> bool:
  """Whether the step keeps the batch's per-example gradients for dL_B (one
  chunk, `stored`, or `auto` within DL_STORED_MAX_BYTES) instead of the
  forward-mode pass (`jvp`). Static: it reads shapes only."""
  if grads.num_micro(batch_size, spec.micro_batch) == 1 or spec.dl_method == "stored":
    return True
  size = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(lora))
  return spec.dl_method == "auto" and 4 * batch_size * size <= DL_STORED_MAX_BYTES


def projection_seed(seed: int) -> int:
  """The projection's seed, derived from the run seed for this one purpose."""
  return int(np.random.SeedSequence([seed, 0x9A0]).generate_state(1)[0])


def spec_from_config(model_config, train_cfg, optim_cfg, seed: int) -> StepSpec:
  proj = None
  if train_cfg.projection_dim:
    proj = projection_lib.Projection(train_cfg.projection_dim, tuple(train_cfg.projection_targets),
                                     train_cfg.projection_block_rows, projection_seed(seed))
  return StepSpec(model_config, train_cfg.micro_batch or train_cfg.batch_size, proj,
                  train_cfg.dl_method, optim_cfg.accum_steps)


def _inputs(spec: StepSpec, batch, key):
  losses.check_batch(batch)
  examples = {k: jnp.asarray(batch[k]) for k in losses.BATCH_KEYS}
  lora = spec.model.lora
  use_dropout = key is not None and lora is not None and lora.dropout > 0
  return examples, losses.row_keys(key if use_dropout else None, examples["index_B"])


def _batch_mean(loss_B, n_B, grad_sum):
  w_B = n_B > 0
  count = jnp.maximum(jnp.sum(w_B), 1).astype(jnp.float32)
  loss = jnp.sum(jnp.where(w_B, loss_B, 0.0)) / count
  return w_B, loss, jax.tree.map(lambda s: s / count, grad_sum)


def _apply(spec: StepSpec, tx, lr_fn, state: TrainState, grad, finite):
  """Optimiser update, applied only when `finite`; returns the applied delta."""
  updates, opt_state = tx.update(grad, state.opt_state, state.lora)
  keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
  new_state = state.replace(step=state.step + finite.astype(jnp.int32),
                            lora=keep(optax.apply_updates(state.lora, updates),
                                      state.lora), opt_state=keep(opt_state, state.opt_state))
  delta = jax.tree.map(lambda u: jnp.where(finite, u, 0.0).astype(jnp.float32), updates)
  a = spec.accum_steps
  metrics = {
      "grad_norm": optax.tree.norm(grad), "update_norm": optax.tree.norm(delta),
      "lr": jnp.asarray(lr_fn(state.step // a),
                        jnp.float32), "skipped": 1 - finite.astype(jnp.int32), "boundary":
                            (finite & (state.step % a == a - 1)).astype(jnp.int32)
  }
  return new_state, delta, metrics


def _finish(w_B, finite_B, finite, loss, loss_B, n_B, metrics):
  valid_B = w_B & finite_B & finite
  metrics = dict(metrics, loss=jnp.where(finite, loss, 0.0),
                 examples=jnp.sum(w_B).astype(jnp.int32), tokens=jnp.sum(n_B).astype(jnp.int32))
  return valid_B, {
      "loss_B": jnp.where(finite_B, loss_B, 0.0), "finite_B": finite_B, "valid_B": valid_B,
      "finite": finite, "metrics": metrics
  }


def train_step(spec: StepSpec, tx, lr_fn, state: TrainState, base, batch, key):
  """One LEAD training step of the adapters on top of the frozen `base` (see
  module doc for the outputs)."""
  examples, keys = _inputs(spec, batch, key)
  loss_fn = spec.loss_fn(base)
  keep = keeps_grads(spec, state.lora, examples["is_pad_B"].shape[0])
  p = grads.lead_pass(loss_fn, state.lora, examples, keys, spec.micro_batch, spec.projection, keep,
                      spec.batch_axes, spec.proj_shardings)
  w_B, loss, grad = _batch_mean(p.loss_B, p.n_B, p.grad_sum)
  finite = jnp.all(p.finite_B) & jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grad))
  new_state, delta, metrics = _apply(spec, tx, lr_fn, state, grad, finite)
  if p.grads_B is not None:
    dl_B = grads.dots(p.grads_B, delta)
  else:
    dl_B = grads.jvp_dots(loss_fn, state.lora, delta, examples, keys, spec.micro_batch,
                          spec.batch_axes)
  valid_B, out = _finish(w_B, p.finite_B, finite, loss, p.loss_B, p.n_B, metrics)
  g_BxK = p.g_BxK if p.g_BxK is not None else jnp.zeros((w_B.shape[0], 0), jnp.float32)
  g_BxK = jnp.where(valid_B[:, None], g_BxK, 0.0)
  out["dL_B"] = jnp.where(valid_B, dl_B, 0.0)
  out["g_BxK"] = g_BxK
  out["g_mean_K"] = jnp.sum(g_BxK, axis=0) / jnp.maximum(jnp.sum(valid_B), 1)
  out["metrics"]["dl_jvp"] = jnp.asarray(p.grads_B is None, jnp.int32)  # for the ledger
  return new_state, out


def plain_step(spec: StepSpec, tx, lr_fn, state: TrainState, base, batch, key):
  """A LoRA step without LEAD's per-example outputs: loss_B, flags and metrics
  only. Its gradient is the LEAD pass's sum of per-example gradients
  (`grads.plain_pass`), so both steps apply the same update."""
  examples, keys = _inputs(spec, batch, key)
  loss_B, n_B, grad_sum = grads.plain_pass(
      spec.loss_fn(base), state.lora, examples, keys, spec.micro_batch, spec.batch_axes)
  w_B, loss, grad = _batch_mean(loss_B, n_B, grad_sum)
  finite_B = jnp.isfinite(loss_B)
  finite = jnp.all(finite_B) & jnp.isfinite(optax.tree.norm(grad))
  new_state, _, metrics = _apply(spec, tx, lr_fn, state, grad, finite)
  return new_state, _finish(w_B, finite_B, finite, loss, loss_B, n_B, metrics)[1]


def _forward_losses(model_config, micro_batch: int, params, batch, mesh):
  losses.check_batch(batch)
  examples = {k: jnp.asarray(batch[k]) for k in losses.BATCH_KEYS}
  base, lora = params["params"], params.get("lora")
  per_row = jax.vmap(lambda ex: losses.example_loss(model_config, base, lora, ex, mesh=mesh),
                     spmd_axis_name=None if mesh is None else sharding_lib.BATCH_AXES)
  n = grads.num_micro(examples["is_pad_B"].shape[0], micro_batch)
  if n == 1:
    return per_row(examples)
  return grads.merge(jax.lax.map(per_row, grads.split(examples, n)))


def score_step(model_config, micro_batch: int, params, batch, response_batch=None, *, mesh=None):
  """Forward only. `loss_B`/`tokens_B` of `batch`; with the response-only view
  of the same rows, also `response_loss_B`/`response_tokens_B` (IFD's ratio)."""
  loss_B, n_B = _forward_losses(model_config, micro_batch, params, batch, mesh)
  out = {"loss_B": loss_B, "tokens_B": n_B.astype(jnp.int32)}
  if response_batch is not None:
    r_loss_B, r_n_B = _forward_losses(model_config, micro_batch, params, response_batch, mesh)
    out.update(response_loss_B=r_loss_B, response_tokens_B=r_n_B.astype(jnp.int32))
  return out


def project_step(spec: StepSpec, params, batch):
  """Per-example losses and projected gradients at `params`, no update (features
  for clustering and gradient-matching selectors)."""
  if spec.projection is None:
    raise ValueError("project_step needs train.projection_dim > 0")
  examples, keys = _inputs(spec, batch, None)
  p = grads.lead_pass(
      spec.loss_fn(params["params"]), params["lora"], examples, keys, spec.micro_batch,
      spec.projection, False, spec.batch_axes, spec.proj_shardings)
  valid_B = (p.n_B > 0) & p.finite_B
  return {
      "loss_B": jnp.where(p.finite_B, p.loss_B, 0.0), "valid_B": valid_B,
      "g_BxK": jnp.where(valid_B[:, None], p.g_BxK, 0.0)
  }


# Inside a per-example vmap every activation belongs to one row; vmap's
# spmd_axis_name puts the row axis on the batch axes.
ACTIVATION_RULES = tuple((name, None) for name in model_lib.ACTIVATION_AXES)


class _InMesh:
  """A jitted function called (and lowered) with `mesh` as the context mesh and
  the activation rules, so the model's logical constraints take effect."""

  def __init__(self, jitted, mesh):
    self._jitted, self._mesh = jitted, mesh

  def _context(self):
    return contextlib.ExitStack() if self._mesh is None else _mesh_context(self._mesh)

  def __call__(self, *args, **kwargs):
    with self._context():
      return self._jitted(*args, **kwargs)

  def lower(self, *args, **kwargs):
    with self._context():
      return self._jitted.lower(*args, **kwargs)

  def _cache_size(self):
    return self._jitted._cache_size()  # pylint: disable=protected-access


@contextlib.contextmanager
def _mesh_context(mesh):
  with jax.set_mesh(mesh), nn.logical_axis_rules(ACTIVATION_RULES):
    yield


@dataclasses.dataclass(frozen=True)
class Steps:
  """The jitted steps of one run. Per-example outputs come back replicated
  (gathered inside the step); `fetch` brings them to the host."""
  train: Callable  # (state, base, batch, key) -> (state, outputs); state donated, base not
  plain: Callable  # (state, base, batch, key) -> (state, outputs); state donated, base not
  score: Callable  # (params, batch, response_batch=None) -> dict
  project: Callable  # (params, batch) -> dict


def compile(spec: StepSpec, tx, lr_fn, mesh=None, state_sharding=None) -> Steps:  # pylint: disable=redefined-builtin
  """Jits the steps. With a mesh, `state_sharding` is the `TrainState`'s
  sharding tree (`build.init_state`, `build.abstract_state`): the new state
  comes back on it. Inputs keep the shardings they were placed with (the base
  by `build.shardings`, batches by `sharding.shard_batch`); per-example outputs
  come back replicated. Only the state is donated: the base stays valid."""
  if mesh is not None and state_sharding is None:
    raise ValueError("compile with a mesh needs the state's shardings (build.init_state)")
  out = None if mesh is None else sharding_lib.replicated(mesh)
  state_out = None if mesh is None else (state_sharding, out)
  if mesh is not None:
    spec = dataclasses.replace(spec, mesh=mesh,
                               lora_shardings=tuple(paths.flatten(state_sharding.lora).items()))
  bind = lambda f: functools.partial(f, spec, tx, lr_fn)
  return Steps(
      train=_InMesh(jax.jit(bind(train_step), out_shardings=state_out, donate_argnums=0), mesh),
      plain=_InMesh(jax.jit(bind(plain_step), out_shardings=state_out, donate_argnums=0),
                    mesh), score=_InMesh(
                        jax.jit(
                            functools.partial(score_step, spec.model, spec.micro_batch, mesh=mesh),
                            out_shardings=out), mesh),
      project=_InMesh(jax.jit(functools.partial(project_step, spec), out_shardings=out), mesh))


def fetch(outputs) -> dict:
  """The host copy (NumPy) of a step's outputs: the one device->host transfer."""
  return jax.tree.map(np.asarray, jax.device_get(outputs))
