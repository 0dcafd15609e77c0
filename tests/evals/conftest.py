"""Shared fixtures of the evaluation tests: a tiny model with unmerged LoRA adapters."""

import os

import jax
import pytest

from configs import base_data, base_eval
from lead_jax.model import lora
from lead_jax.model import decoder as model
from lead_jax.model import tokenizer as tokenizer_lib
from lead_jax.data import templates

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "evals")


@pytest.fixture(scope="session")
def fixtures_dir():
  return FIXTURES


@pytest.fixture(scope="session")
def tok():
  return tokenizer_lib.byte_level()


@pytest.fixture(scope="session")
def template(tok):
  return templates.resolve(tok, "auto")


@pytest.fixture(scope="session")
def tiny(tok):
  """(ModelConfig with lora, params with non-zero adapters): 2 layers, d=32."""
  lora_cfg = lora.LoraConfig(rank=4, alpha=8.0)
  config = model.ModelConfig(
      vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
      num_kv_heads=2, head_dim=8, lora=lora_cfg)
  base = jax.jit(model.init, static_argnums=0)(config, jax.random.PRNGKey(0))["params"]
  shapes = jax.eval_shape(lambda b: lora.init(lora_cfg, b, jax.random.PRNGKey(1)), base)
  adapters = jax.tree_util.tree_map(
      lambda x: 0.3 * jax.random.normal(jax.random.PRNGKey(2), x.shape), shapes)
  return config, {"params": base, "lora": adapters}


@pytest.fixture
def eval_cfg():
  """The eval sub-config with small, fast settings."""
  c = base_eval.get()
  c.mmlu.batch_size = 4
  c.gsm8k.max_new_tokens = 8
  c.gsm8k.batch_size = 4
  c.tydiqa.max_new_tokens = 8
  c.tydiqa.batch_size = 4
  c.humaneval.num_samples = 2
  c.humaneval.ks = (1, 2)
  c.humaneval.max_new_tokens = 8
  c.humaneval.batch_size = 4
  c.humaneval.workers = 2
  c.humaneval.memory_mb = 256
  c.synthetic.max_new_tokens = 8
  c.synthetic.batch_size = 8
  return c


@pytest.fixture
def data_cfg():
  return base_data.get()
