"""LoRA adapters: init, merge, dropout, targets, parameter count."""

import dataclasses

import jax
import numpy as np
import pytest

from lead_jax import paths
from lead_jax.model import lora
from lead_jax.model import decoder as model

LORA = lora.LoraConfig(rank=4, alpha=8.0, dropout=0.5)
CONFIG = model.ModelConfig(vocab_size=53, hidden_size=32, intermediate_size=40, num_layers=2,
                           num_heads=4, num_kv_heads=2, head_dim=8, qkv_bias=True, lora=LORA)
TOKENS_BxL = np.random.RandomState(0).randint(0, 53, (2, 7)).astype(np.int32)


@pytest.fixture(scope="module")
def base():
  return model.init(CONFIG, jax.random.key(0))


@pytest.fixture(scope="module")
def trained(base):
  """Adapters with non-zero B, as after training."""
  adapters = lora.init(LORA, base["params"], jax.random.key(1))
  flat = {k: v + (0.2 if k.endswith("/b") else 0.0) for k, v in paths.flatten(adapters).items()}
  return paths.unflatten(flat)


@pytest.fixture(scope="module")
def forward_fn():
  return jax.jit(lambda p, t, key=None: model.forward(CONFIG, p, t, dropout_key=key))


def test_shapes_follow_the_kernels(base):
  adapters = lora.init(LORA, base["params"], jax.random.key(1))
  flat = paths.flatten(adapters)
  assert len(flat) == 2 * 7  # a and b on q, k, v, o, gate, up, down
  assert flat["layers/attn/k_proj/a"].shape == (2, 32, 4)
  assert flat["layers/attn/k_proj/b"].shape == (2, 4, 16)
  assert not any("bias" in k or "embed" in k for k in flat)
  assert all(np.all(np.asarray(v) == 0) for k, v in flat.items() if k.endswith("/b"))
  assert lora.count(adapters) == 2 * sum(32 * 4 + 4 * n for n in (32, 16, 16, 32)) + 2 * sum(
      i * 4 + 4 * o for i, o in ((32, 40), (32, 40), (40, 32)))


def test_zero_init_equals_base(base, forward_fn):
  adapters = lora.init(LORA, base["params"], jax.random.key(1))
  np.testing.assert_array_equal(
      forward_fn({**base, "lora": adapters}, TOKENS_BxL), forward_fn(base, TOKENS_BxL))


def test_merged_equals_unmerged(base, trained, forward_fn):
  unmerged = np.asarray(forward_fn({**base, "lora": trained}, TOKENS_BxL))
  merged = np.asarray(forward_fn({"params": lora.merge(LORA, base["params"], trained)}, TOKENS_BxL))
  assert np.abs(unmerged - np.asarray(forward_fn(base, TOKENS_BxL))).max() > 1e-2
  np.testing.assert_allclose(merged, unmerged, atol=2e-5)


def test_dropout_only_with_a_key(base, trained, forward_fn):
  params = {**base, "lora": trained}
  no_key = np.asarray(forward_fn(params, TOKENS_BxL))
  np.testing.assert_array_equal(no_key, forward_fn(params, TOKENS_BxL))
  with_key = [np.asarray(forward_fn(params, TOKENS_BxL, jax.random.key(i))) for i in (0, 1)]
  assert np.abs(with_key[0] - no_key).max() > 1e-3
  assert np.abs(with_key[0] - with_key[1]).max() > 1e-3


def test_targets_and_errors(base):
  attn_only = lora.LoraConfig(rank=2, targets=(r"attn/(q|v)_proj/kernel$",))
  assert sorted(paths.flatten(lora.init(attn_only, base["params"], jax.random.key(0)))) == [
      "layers/attn/q_proj/a", "layers/attn/q_proj/b", "layers/attn/v_proj/a", "layers/attn/v_proj/b"
  ]
  typo = lora.LoraConfig(rank=2, targets=(r"q_proj/kernel$", r"qproj/kernel$"))
  with pytest.raises(ValueError, match=r"lora.targets: pattern\(s\) \['qproj/kernel\$'\]"):
    lora.init(typo, base["params"], jax.random.key(0))
  adapters = lora.init(LORA, base["params"], jax.random.key(0))
  with pytest.raises(ValueError, match="ModelConfig.lora is None"):
    model.forward(dataclasses.replace(CONFIG, lora=None), {**base, "lora": adapters}, TOKENS_BxL)


def test_count_equals_peft_llama2_7b():
  """PEFT reports 134,217,728 trainable parameters for r=128 on q,k,v,o."""
  llama2_7b = model.ModelConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                                num_layers=32, num_heads=32, num_kv_heads=32, head_dim=128)
  lora_config = lora.LoraConfig(rank=128, alpha=256.0, targets=(r"attn/(q|k|v|o)_proj/kernel$",))
  base = jax.eval_shape(lambda k: model.init(llama2_7b, k), jax.random.key(0))
  adapters = jax.eval_shape(lambda b, k: lora.init(lora_config, b, k), base["params"],
                            jax.random.key(0))
  assert lora.count(adapters) == 134_217_728


def test_a_target_outside_the_layers_is_refused():
  """lm_head is a plain Dense: an adapter on it would never be applied."""
  config = model.ModelConfig(vocab_size=16, hidden_size=8, intermediate_size=16, num_layers=1,
                             num_heads=2, num_kv_heads=2, head_dim=4, tie_embeddings=False)
  base = model.init(config, jax.random.key(0))["params"]
  with pytest.raises(ValueError, match=r"matches \['lm_head/kernel'\]: the decoder adapts only"):
    lora.target_paths(lora.LoraConfig(targets=(r".*kernel$",)), base)
  assert all(p.startswith("layers/") for p in lora.target_paths(lora.LoraConfig(), base))
