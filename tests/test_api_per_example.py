"""lead_jax.api.per_example on a tiny linen model and a tiny flax.nnx model
(through nnx.split): loss_B, dL_B and projected g_BxK equal a Python loop of
single-example jax.grad calls, projected by the train step's code."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lead_jax import api
from lead_jax.train import losses, projection

V, D, L, B = 11, 8, 6, 4
PROJ = api.Projection(dim=32, seed=7)


class Linen(nn.Module):

  @nn.compact
  def __call__(self, tokens_L):
    return nn.Dense(V)(jnp.tanh(nn.Embed(V, D)(tokens_L)))


class Nnx(nnx.Module):

  def __init__(self, rngs):
    self.embed, self.out = nnx.Embed(V, D, rngs=rngs), nnx.Linear(D, V, rngs=rngs)

  def __call__(self, tokens_L):
    return self.out(jnp.tanh(self.embed(tokens_L)))


def _model(kind):
  """`(params, logits_fn(params, tokens_L))` of one tiny model."""
  tokens = jnp.zeros(L, jnp.int32)
  if kind == "linen":
    m = Linen()
    return m.init(jax.random.key(0), tokens)["params"], lambda p, t: m.apply({"params": p}, t)
  if kind == "nnx":
    graphdef, params = nnx.split(Nnx(nnx.Rngs(0)), nnx.Param)
    return params, lambda p, t: nnx.merge(graphdef, p)(t)
  k1, k2 = jax.random.split(jax.random.key(1))  # a tuple pytree: embedding and output matrix
  params = (jax.random.normal(k1, (V, D)), jax.random.normal(k2, (D, V)) * 0.3)
  return params, lambda p, t: jnp.tanh(p[0][t]) @ p[1]


def _batch():
  rng = np.random.default_rng(0)
  mask = np.ones((B, L), bool)
  mask[:, :2] = False  # a prompt of two tokens
  mask[2] = False  # row 2 is padding: no target
  return {
      "tokens_BxL": jnp.asarray(rng.integers(0, V, (B, L)), jnp.int32),
      "loss_mask_BxL": jnp.asarray(mask)
  }


@pytest.mark.parametrize("kind", ["linen", "nnx"])  # linen params: a dict pytree
def test_outputs_equal_a_loop_of_single_example_grads(kind):
  params, logits = _model(kind)

  def loss_fn(p, example):
    return losses.token_mean_ce(
        logits(p, example["tokens_BxL"]), example["tokens_BxL"], example["loss_mask_BxL"])

  batch = _batch()
  leaves = jax.tree.leaves(params)
  keys = jax.random.split(jax.random.key(2), len(leaves))
  update = jax.tree.unflatten(
      jax.tree.structure(params),
      [1e-2 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])
  fn = api.per_example.build(loss_fn, projection=PROJ, micro_batch=2)
  out = fn(params, batch, update)
  fn(params, batch, update)
  assert fn._cache_size() == 1  # traced once

  @jax.jit
  def single(example):  # the reference: one example's jax.grad, projected alone
    (loss, n), g = jax.value_and_grad(loss_fn, has_aux=True)(params, example)
    dl = sum(jnp.vdot(a, u) for a, u in zip(jax.tree.leaves(g), jax.tree.leaves(update)))
    return loss, n, dl, projection.project(PROJ, jax.tree.map(lambda x: x[None], g))[0]

  for i in range(B):
    loss, n, dl, g_K = single(jax.tree.map(lambda x, i=i: x[i], batch))
    if i == 2:  # padding: no target, not valid, zeros
      assert float(n) == 0 and not out.valid_B[i]
      assert float(out.dL_B[i]) == 0 and not np.any(np.asarray(out.g_BxK[i]))
      continue
    assert out.valid_B[i] and float(out.n_B[i]) == float(n) == L - 2
    np.testing.assert_allclose(out.loss_B[i], loss, rtol=1e-5)
    np.testing.assert_allclose(out.dL_B[i], dl, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(out.g_BxK[i], g_K, rtol=1e-4, atol=1e-6)
  if kind == "linen":  # one chunk, no update: the same projections, dL = 0
    whole = api.per_example.build(loss_fn, projection=PROJ)(params, batch)
    np.testing.assert_allclose(whole.g_BxK, out.g_BxK, rtol=1e-4, atol=1e-6)
    assert not np.any(np.asarray(whole.dL_B))


def test_bad_trees_are_value_errors():
  params, logits = _model("pytree")
  loss_fn = lambda p, ex: losses.token_mean_ce(
      logits(p, ex["tokens_BxL"]), ex["tokens_BxL"], ex["loss_mask_BxL"])
  batch = _batch()
  with pytest.raises(ValueError, match="the tree of `params`"):
    api.per_example.compute(loss_fn, params, batch, {"w": params[0]})
  with pytest.raises(ValueError, match="same leading axis B"):
    api.per_example.compute(loss_fn, params, dict(batch, tokens_BxL=batch["tokens_BxL"][:3]))
  with pytest.raises(ValueError, match="micro_batch=3"):
    api.per_example.compute(loss_fn, params, batch, micro_batch=3)
