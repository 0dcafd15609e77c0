"""Hugging Face `config.json` <-> `ModelConfig` for Llama, Mistral and Qwen2.

Reads both the `transformers` 4.x layout (`rope_theta`, `rope_scaling`) and
the 5.x one (`rope_parameters`); writes the 4.x layout, which both read.
Anything the decoder cannot reproduce (other activations, biases on the
output or MLP projections, partial rotary, other RoPE types, per-layer mixes
of sliding and full attention) is rejected with an error naming the field.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

from lead_jax.model.decoder import ModelConfig, RopeScaling

ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
}
_BY_MODEL_TYPE = {v: k for k, v in ARCHITECTURES.items()}
_UNSUPPORTED_FLAGS = ("attention_bias", "mlp_bias")  # Llama: o_proj and MLP biases


class CheckpointError(ValueError):
  """A checkpoint this project cannot read as the declared architecture."""


def _architecture(hf: Mapping[str, Any], source: str) -> str:
  archs = hf.get("architectures") or [
      _BY_MODEL_TYPE.get(hf.get("model_type"), hf.get("model_type"))
  ]
  if archs[0] not in ARCHITECTURES:
    raise CheckpointError(f"{source}: architecture {archs[0]!r} is not supported; supported: "
                          f"{sorted(ARCHITECTURES)}")
  return archs[0]


def _rope(hf: Mapping[str, Any], source: str) -> tuple[float, RopeScaling | None]:
  params = dict(hf.get("rope_parameters") or {})
  params.update(hf.get("rope_scaling") or {})
  theta = float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))
  if float(params.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))) != 1.0:
    raise CheckpointError(f"{source}: partial_rotary_factor is not supported")
  kind = params.get("rope_type", params.get("type", "default"))
  if kind == "default":
    return theta, None
  if kind == "linear":
    return theta, RopeScaling(factor=float(params["factor"]), rope_type="linear")
  if kind == "llama3":
    return theta, RopeScaling(
        factor=float(params["factor"]), low_freq_factor=float(params["low_freq_factor"]),
        high_freq_factor=float(params["high_freq_factor"]),
        original_max_position_embeddings=int(params["original_max_position_embeddings"]))
  raise CheckpointError(f"{source}: rope type {kind!r} is not supported; supported: "
                        "default, linear, llama3")


def _sliding_window(hf: Mapping[str, Any], arch: str, source: str) -> int | None:
  if arch == "MistralForCausalLM":
    return hf.get("sliding_window")
  if arch != "Qwen2ForCausalLM" or not hf.get("use_sliding_window"):
    return None
  n = hf["num_hidden_layers"]
  kinds = hf.get("layer_types") or [
      "sliding_attention" if i >= hf.get("max_window_layers", 28) else "full_attention"
      for i in range(n)
  ]
  if all(k == "full_attention" for k in kinds):
    return None
  if all(k == "sliding_attention" for k in kinds):
    return int(hf["sliding_window"])
  raise CheckpointError(f"{source}: sliding-window attention on some layers only "
                        f"(layer_types={kinds}) is not supported")


def _ids(value) -> tuple[int, ...]:
  if value is None:
    return ()
  return tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else (int(value),)


def config_from_hf(hf: Mapping[str, Any], *, source: str = "config.json") -> ModelConfig:
  """`ModelConfig` of a Hugging Face config dict; `source` names it in errors."""
  arch = _architecture(hf, source)
  if hf.get("hidden_act", "silu") != "silu":
    raise CheckpointError(f"{source}: hidden_act={hf['hidden_act']!r}; only 'silu' is supported")
  for flag in _UNSUPPORTED_FLAGS:
    if hf.get(flag):
      raise CheckpointError(f"{source}: {flag}=true is not supported")
  try:
    heads = int(hf["num_attention_heads"])
    theta, scaling = _rope(hf, source)
    return ModelConfig(
        vocab_size=int(hf["vocab_size"]), hidden_size=int(hf["hidden_size"]), intermediate_size=int(
            hf["intermediate_size"]), num_layers=int(hf["num_hidden_layers"]), num_heads=heads,
        num_kv_heads=int(hf.get("num_key_value_heads") or
                         heads), head_dim=int(hf.get("head_dim") or
                                              hf["hidden_size"] // heads), rope_theta=theta,
        rope_scaling=scaling, rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)), tie_embeddings=bool(
            hf.get("tie_word_embeddings", False)), qkv_bias=arch == "Qwen2ForCausalLM",
        sliding_window=_sliding_window(hf, arch, source), max_position_embeddings=int(
            hf.get("max_position_embeddings", 4096)), architecture=arch,
        bos_token_id=hf.get("bos_token_id"), eos_token_ids=_ids(hf.get("eos_token_id")))
  except KeyError as e:
    raise CheckpointError(f"{source}: missing field {e.args[0]!r}") from None


def generation_eos_ids(path: str) -> tuple[int, ...]:
  """EOS ids of `generation_config.json` in checkpoint `path` (may be several)."""
  file = os.path.join(path, "generation_config.json")
  if not os.path.isfile(file):
    return ()
  with open(file) as f:
    return _ids(json.load(f).get("eos_token_id"))


def _rope_to_hf(config: ModelConfig) -> dict:
  s = config.rope_scaling
  if s is None:
    return {"rope_theta": config.rope_theta}
  scaling = {"rope_type": s.rope_type, "factor": s.factor}
  if s.rope_type == "llama3":
    scaling.update(low_freq_factor=s.low_freq_factor, high_freq_factor=s.high_freq_factor,
                   original_max_position_embeddings=s.original_max_position_embeddings)
  return {"rope_theta": config.rope_theta, "rope_scaling": scaling}


def _attention_to_hf(config: ModelConfig) -> dict:
  arch, window = config.architecture, config.sliding_window
  if arch == "LlamaForCausalLM":
    if config.qkv_bias or window is not None:
      raise ValueError("LlamaForCausalLM cannot carry q/k/v biases or a sliding "
                       "window; use Qwen2ForCausalLM or MistralForCausalLM")
    return {"attention_bias": False, "mlp_bias": False}
  if arch == "MistralForCausalLM":
    if config.qkv_bias:
      raise ValueError("MistralForCausalLM has no q/k/v biases; use Qwen2ForCausalLM")
    return {"sliding_window": window}
  if not config.qkv_bias:
    raise ValueError("Qwen2ForCausalLM always has q/k/v biases; set qkv_bias=True")
  kind = "full_attention" if window is None else "sliding_attention"
  return {
      "use_sliding_window": window is not None, "sliding_window": window, "max_window_layers": 0,
      "layer_types": [kind] * config.num_layers
  }


def config_to_hf(config: ModelConfig) -> dict:
  """config.json contents that `transformers` 4.x and 5.x load."""
  if config.architecture not in ARCHITECTURES:
    raise ValueError(f"architecture {config.architecture!r}; use one of {sorted(ARCHITECTURES)}")
  eos = list(config.eos_token_ids)
  return {
      "architectures": [config.architecture],
      "model_type": ARCHITECTURES[config.architecture],
      "vocab_size": config.vocab_size,
      "hidden_size": config.hidden_size,
      "intermediate_size": config.intermediate_size,
      "num_hidden_layers": config.num_layers,
      "num_attention_heads": config.num_heads,
      "num_key_value_heads": config.num_kv_heads,
      "head_dim": config.head_dim,
      "hidden_act": "silu",
      "rms_norm_eps": config.rms_norm_eps,
      "max_position_embeddings": config.max_position_embeddings,
      "tie_word_embeddings": config.tie_embeddings,
      "bos_token_id": config.bos_token_id,
      "eos_token_id": eos[0] if len(eos) == 1 else (eos or None),
      "dtype": config.param_dtype,
      **_rope_to_hf(config),
      **_attention_to_hf(config),
  }
