"""LEAD's per-example outputs for any JAX model: loss_B, dL_B and projected g_BxK.

    fn = per_example.build(loss_fn, projection=Projection(dim=64, seed=0), micro_batch=8)
    out = fn(params, batch_B, update)        # params: before the update

`loss_fn(params, example) -> (loss, n_tokens)` scores ONE example (every leaf
of `batch_B` without its leading axis B); rows with n_tokens = 0 are padding.
`params` is any pytree of the trainable parameters (linen `params`, the
`nnx.Param` state of `nnx.split`, a dict), `update` the change the optimiser
applied to them (optax's `updates`, or new minus old parameters) in the same
tree. Per row i:

  loss_B   l_i at `params`, before the update
  n_B      its target tokens
  valid_B  n_i > 0 and l_i and g_i finite; dL_B and g_BxK are 0 elsewhere
  dL_B     <g_i, update>, the first-order change of l_i under the update
           (idu.grad_term = update); 0 without an update
  g_BxK    the per-example gradient projected by the seeded +-1 matrix of
           `lead_jax.train.projection` (`project`, the train step's code); K = 0
           without a projection

The rows are processed `micro_batch` at a time (`vmap` of value_and_grad,
`lead_jax.train.grads.per_example`; strided micro-batches as the train step
splits them), so one micro-batch of per-example gradients is alive at a time.
Unlike the train step, the update is known before the pass, so dL_B needs
neither kept gradients nor a forward-mode pass.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lead_jax.train import grads
from lead_jax.train import projection as projection_lib


class Outputs(NamedTuple):
  loss_B: jax.Array
  n_B: jax.Array
  valid_B: jax.Array
  dL_B: jax.Array
  g_BxK: jax.Array


def _rows(batch_B) -> int:
  sizes = {x.shape[0] for x in jax.tree.leaves(batch_B)}
  if len(sizes) != 1:
    raise ValueError(f"per_example: every leaf of the batch needs the same leading axis B, got "
                     f"{sorted(sizes)}")
  return sizes.pop()


def _check_update(params, update) -> None:
  if update is None:
    return
  if jax.tree.structure(update) != jax.tree.structure(params):
    raise ValueError("per_example: `update` must have the tree of `params` (the optimiser's "
                     f"updates of those parameters); got {jax.tree.structure(update)} for "
                     f"{jax.tree.structure(params)}")
  for u, p in zip(jax.tree.leaves(update), jax.tree.leaves(params)):
    if u.shape != p.shape:
      raise ValueError(f"per_example: an update leaf has shape {u.shape}, its parameter "
                       f"{p.shape}")


def compute(loss_fn: Callable, params, batch_B, update=None, *,
            projection: projection_lib.Projection | None = None,
            micro_batch: int | None = None) -> Outputs:
  """The per-example outputs of one batch (module doc); unjitted (`build` jits it)."""
  b = _rows(batch_B)
  n = grads.num_micro(b, micro_batch or b)
  _check_update(params, update)
  keyed = lambda p, example, key: loss_fn(p, example)  # grads' loss takes a dropout key

  def micro(examples_m):
    loss_m, n_m, g = grads.per_example(keyed, params, examples_m, None)
    finite_m = grads.row_finite(loss_m, g)
    m = loss_m.shape[0]
    dl_m = jnp.zeros(m, jnp.float32) if update is None else grads.dots(g, update)
    g_mxK = (
        jnp.zeros(
            (m, 0), jnp.float32) if projection is None else projection_lib.project(projection, g))
    return loss_m, n_m, finite_m, dl_m, g_mxK

  if n == 1:
    loss_B, n_B, finite_B, dl_B, g_BxK = micro(batch_B)
  else:
    loss_B, n_B, finite_B, dl_B, g_BxK = grads.merge(jax.lax.map(micro, grads.split(batch_B, n)))
  valid_B = (n_B > 0) & finite_B
  return Outputs(
      loss_B=jnp.where(finite_B, loss_B, 0.0), n_B=n_B, valid_B=valid_B,
      dL_B=jnp.where(valid_B, dl_B, 0.0), g_BxK=jnp.where(valid_B[:, None], g_BxK, 0.0))


def build(loss_fn: Callable, *, projection: projection_lib.Projection | None = None,
          micro_batch: int | None = None) -> Callable:
  """`compute` jitted once for `loss_fn`: `fn(params, batch_B, update=None) -> Outputs`."""
  return jax.jit(
      functools.partial(compute, loss_fn, projection=projection, micro_batch=micro_batch))
