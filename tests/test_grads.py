"""Per-example gradients, micro-batching, the random projection, the dot products."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lead_jax.train import grads
from lead_jax.train import losses
from lead_jax.model import lora as lora_lib
from lead_jax.model import decoder as model
from lead_jax.train import projection

B, L = 8, 16


def _config(dropout=0.0):
  return model.ModelConfig(
      vocab_size=261, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2,
      num_kv_heads=1, head_dim=16, lora=lora_lib.LoraConfig(rank=4, dropout=dropout,
                                                            targets=(r"(q|v|down)_proj/kernel$",)))


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  lengths = np.array([16, 12, 9, 16, 5, 14, 16, 0])  # last row: padding
  attn = np.arange(L)[None] < lengths[:, None]
  loss = attn & (np.arange(L)[None] >= (lengths // 2)[:, None])
  loss[3] = False  # a real row without target tokens
  return {
      "tokens_BxL": np.where(attn, rng.integers(0, 256, (B, L)), 257).astype(np.int32),
      "attention_mask_BxL": attn, "loss_mask_BxL": loss, "is_pad_B": lengths == 0,
      "index_B": np.where(lengths > 0, np.arange(B), -1)
  }


@pytest.fixture(scope="module")
def tiny():
  mc = _config()
  base = model.init(mc, jax.random.key(0))["params"]
  lora = lora_lib.init(mc.lora, base, jax.random.key(1))
  # Non-zero b so gradients reach every adapter matrix.
  lora = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.key(2), x.shape), lora)
  batch = {k: jnp.asarray(v) for k, v in _batch().items()}
  return mc, base, lora, batch


def _ref_loss(mc, base, lora, tokens, attn, loss_mask):
  """Independent reference: plain log-softmax, no vmap, batch of any size."""
  logits = model.forward(mc, {"params": base, "lora": lora}, tokens, attn)
  logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
  nll = -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
  m = loss_mask[:, 1:].astype(jnp.float32)
  return jnp.sum(nll * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)


def test_per_example_grads_match_loop_and_batch_grad(tiny):
  mc, base, lora, batch = tiny
  loss_fn = functools.partial(losses.example_loss, mc, base)
  loss_B, n_B, g = jax.jit(grads.per_example, static_argnums=0)(loss_fn, lora, batch, None)
  row_grad = jax.jit(jax.grad(lambda l, t, a, m: _ref_loss(mc, base, l, t, a, m)[0]))
  for i in range(B):
    row = {k: v[i:i + 1] for k, v in batch.items()}
    ref_i = row_grad(lora, row["tokens_BxL"], row["attention_mask_BxL"], row["loss_mask_BxL"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, atol=2e-6, rtol=2e-4), g, ref_i)
  for i in (3, 7):  # a row without targets and a padding row: exactly zero
    assert all(float(jnp.abs(x[i]).max()) == 0.0 for x in jax.tree.leaves(g))
  w = (np.asarray(n_B) > 0).astype(np.float32)
  np.testing.assert_array_equal(w, [1, 1, 1, 0, 1, 1, 1, 0])

  def batch_loss(l):
    per = _ref_loss(mc, base, l, batch["tokens_BxL"], batch["attention_mask_BxL"],
                    batch["loss_mask_BxL"])
    return jnp.sum(per * w) / w.sum(), per

  batch_grad, ref_B = jax.jit(jax.grad(batch_loss, has_aux=True))(lora)
  mean = jax.tree.map(lambda x: jnp.einsum("b...,b->...", x, w) / w.sum(), g)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-6, rtol=2e-4), mean,
               batch_grad)
  np.testing.assert_allclose(np.asarray(loss_B)[w > 0], np.asarray(ref_B)[w > 0], rtol=1e-5)


def test_split_merge_are_inverse_and_strided():
  x = jnp.arange(12)
  parts = grads.split({"a": x}, 3)["a"]
  assert parts.shape == (3, 4)
  np.testing.assert_array_equal(parts[1], [1, 4, 7, 10])
  np.testing.assert_array_equal(grads.merge(parts), x)
  with pytest.raises(ValueError, match="micro_batch"):
    grads.num_micro(8, 3)


@pytest.fixture(scope="module")
def passes():
  """lead_pass at micro-batch 8 and 2 with dropout on (per-row keys)."""
  mc = _config(dropout=0.2)
  base = model.init(mc, jax.random.key(0))["params"]
  lora = jax.tree.map(lambda x: x + 0.05, lora_lib.init(mc.lora, base, jax.random.key(1)))
  batch = {k: jnp.asarray(v) for k, v in _batch(1).items()}
  keys = losses.row_keys(jax.random.key(3), batch["index_B"])
  loss_fn = functools.partial(losses.example_loss, mc, base)
  proj = projection.Projection(64, (r".*",), 100, seed=7)
  run = jax.jit(grads.lead_pass, static_argnums=(0, 4, 5, 6))
  out = {m: run(loss_fn, lora, batch, keys, m, proj, True) for m in (8, 2)}
  return loss_fn, lora, batch, keys, out


def test_micro_batch_size_does_not_change_results(passes):
  _, _, _, _, out = passes
  for m in (2,):
    np.testing.assert_allclose(out[m].loss_B, out[8].loss_B, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[m].g_BxK, out[8].g_BxK, rtol=1e-4, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 out[m].grad_sum, out[8].grad_sum)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 out[m].grads_B, out[8].grads_B)
  assert np.asarray(out[8].finite_B).all()


def test_jvp_dots_equal_stored_dots(passes):
  loss_fn, lora, batch, keys, out = passes
  delta = jax.tree.map(lambda x: 1e-2 * jax.random.normal(jax.random.key(5), x.shape), lora)
  stored = grads.dots(out[8].grads_B, delta)
  jvp = jax.jit(grads.jvp_dots, static_argnums=(0, 5))(loss_fn, lora, delta, batch, keys, 4)
  np.testing.assert_allclose(jvp, stored, rtol=1e-4, atol=1e-6)
  assert float(stored[-1]) == 0.0  # padding row


def test_plain_pass_equals_sum_of_per_example(passes):
  loss_fn, lora, batch, keys, out = passes
  loss_B, _, total = jax.jit(grads.plain_pass, static_argnums=(0, 4))(loss_fn, lora, batch, keys, 4)
  np.testing.assert_allclose(loss_B, out[8].loss_B, rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), total,
               out[8].grad_sum)
