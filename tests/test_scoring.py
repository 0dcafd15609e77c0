"""Packed scoring passes equal unpacked per-example passes; accounting; one trace."""

import jax
import numpy as np
import pytest

from configs import base, base_data
from lead_jax import data
from lead_jax.model import lora
from lead_jax.model import decoder as model
from lead_jax.train import optim
from lead_jax.train import scoring
from lead_jax.train import sharding
from lead_jax.model import tokenizer
from lead_jax.train import step as train
from lead_jax.data import synthetic


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("scoring"))
  c = base_data.get()
  c.train_path = synthetic.write_lake(workdir + "/lake", size=60, test_per_task=1,
                                      dev_per_task=1)["train"]
  c.max_length, c.buckets = 96, (32, 64)
  return data.load_pool(c, tokenizer.load("byte_level"), workdir)


@pytest.fixture(scope="module")
def tiny(pool):
  """(ModelConfig with LoRA, params with non-zero adapters): 2 layers, d=32."""
  lora_cfg = lora.LoraConfig(rank=4, alpha=8.0)
  config = model.ModelConfig(vocab_size=261, hidden_size=32, intermediate_size=64, num_layers=2,
                             num_heads=4, num_kv_heads=2, head_dim=8, lora=lora_cfg)
  base = model.init(config, jax.random.key(0))["params"]
  shapes = jax.eval_shape(lambda b: lora.init(lora_cfg, b, jax.random.key(1)), base)
  adapters = jax.tree.map(lambda x: 0.3 * jax.random.normal(jax.random.key(2), x.shape), shapes)
  return config, {"params": base, "lora": adapters}


def _unpacked(config, params, pool, ids, view):
  """Reference: the training loss of every sample, 8 padded rows per call."""
  score = jax.jit(lambda p, b: train.score_step(config, 8, p, b))
  out = np.zeros(len(ids), np.float32)
  for start in range(0, len(ids), 8):
    part = ids[start:start + 8]
    got = train.fetch(score(params, data.gather(pool, part, 8, view=view)))
    out[start:start + len(part)] = got["loss_B"][:len(part)]
  return out


def test_packed_losses_equal_the_unpacked_per_example_losses(pool, tiny):
  config, params = tiny
  ids = np.random.default_rng(0).permutation(len(pool))[:45]
  out, counts = scoring.losses(scoring.Scorer(config, 4), params, pool, ids, 8, None, response=True)
  np.testing.assert_allclose(out["loss"], _unpacked(config, params, pool, ids, "full"), atol=1e-5,
                             rtol=1e-5)
  np.testing.assert_allclose(out["response_loss"], _unpacked(config, params, pool, ids, "response"),
                             atol=1e-5, rtol=1e-5)
  assert out["loss"].min() > 0 and out["response_loss"].min() > 0
  # the same samples and real tokens are booked as unpacked, two views each
  assert counts == {
      "forward_samples": 2 * len(ids),
      "forward_tokens": int(pool.length_N[ids].sum() + pool.view_length_N[ids].sum()),
      "backward_samples": 0, "backward_tokens": 0
  }
  base_only, _ = scoring.losses(
      scoring.Scorer(config, 8), {"params": params["params"]}, pool, ids, 8, None)
  np.testing.assert_allclose(base_only["loss"],
                             _unpacked(config, {"params": params["params"]}, pool, ids, "full"),
                             atol=1e-5, rtol=1e-5)


def test_mean_hidden_equals_the_unpacked_mean(pool, tiny):
  config, params = tiny
  ids = np.arange(len(pool))[::-1]
  feats, counts = scoring.mean_hidden(config, params, pool, ids, 8, None)
  hidden = jax.jit(lambda p, t, m: model.final_hidden(config, p, t, m))
  for start in range(0, len(ids), 8):
    b = data.gather(pool, ids[start:start + 8], 8)
    h = np.asarray(hidden(params, b["tokens_BxL"], b["attention_mask_BxL"]))
    w = b["attention_mask_BxL"].astype(np.float32)
    want = np.einsum("bld,bl->bd", h, w) / np.maximum(w.sum(1), 1.0)[:, None]
    np.testing.assert_allclose(feats[start:start + 8], want[:len(ids[start:start + 8])], atol=1e-5)
  assert counts["forward_samples"] == len(ids) and counts["backward_samples"] == 0
  assert counts["forward_tokens"] == int(pool.length_N.sum())


def test_packed_pass_traces_once_and_shards_rows(pool, tiny):
  config, params = tiny
  sc, ids = scoring.Scorer(config, 8), np.arange(len(pool))
  first, _ = scoring.losses(sc, params, pool, ids, 16, None)
  compiled = scoring._packed_losses._cache_size()  # pylint: disable=protected-access
  again, _ = scoring.losses(sc, params, pool, ids[::-1], 16, None)
  assert scoring._packed_losses._cache_size() == compiled  # pylint: disable=protected-access
  np.testing.assert_allclose(again["loss"][::-1], first["loss"], atol=1e-6)
  mesh = sharding.make_mesh(base.get_mesh())  # data = all 8 fake devices
  assert sharding.batch_divisor(mesh) == 8
  sharded, _ = scoring.losses(sc, params, pool, ids, 16, mesh)
  np.testing.assert_allclose(sharded["loss"], first["loss"], atol=1e-5)


def test_scorer_of_a_compiled_score_step(tiny):
  config, _ = tiny
  tx, lr_fn = optim.make(base.get_optim())
  spec = train.StepSpec(config, micro_batch=4, projection=None)
  steps = train.compile(spec, tx, lr_fn)
  assert scoring.scorer(steps.score) == scoring.Scorer(config, 4)
  with pytest.raises(TypeError, match="Scorer"):
    scoring.scorer(steps.project)
