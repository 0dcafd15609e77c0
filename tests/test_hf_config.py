"""config.json <-> ModelConfig mapping."""

import dataclasses
import json

import pytest

from lead_jax.model import hf_config
from lead_jax.model.decoder import ModelConfig, RopeScaling

BASE = ModelConfig(vocab_size=50, hidden_size=32, intermediate_size=48, num_layers=3, num_heads=4,
                   num_kv_heads=2, head_dim=16, rope_theta=5e5, rms_norm_eps=1e-5,
                   max_position_embeddings=2048, bos_token_id=1, eos_token_ids=(2, 7))
VARIANTS = {
    "llama_llama3":
        dataclasses.replace(
            BASE, rope_scaling=RopeScaling(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                           original_max_position_embeddings=1024)),
    "llama_linear_tied":
        dataclasses.replace(BASE, rope_scaling=RopeScaling(factor=2.0, rope_type="linear"),
                            tie_embeddings=True),
    "mistral_window":
        dataclasses.replace(BASE, architecture="MistralForCausalLM", sliding_window=64,
                            eos_token_ids=(2,)),
    "qwen2_window":
        dataclasses.replace(BASE, architecture="Qwen2ForCausalLM", qkv_bias=True, sliding_window=64,
                            eos_token_ids=()),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_round_trip(name):
  config = VARIANTS[name]
  hf = json.loads(json.dumps(hf_config.config_to_hf(config)))
  assert hf_config.config_from_hf(hf) == config


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_transformers_reads_what_we_write(name):
  transformers = pytest.importorskip("transformers")
  config = VARIANTS[name]
  hf = hf_config.config_to_hf(config)
  theirs = transformers.AutoConfig.for_model(hf.pop("model_type"), **hf)
  assert theirs.rope_parameters["rope_theta"] == config.rope_theta
  assert theirs.head_dim == config.head_dim
  if config.rope_scaling is not None:
    assert theirs.rope_parameters["rope_type"] == config.rope_scaling.rope_type
  if config.architecture == "Qwen2ForCausalLM":
    assert set(theirs.layer_types) == {"sliding_attention"}


def test_transformers_5_layout_and_defaults():
  hf = {
      "architectures": ["LlamaForCausalLM"], "vocab_size": 10, "hidden_size": 16,
      "intermediate_size": 24, "num_hidden_layers": 1, "num_attention_heads": 2,
      "rope_parameters": {
          "rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 8192
      }
  }
  config = hf_config.config_from_hf(hf)
  assert (config.num_kv_heads, config.head_dim, config.rope_theta) == (2, 8, 5e5)
  assert config.rope_scaling.original_max_position_embeddings == 8192
  assert not config.tie_embeddings and config.eos_token_ids == ()


@pytest.mark.parametrize("change, message", [
    ({"architectures": ["FalconForCausalLM"]}, "'FalconForCausalLM' is not supported"),
    ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
    ({"attention_bias": True}, "attention_bias=true"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope type 'yarn'"),
    ({"vocab_size": None}, None),
])
def test_rejections_name_the_field(change, message):
  hf = hf_config.config_to_hf(BASE)
  hf.update(change)
  if hf["vocab_size"] is None:
    del hf["vocab_size"]
    message = "missing field 'vocab_size'"
  with pytest.raises(hf_config.CheckpointError, match=message):
    hf_config.config_from_hf(hf, source="some/config.json")


def test_qwen2_mixed_sliding_layers_rejected():
  hf = hf_config.config_to_hf(VARIANTS["qwen2_window"])
  hf["layer_types"] = ["full_attention", "sliding_attention", "sliding_attention"]
  with pytest.raises(hf_config.CheckpointError, match="some layers only"):
    hf_config.config_from_hf(hf)
  hf["use_sliding_window"] = False
  assert hf_config.config_from_hf(hf).sliding_window is None


def test_generation_config_eos(tmp_path):
  assert hf_config.generation_eos_ids(str(tmp_path)) == ()
  (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [5, 9]}))
  assert hf_config.generation_eos_ids(str(tmp_path)) == (5, 9)
