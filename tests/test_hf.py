"""Parity with transformers' PyTorch models, export round trips, load errors."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

from lead_jax.model import hf
from lead_jax.model import lora
from lead_jax.model import decoder as model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

_TINY = dict(vocab_size=101, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
             num_attention_heads=4, max_position_embeddings=1024)
CASES = {
    "llama_gqa_tied": (transformers.LlamaConfig,
                       dict(num_key_value_heads=2, rope_theta=1e5, tie_word_embeddings=True)),
    # original_max_position_embeddings=256 puts the four head_dim=8 frequencies
    # in all three bands of the Llama-3 rule (kept, smoothed, divided).
    "llama3_rope":
        (transformers.LlamaConfig,
         dict(
             num_key_value_heads=2, rope_theta=1e5,
             rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                               high_freq_factor=4.0, original_max_position_embeddings=256))),
    "mistral_window": (transformers.MistralConfig, dict(num_key_value_heads=2, sliding_window=4)),
    "qwen2_bias": (transformers.Qwen2Config, dict(num_key_value_heads=1)),
}
TOKENS_BxL = np.random.RandomState(0).randint(0, 101, (3, 10)).astype(np.int32)
MASK_BxL = np.arange(10)[None, :] < np.array([[10], [7], [3]])  # right padded


def _randomize(torch_model, seed):
  """Random weights at a scale that gives O(1) logits (biases and norms too)."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for p in torch_model.parameters():
      p.copy_(
          torch.randn(p.shape, generator=gen) * (0.5 if p.ndim == 1 else 0.2) +
          (1.0 if p.ndim == 1 and p.shape[0] == _TINY["hidden_size"] else 0.0))


def _torch_logits(torch_model, tokens_BxL, mask_BxL=None):
  mask = None if mask_BxL is None else torch.tensor(np.asarray(mask_BxL), dtype=torch.long)
  with torch.no_grad():
    return torch_model(torch.tensor(np.asarray(tokens_BxL), dtype=torch.long),
                       attention_mask=mask).logits.numpy()


@pytest.fixture(scope="module", params=sorted(CASES))
def saved_case(request, tmp_path_factory):
  cls, extra = CASES[request.param]
  torch_model = transformers.AutoModelForCausalLM.from_config(
      cls(**_TINY, **extra), attn_implementation="eager").eval()
  _randomize(torch_model, seed=len(request.param))
  path = str(tmp_path_factory.mktemp(request.param))
  torch_model.save_pretrained(path)
  return request.param, torch_model, path


def test_parity_with_transformers(saved_case):
  name, torch_model, path = saved_case
  config, params = hf.load_checkpoint(path)
  assert config.architecture == type(torch_model).__name__
  ours = np.asarray(
      jax.jit(lambda p, t, m: model.forward(config, p, t, m))(params, TOKENS_BxL, MASK_BxL))
  ref = _torch_logits(torch_model, TOKENS_BxL, MASK_BxL)
  assert np.abs(ref).max() > 1.0, "logits too small for a meaningful comparison"
  np.testing.assert_allclose(ours[MASK_BxL], ref[MASK_BxL], atol=1e-4, rtol=0)


def test_config_mapping_of_cases(saved_case):
  name, _, path = saved_case
  config, _ = hf.load_checkpoint(path)
  assert config.num_kv_heads == CASES[name][1]["num_key_value_heads"]
  assert config.tie_embeddings == (name == "llama_gqa_tied")
  assert config.qkv_bias == (name == "qwen2_bias")
  assert config.sliding_window == (4 if name == "mistral_window" else None)
  assert (config.rope_scaling is not None) == (name == "llama3_rope")


@pytest.fixture(scope="module")
def qwen_config():
  return model.ModelConfig(vocab_size=101, hidden_size=32, intermediate_size=40, num_layers=2,
                           num_heads=4, num_kv_heads=2, head_dim=8, rope_theta=1e5, qkv_bias=True,
                           architecture="Qwen2ForCausalLM", eos_token_ids=(3, 4), bos_token_id=1)


def _random_params(config, seed):
  """Random weights with O(1) logits, as NumPy (no per-leaf compiles)."""
  rng = np.random.RandomState(seed)
  flat = {
      path: (rng.normal(0, 0.2, s.shape) + path.endswith("scale")).astype(s.dtype)
      for path, s in model.param_shapes(config).items()
  }
  return {"params": hf.paths.unflatten(flat)}


def test_export_round_trip_with_trained_lora(qwen_config, tmp_path):
  config = qwen_config.__class__(
      **{**qwen_config.__dict__, "lora": lora.LoraConfig(rank=4, alpha=8.0)})
  params = _random_params(config, 0)
  zero = lora.init(config.lora, params["params"], jax.random.key(1))
  trained = jax.tree.map(lambda x: x + 0.05, zero)  # non-zero B, as after training
  forward = jax.jit(lambda p, t: model.forward(config, p, t))
  ours = np.asarray(forward({**params, "lora": trained}, TOKENS_BxL[:, :6]))  # unmerged
  base_only = np.asarray(forward({**params, "lora": zero}, TOKENS_BxL[:, :6]))
  assert np.abs(ours - base_only).max() > 1e-2, "the adapters should change the output"
  hf.save_checkpoint(str(tmp_path), config, {**params, "lora": trained})
  torch_model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()
  np.testing.assert_allclose(ours, _torch_logits(torch_model, TOKENS_BxL[:, :6]), atol=1e-4, rtol=0)
  # Loading our export back gives the merged weights.
  loaded_config, loaded = hf.load_checkpoint(str(tmp_path))
  assert loaded_config.eos_token_ids == (3, 4) and loaded_config.qkv_bias
  merged = hf.paths.flatten(lora.merge(config.lora, params["params"], trained))
  for path, x in hf.paths.flatten(loaded["params"]).items():
    np.testing.assert_allclose(x, merged[path], atol=1e-6, err_msg=path)


def test_sharded_bf16_export(qwen_config, tmp_path):
  config = qwen_config.__class__(
      **{**qwen_config.__dict__, "param_dtype": "bfloat16", "dtype": "bfloat16"})
  params = _random_params(config, 2)
  hf.save_checkpoint(str(tmp_path), config, params, max_shard_bytes=8_000)
  index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
  shards = sorted(set(index["weight_map"].values()))
  assert len(shards) > 1 and sorted(
      os.listdir(tmp_path)) == sorted(shards + ["config.json", "model.safetensors.index.json"])
  stored = {k: v for s in shards for k, v in safetensors.numpy.load_file(str(tmp_path / s)).items()}
  assert stored.keys() == index["weight_map"].keys()
  assert {str(x.dtype) for x in stored.values()} == {"bfloat16"}
  loaded_config, loaded = hf.load_checkpoint(str(tmp_path))
  assert loaded_config.param_dtype == "bfloat16" and loaded_config.dtype == "bfloat16"
  for path, x in hf.paths.flatten(params).items():  # norm scales (fp32) round to bf16
    np.testing.assert_array_equal(
        np.asarray(hf.paths.flatten(loaded)[path], np.float32),
        np.asarray(x.astype(jnp.bfloat16), np.float32), err_msg=path)
  torch_model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path))
  assert next(torch_model.parameters()).dtype == torch.bfloat16


@pytest.fixture()
def tiny_checkpoint(qwen_config, tmp_path):
  hf.save_checkpoint(str(tmp_path), qwen_config, _random_params(qwen_config, 3))
  return tmp_path


def _edit_json(file, **changes):
  data = json.loads(file.read_text())
  data.update(changes)
  file.write_text(json.dumps(data))


def test_unknown_architecture_is_named(tiny_checkpoint):
  _edit_json(tiny_checkpoint / "config.json", architectures=["GPT2LMHeadModel"])
  with pytest.raises(hf.CheckpointError, match="GPT2LMHeadModel.*not supported"):
    hf.load_checkpoint(str(tiny_checkpoint))


def test_missing_and_unexpected_tensors_are_named(tiny_checkpoint):
  file = tiny_checkpoint / "model.safetensors"
  tensors = safetensors.numpy.load_file(str(file))
  del tensors["model.layers.1.mlp.up_proj.weight"]
  safetensors.numpy.save_file(tensors, str(file))
  with pytest.raises(hf.CheckpointError, match=r"missing tensor 'model\.layers\.1\.mlp\.up_proj"):
    hf.load_checkpoint(str(tiny_checkpoint))
  tensors["model.layers.1.mlp.up_proj.weight"] = np.zeros((40, 32), np.float32)
  tensors["model.layers.0.mlp.extra.weight"] = np.zeros((2,), np.float32)
  safetensors.numpy.save_file(tensors, str(file))
  with pytest.raises(
      hf.CheckpointError, match=r"model\.safetensors: unexpected tensor "
      r"'model\.layers\.0\.mlp\.extra\.weight'"):
    hf.load_checkpoint(str(tiny_checkpoint))


def test_shape_mismatch_is_named(tiny_checkpoint):
  _edit_json(tiny_checkpoint / "config.json", intermediate_size=44)
  with pytest.raises(
      hf.CheckpointError, match=r"model\.safetensors: tensor 'model\.layers\.0"
      r"\.mlp\.\w+_proj\.weight' has shape .*, expected .*44"):
    hf.load_checkpoint(str(tiny_checkpoint))


def test_missing_weights_file(tmp_path):
  (tmp_path / "config.json").write_text(
      json.dumps(
          hf.config_to_hf(
              model.ModelConfig(vocab_size=8, hidden_size=8, intermediate_size=8, num_layers=1,
                                num_heads=2, num_kv_heads=2, head_dim=4))))
  with pytest.raises(FileNotFoundError, match="model.safetensors"):
    hf.load_checkpoint(str(tmp_path))
