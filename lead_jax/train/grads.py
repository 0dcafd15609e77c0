"""Per-example LoRA gradients, their random projection, the update dot product.

All functions take a per-example loss `loss_fn(lora, example, key) -> (loss, n)`
(see `lead_jax.train.losses.example_loss`) and work on a micro-batch at a time:

* `per_example` : `vmap(value_and_grad)` over a micro-batch; rows without a
  target token (padding) get an exactly zero gradient.
* `lead_pass`   : a `lax.scan` over micro-batches that, for each one, computes
  the per-example gradients, projects them, adds them to the batch-gradient sum
  (the batch gradient IS the mean of the per-example gradients: one backward
  pass, not two) and then drops them, so at most one micro-batch of
  per-example gradients is alive at a time.
* `plain_pass`  : the same pass without projections (the plain step's batch
  gradient), so the two steps apply the same update from the same arithmetic.
* projections of each micro-batch's gradients (`lead_jax.train.projection`).
* `dots` / `jvp_dots` : dL_i = <g_i, delta>, the first-order change of
  example i's loss under the update delta, from stored per-example gradients
  or, when they were not kept, by one forward-mode pass per micro-batch.

Micro-batches are strided: with B = m * n rows, micro-batch j holds rows
j, j + n, j + 2n, ...; a batch sharded in contiguous blocks over devices thus
gives every micro-batch an equal share on every device, with no data movement.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from lead_jax.train import projection
from lead_jax.train.projection import Projection

LossFn = Callable  # (lora, example, key) -> (loss, n_targets)


def _bcast(w_m, x):
  return w_m.reshape(w_m.shape + (1,) * (x.ndim - 1))


# --------------------------------------------------------------------------- micro-batches
def num_micro(batch_size: int, micro_batch: int) -> int:
  if micro_batch <= 0 or batch_size % micro_batch:
    raise ValueError(f"train.micro_batch={micro_batch} must be positive and divide the "
                     f"batch size {batch_size}")
  return batch_size // micro_batch


def split(tree_B, n: int):
  """`[B, ...] -> [n, B // n, ...]`, micro-batch j holding rows j, j+n, ..."""
  return jax.tree.map(lambda x: jnp.swapaxes(x.reshape((-1, n) + x.shape[1:]), 0, 1), tree_B)


def merge(tree_nxm):
  """Inverse of `split`."""
  return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1).reshape((-1,) + x.shape[2:]), tree_nxm)


# --------------------------------------------------------------------------- gradients
def per_example(loss_fn: LossFn, lora, examples_m, keys_m, batch_axes=None):
  """`(loss_m, n_m, grads)`, grads with a leading `m` axis, zero on empty rows.

  `batch_axes`: mesh axes the rows are split over (`vmap`'s spmd_axis_name),
  so sharding constraints inside `loss_fn` keep every row on its devices.
  """
  vg = jax.value_and_grad(loss_fn, has_aux=True)
  in_axes = (None, 0, None if keys_m is None else 0)
  (loss_m, n_m), g = jax.vmap(vg, in_axes=in_axes, spmd_axis_name=batch_axes)(lora, examples_m,
                                                                              keys_m)
  keep_m = n_m > 0
  g = jax.tree.map(lambda x: jnp.where(_bcast(keep_m, x), x, 0.0), g)
  return loss_m, n_m, g


def row_finite(loss_m, g):
  """Per-row: the loss and every gradient entry are finite."""
  ok = jnp.isfinite(loss_m)
  for x in jax.tree.leaves(g):
    ok &= jnp.all(jnp.isfinite(x.reshape(x.shape[0], -1)), axis=1)
  return ok


def dots(g, delta):
  """`<g_i, delta>` for every row i of a tree with a leading row axis."""
  out = 0.0
  for gi, d in zip(jax.tree.leaves(g), jax.tree.leaves(delta)):
    out += jnp.einsum("mp,p->m",
                      gi.reshape(gi.shape[0], -1).astype(jnp.float32),
                      d.reshape(-1).astype(jnp.float32))
  return out


def jvp_dots(loss_fn: LossFn, lora, delta, examples_B, keys_B, micro_batch: int, batch_axes=None):
  """`<g_i, delta>` as the directional derivative of each loss (forward mode),
  micro-batched; costs about two forward passes and no per-example gradient."""
  n = num_micro(examples_B["is_pad_B"].shape[0], micro_batch)

  def one(example, key):
    return jax.jvp(lambda l: loss_fn(l, example, key)[0], (lora,), (delta,))[1]

  def chunk(xs):
    ex, keys = xs
    return jax.vmap(one, in_axes=(0, None if keys is None else 0), spmd_axis_name=batch_axes)(ex,
                                                                                              keys)

  xs = (split(examples_B, n), None if keys_B is None else split(keys_B, n))
  return merge(jax.lax.map(chunk, xs))


# --------------------------------------------------------------------------- passes
def _sum_rows(g):
  return jax.tree.map(lambda x: jnp.sum(x, axis=0), g)


def _accumulate(micro: Callable, lora, examples_B, keys_B, n: int, keep_grads: bool):
  """Runs `micro(examples_m, keys_m) -> (outs_m, g)` (g: per-example
  gradients) over the `n` micro-batches; returns `(outs_B, grad_sum, grads_B)`.

  `grad_sum` is the sum over rows of the per-example gradients, accumulated in
  a `lax.scan` carry so one micro-batch of them is alive at a time; `grads_B`
  is kept only with `keep_grads` (else None).
  """
  if n == 1:  # the whole batch is one micro-batch: no scan
    outs, g = micro(examples_B, keys_B)
    return outs, _sum_rows(g), g if keep_grads else None

  def body(total, xs):
    outs, g = micro(*xs)
    return jax.tree.map(jnp.add, total, _sum_rows(g)), (outs, g if keep_grads else None)

  zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, jnp.float32), lora)
  xs = (split(examples_B, n), None if keys_B is None else split(keys_B, n))
  total, (outs, g) = jax.lax.scan(body, zeros, xs)
  return merge(outs), total, None if g is None else merge(g)


class LeadPass(NamedTuple):
  loss_B: jax.Array
  n_B: jax.Array  # target tokens per row
  finite_B: jax.Array
  g_BxK: Optional[jax.Array]
  grad_sum: object  # sum over rows of the per-example gradients
  grads_B: object  # per-example gradients, only when kept (else None)


def lead_pass(loss_fn: LossFn, lora, examples_B, keys_B, micro_batch: int,
              proj: Optional[Projection], keep_grads: bool, batch_axes=None,
              proj_shardings: Optional[dict] = None) -> LeadPass:
  """Per-example losses, gradients, projections and their sum, micro-batched.

  `proj_shardings`: `{lora path: NamedSharding}`, to project on the devices
  holding each parameter (`lead_jax.train.projection`).
  """
  n = num_micro(examples_B["is_pad_B"].shape[0], micro_batch)
  # Kept gradients are projected once, after the scan: the +-1 matrix is then
  # generated once per step, not once per micro-batch.
  late = keep_grads and n > 1 and proj is not None

  def micro(ex, keys):
    loss_m, n_m, g = per_example(loss_fn, lora, ex, keys, batch_axes)
    g_mxK = None if proj is None or late else projection.project(proj, g, proj_shardings)
    return (loss_m, n_m, row_finite(loss_m, g), g_mxK), g

  (loss_B, n_B, finite_B, g_BxK), total, g = _accumulate(micro, lora, examples_B, keys_B, n,
                                                         keep_grads)
  if late:
    g_BxK = projection.project(proj, g, proj_shardings)
  return LeadPass(loss_B, n_B, finite_B, g_BxK, total, g)


def plain_pass(loss_fn: LossFn, lora, examples_B, keys_B, micro_batch: int, batch_axes=None):
  """`(loss_B, n_B, grad_sum)`: the LEAD pass without projections, flags or kept
  gradients, so its gradient sum is the LEAD step's, operation for operation.

  The adapter gradients are contracted row by row (the per-example `vmap`) and
  then summed, not over rows and tokens at once as the gradient of the summed
  loss would have them. Such a multi-axis contraction is lowered by XLA:CPU
  with a transposed copy of the whole output cotangent of every adapted
  kernel (`[rows x tokens, features] -> [features, rows x tokens]`, 8 MB per
  MLP kernel per layer at B=16, L=128), which made the batched backward
  slower than LEAD's. Since `model.LoraDense` flattens leading axes, the
  per-row weight gradients are dots batched over rows contracting tokens
  only; the summed-loss gradient still contracts rows and tokens (vmap puts
  the row axis among the dot's free axes), but the two now cost the same:
  batched / per-row 1.011, 0.932, 0.989 at B=16 and 0.963, 1.008 at B=64 in
  chunks of 16 (three interleaved runs, 2026-12-02, 2 shared cores under
  load), a tie within the noise. The per-row form is kept for its identical
  arithmetic with LEAD's; its price is one micro-batch of per-example LoRA
  gradients in memory (12 MB at B=16 here), which LEAD holds as well.
  """
  n = num_micro(examples_B["is_pad_B"].shape[0], micro_batch)

  def micro(ex, keys):
    loss_m, n_m, g = per_example(loss_fn, lora, ex, keys, batch_axes)
    return (loss_m, n_m), g

  (loss_B, n_B), total, _ = _accumulate(micro, lora, examples_B, keys_B, n, False)
  return loss_B, n_B, total
