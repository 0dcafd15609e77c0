"""Decoder: tracing, padding, dtypes, KV cache, remat, config validation."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lead_jax import paths
from lead_jax.model import lora
from lead_jax.model import decoder as model

CONFIG = model.ModelConfig(vocab_size=61, hidden_size=32, intermediate_size=48, num_layers=2,
                           num_heads=4, num_kv_heads=2, head_dim=8, rope_theta=1e4)


@pytest.fixture(scope="module")
def params():
  return model.init(CONFIG, jax.random.key(0))


@pytest.fixture(scope="module")
def forward_fn():
  return jax.jit(lambda p, t, m: model.forward(CONFIG, p, t, m))


def _tokens(seed, shape):
  return np.random.RandomState(seed).randint(0, CONFIG.vocab_size, shape).astype(np.int32)


def test_jitted_forward_traces_once():
  traces = []

  def fn(p, t, m):
    traces.append(1)
    return model.forward(CONFIG, p, t, m)

  jitted = jax.jit(fn)
  params = model.init(CONFIG, jax.random.key(1))
  for seed in range(3):
    mask = np.arange(8)[None, :] < np.array([[8], [3 + seed]])
    jitted(params, _tokens(seed, (2, 8)), mask).block_until_ready()
  assert len(traces) == 1


def test_padding_and_positions(params, forward_fn):
  """A row's real-token logits do not depend on padding, left or right."""
  row = _tokens(0, (5,))
  alone = np.asarray(forward_fn(params, row[None], np.ones((1, 5), bool)))[0]
  tokens = np.zeros((2, 8), np.int32)
  tokens[0, :5], tokens[1, 3:] = row, row
  mask = np.zeros((2, 8), bool)
  mask[0, :5], mask[1, 3:] = True, True
  padded = np.asarray(forward_fn(params, tokens, mask))
  np.testing.assert_allclose(padded[0, :5], alone, atol=1e-5)  # right padding
  np.testing.assert_allclose(padded[1, 3:], alone, atol=1e-5)  # left padding
  np.testing.assert_array_equal(model.positions_from_mask(mask)[1], [0, 0, 0, 0, 1, 2, 3, 4])


@pytest.mark.parametrize("window", [None, 3])
def test_packed_rows_equal_separate_passes(params, window):
  """Segments of a packed row: logits and final hidden states of each equal its
  own unpadded pass (block-diagonal attention, positions restarting at 0)."""
  config = dataclasses.replace(CONFIG, sliding_window=window)
  p = params if window is None else model.init(config, jax.random.key(0))
  lens = [[4, 6, 1], [9]]  # row 0: three segments and 1 padding slot; row 1: one
  rows = [[_tokens(10 * r + g, (n,)) for g, n in enumerate(row)] for r, row in enumerate(lens)]
  tokens, segment = np.zeros((2, 12), np.int32), np.zeros((2, 12), np.int32)
  for r, row in enumerate(rows):
    at = 0
    for g, t in enumerate(row):
      tokens[r, at:at + len(t)], segment[r, at:at + len(t)] = t, g + 1
      at += len(t)
  fwd = jax.jit(lambda p, t, s: model.forward(config, p, t, segment_BxL=s))
  hid = jax.jit(lambda p, t, s: model.final_hidden(config, p, t, segment_BxL=s))
  logits, hidden = np.asarray(fwd(p, tokens, segment)), np.asarray(hid(p, tokens, segment))
  alone_fwd = jax.jit(lambda p, t: model.forward(config, p, t))
  alone_hid = jax.jit(lambda p, t: model.final_hidden(config, p, t))
  for r, row in enumerate(rows):
    for g, t in enumerate(row):
      slots = segment[r] == g + 1
      np.testing.assert_allclose(logits[r, slots], np.asarray(alone_fwd(p, t[None]))[0], atol=1e-5)
      np.testing.assert_allclose(hidden[r, slots], np.asarray(alone_hid(p, t[None]))[0], atol=1e-5)
  np.testing.assert_array_equal(
      model.positions_from_segments(segment)[0], [0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 0, 0])
  # explicit positions are the default ones; one segment per row is the padded pass
  explicit = fwd(p, tokens, segment)
  np.testing.assert_allclose(
      jax.jit(lambda p, t, s, q: model.forward(config, p, t, segment_BxL=s, positions_BxL=q))(
          p, tokens, segment, model.positions_from_segments(segment)), explicit, atol=1e-6)
  mask = segment > 0
  np.testing.assert_allclose(
      fwd(p, tokens, mask.astype(np.int32))[mask],
      jax.jit(lambda p, t, m: model.forward(config, p, t, m))(p, tokens, mask)[mask], atol=1e-5)
  with pytest.raises(ValueError, match="not both"):
    model.forward(config, p, tokens, mask, segment_BxL=segment)
  with pytest.raises(ValueError, match="only taken with segment_BxL"):
    model.forward(config, p, tokens, positions_BxL=segment)


def test_bf16_compute_close_to_fp32(params, forward_fn):
  tokens, mask = _tokens(1, (2, 8)), np.ones((2, 8), bool)
  ref = np.asarray(forward_fn(params, tokens, mask))
  bf16 = dataclasses.replace(CONFIG, dtype="bfloat16")
  ours = jax.jit(lambda p, t, m: model.forward(bf16, p, t, m))(params, tokens, mask)
  assert ours.dtype == jnp.float32  # logits stay fp32 for the loss
  assert np.abs(np.asarray(ours) - ref).max() < 0.05 * np.abs(ref).max() + 1e-2


def test_kv_cache_matches_full_forward(params, forward_fn):
  """Prefill 5 tokens, then decode 3 one at a time; logits equal the full pass."""
  tokens = _tokens(2, (2, 8))
  full = np.asarray(forward_fn(params, tokens, np.ones((2, 8), bool)))
  step = jax.jit(
      lambda p, t, pos, valid, c, i: model.forward_cached(CONFIG, p, t, pos, valid, c, i),
      static_argnums=5)
  cache = model.init_cache(CONFIG, 2, 8)
  positions = np.broadcast_to(np.arange(8), (2, 8))
  logits, cache = step(params, tokens[:, :5], positions[:, :5], positions < 5, cache, 0)
  np.testing.assert_allclose(logits, full[:, :5], atol=1e-5)
  for i in range(5, 8):
    logits, cache = step(params, tokens[:, i:i + 1], positions[:, i:i + 1], positions <= i, cache,
                         i)
    np.testing.assert_allclose(logits[:, 0], full[:, i], atol=1e-5)


def test_remat_keeps_loss_and_lora_grads(params):
  """Training path: loss and LoRA gradients with and without rematerialisation."""
  lora_config = lora.LoraConfig(rank=2, alpha=4.0)
  adapters = jax.tree.map(lambda x: x + 0.1,
                          lora.init(lora_config, params["params"], jax.random.key(3)))
  tokens = _tokens(3, (2, 6))

  def loss(config, adapters):
    logits = model.forward(config, {**params, "lora": adapters}, tokens)
    return jnp.mean(
        jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, tokens[..., None], -1)[..., 0])

  results = [
      jax.jit(jax.value_and_grad(lambda a, c=c: loss(c, a)))(adapters)
      for c in (dataclasses.replace(CONFIG, lora=lora_config),
                dataclasses.replace(CONFIG, lora=lora_config, remat=True))
  ]
  (l0, g0), (l1, g1) = results
  # Gradients reach every adapter (and only adapters: the base is not an argument).
  assert jax.tree.structure(g0) == jax.tree.structure(adapters)
  assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(g0))
  np.testing.assert_allclose(l0, l1, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), g0, g1)


def test_lora_dense_flattened_tokens_match_reference():
  """LoraDense flattens leading axes around its matmuls: same output as the
  unflattened `x @ W + bias + (x @ a @ b) * scale`, for any number of them."""
  config = dataclasses.replace(CONFIG, lora=lora.LoraConfig(rank=2, alpha=4.0))
  layer = model.LoraDense(features=7, use_bias=True, config=config)
  x_2x3x5xD = jax.random.normal(jax.random.key(4), (2, 3, 5, 6))
  variables = layer.init(jax.random.key(5), x_2x3x5xD)
  keys = jax.random.split(jax.random.key(6), 3)
  w, bias = variables["params"]["kernel"], jax.random.normal(keys[0], (7,))
  a, b = jax.random.normal(keys[1], (6, 2)), jax.random.normal(keys[2], (2, 7))
  variables = {"params": {"kernel": w, "bias": bias}, "lora": {"a": a, "b": b}}
  want = (
      jnp.einsum("...d,df->...f", x_2x3x5xD, w) + bias +
      jnp.einsum("...d,dr,rf->...f", x_2x3x5xD, a, b) * config.lora.scale)
  for x in (x_2x3x5xD, x_2x3x5xD[0], x_2x3x5xD[0, 0]):
    got = layer.apply(variables, x)
    assert got.shape == x.shape[:-1] + (7,)
    np.testing.assert_allclose(got, want[(0,) * (4 - x.ndim)], rtol=1e-5, atol=1e-5)


def _dot_generals(jaxpr):
  """Every dot_general equation of a jaxpr, nested ones (scan, jit, remat) included."""
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      yield eqn
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          yield from _dot_generals(inner)


def test_lora_gradients_contract_one_axis(params):
  """In the LoRA gradient pass of a batched forward every dense-layer dot is
  2-D with one contracting axis (rows and tokens flattened), which spares
  XLA:CPU a transposed copy of every kernel's output cotangent."""
  config = dataclasses.replace(CONFIG, lora=lora.LoraConfig(rank=2, alpha=4.0))
  adapters = lora.init(config.lora, params["params"], jax.random.key(3))
  tokens = _tokens(5, (3, 6))

  def loss(adapters):
    return jnp.sum(model.forward(config, {**params, "lora": adapters}, tokens)[..., 0])

  jaxpr = jax.make_jaxpr(jax.grad(loss))(adapters).jaxpr
  # The dense layers' dots (and their gradients) are those without batch
  # dimensions; attention's score and value einsums batch over rows and heads.
  dense = [eqn for eqn in _dot_generals(jaxpr) if not eqn.params["dimension_numbers"][1][0]]
  weight_grads = [eqn for eqn in dense if eqn.params["dimension_numbers"][0] == ((0,), (0,))]
  assert len(weight_grads) == 2 * 7  # a and b of the 7 adapted kernels (one scanned layer)
  for eqn in dense:
    (contract, _), _ = eqn.params["dimension_numbers"]
    assert len(contract) == 1 and all(v.aval.ndim == 2 for v in eqn.invars), eqn


def test_param_shapes_match_init(params):
  assert {k: v.shape for k, v in model.param_shapes(CONFIG).items()
         } == {k: v.shape for k, v in paths.flatten(params["params"]).items()}
  assert "lm_head/kernel" in paths.flatten(params["params"])
  tied = model.param_shapes(dataclasses.replace(CONFIG, tie_embeddings=True, qkv_bias=True))
  assert "lm_head/kernel" not in tied and tied["layers/attn/k_proj/bias"].shape == (2, 16)


@pytest.mark.parametrize("change, message", [
    (dict(num_kv_heads=3), "multiple of num_kv_heads"),
    (dict(head_dim=7), "must be even"),
    (dict(dtype="float16"), "dtype='float16'"),
])
def test_config_validation(change, message):
  with pytest.raises(ValueError, match=message):
    dataclasses.replace(CONFIG, **change)


def test_rope_scaling_validation():
  with pytest.raises(ValueError, match="rope_type='yarn'"):
    model.RopeScaling(factor=2.0, rope_type="yarn")
  linear = dataclasses.replace(CONFIG, rope_scaling=model.RopeScaling(2.0, rope_type="linear"))
  np.testing.assert_allclose(
      model.rope_frequencies(linear),
      model.rope_frequencies(CONFIG) / 2.0, rtol=1e-6)
