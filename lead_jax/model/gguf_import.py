"""Import of llama-architecture GGUF files (llama.cpp) as project checkpoints.

Weights are dequantized to float32 with the `gguf` package. llama.cpp's
converter permutes the rows of every Q and K projection (it interleaves the
two rotary halves of each head); `unpermute` undoes that so the weights match
the Hugging Face rotate-half layout this project's decoder uses. The
tokenizer (GPT-2 byte-level BPE) is rebuilt from the GGUF vocabulary, merges,
token types and chat template.

  load(gguf_path) -> (ModelConfig, params, tokenizer)
  convert(gguf_path, out_dir)  writes a Hugging Face directory (config.json,
      model.safetensors, tokenizer files) that `hf.load_checkpoint` and
      `tokenizer.load` read.
"""

from __future__ import annotations

import json
import os

import gguf
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from lead_jax import paths
from lead_jax.model import hf
from lead_jax.model.gguf_tokenizer import GgufError, build_tokenizer, field, file_name
from lead_jax.model.decoder import ModelConfig, RopeScaling, param_shapes

# GGUF tensor (after `blk.{i}.`) -> our path under `layers/`, and the heads
# key of a llama.cpp-permuted projection.
_LAYER_TENSORS = {
    "attn_q.weight": ("attn/q_proj/kernel", "q"),
    "attn_k.weight": ("attn/k_proj/kernel", "k"),
    "attn_v.weight": ("attn/v_proj/kernel", None),
    "attn_output.weight": ("attn/o_proj/kernel", None),
    "ffn_gate.weight": ("mlp/gate_proj/kernel", None),
    "ffn_up.weight": ("mlp/up_proj/kernel", None),
    "ffn_down.weight": ("mlp/down_proj/kernel", None),
    "attn_norm.weight": ("attn_norm/scale", None),
    "ffn_norm.weight": ("mlp_norm/scale", None),
}
_GLOBAL_TENSORS = {
    "token_embd.weight": "embed/embedding",
    "output_norm.weight": "final_norm/scale",
    "output.weight": "lm_head/kernel",
}


def _f32(value) -> float:
  """A float32 metadata value as the decimal it was written from (1e-5, not 9.99e-06)."""
  return float(str(np.float32(value)))


def unpermute(w_OxI: np.ndarray, n_heads: int) -> np.ndarray:
  """Inverse of llama.cpp's Q/K row permutation (`[out, in]` weights).

  Hugging Face rotates the two halves of each head (row j with row
  j + head_dim/2); llama.cpp rotates adjacent pairs, so its converter
  interleaves the halves (rows 2j, 2j + 1). This puts them back.
  """
  rows = w_OxI.shape[0]
  return (w_OxI.reshape(n_heads, rows // n_heads // 2, 2,
                        *w_OxI.shape[1:]).swapaxes(1, 2).reshape(w_OxI.shape))


def read_config(reader: gguf.GGUFReader) -> ModelConfig:
  """`ModelConfig` from GGUF metadata (llama architecture only)."""
  arch = field(reader, "general.architecture")
  if arch != "llama":
    raise GgufError(f"{file_name(reader)}: architecture {arch!r}; only 'llama' GGUF files "
                    "are imported (convert others from their Hugging Face checkpoint)")
  get = lambda key, *default: field(reader, f"llama.{key}", *default)
  heads, hidden = int(get("attention.head_count")), int(get("embedding_length"))
  head_dim = int(get("attention.key_length", hidden // heads))
  if int(get("rope.dimension_count", head_dim)) != head_dim:
    raise GgufError(f"{file_name(reader)}: partial rotary embeddings are not supported")
  if get("attention.sliding_window", None) is not None:
    raise GgufError(f"{file_name(reader)}: sliding-window attention is not supported")
  names = {t.name for t in reader.tensors}
  eos = field(reader, "tokenizer.ggml.eos_token_id", None)
  return ModelConfig(
      vocab_size=int(get("vocab_size", len(field(reader, "tokenizer.ggml.tokens")))),
      hidden_size=hidden, intermediate_size=int(get("feed_forward_length")), num_layers=int(
          get("block_count")), num_heads=heads, num_kv_heads=int(
              get("attention.head_count_kv", heads)), head_dim=head_dim, rope_theta=_f32(
                  get("rope.freq_base", 10000.0)), rope_scaling=_rope_scaling(reader, names),
      rms_norm_eps=_f32(get("attention.layer_norm_rms_epsilon")), tie_embeddings="output.weight"
      not in names, max_position_embeddings=int(get("context_length", 4096)), bos_token_id=field(
          reader, "tokenizer.ggml.bos_token_id",
          None), eos_token_ids=() if eos is None else (int(eos),))


def _rope_scaling(reader: gguf.GGUFReader, names: set[str]) -> RopeScaling | None:
  if "rope_freqs.weight" in names:
    raise GgufError(f"{file_name(reader)}: per-frequency RoPE factors (rope_freqs, Llama 3.1 "
                    "scaling) are not imported; use the Hugging Face checkpoint")
  kind = field(reader, "llama.rope.scaling.type", "none")
  if kind == "none":
    return None
  if kind == "linear":
    return RopeScaling(factor=_f32(field(reader, "llama.rope.scaling.factor")), rope_type="linear")
  raise GgufError(f"{file_name(reader)}: rope scaling {kind!r} is not supported")


def _dequantize(tensor) -> np.ndarray:
  """float32 array in NumPy (row-major) order: `[out, in]` for matrices."""
  shape = tuple(int(n) for n in reversed(tensor.shape))  # GGUF lists ne[0] first
  data = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
  return np.asarray(data, np.float32).reshape(shape)


def _destination(name: str, config: ModelConfig) -> tuple[str, int | None, int | None]:
  """(our path, layer or None, heads to unpermute or None) of a GGUF tensor."""
  if name in _GLOBAL_TENSORS:
    return _GLOBAL_TENSORS[name], None, None
  block, _, rest = name.partition(".")
  if block == "blk" and "." in rest:
    layer, _, suffix = rest.partition(".")
    if layer.isdigit() and int(layer) < config.num_layers and suffix in _LAYER_TENSORS:
      path, permuted = _LAYER_TENSORS[suffix]
      heads = {"q": config.num_heads, "k": config.num_kv_heads}.get(permuted)
      return f"layers/{path}", int(layer), heads
  raise GgufError(f"unexpected tensor {name!r}: not part of a llama decoder")


def read_params(reader: gguf.GGUFReader, config: ModelConfig) -> dict:
  """`{"params": ...}` in float32, Q/K rows unpermuted, kernels `[in, out]`."""
  shapes = param_shapes(config)
  host = {path: np.zeros(s.shape, np.float32) for path, s in shapes.items()}
  seen = set()
  for tensor in tqdm(reader.tensors, desc="dequantize", unit="tensor", disable=None):
    try:
      path, layer, heads = _destination(tensor.name, config)
    except GgufError as e:
      raise GgufError(f"{file_name(reader)}: {e}") from None
    x = _dequantize(tensor)
    if heads is not None:
      x = unpermute(x, heads)
    if path.endswith("kernel"):
      x = x.T
    target = host[path] if layer is None else host[path][layer]
    if x.shape != target.shape:
      raise GgufError(f"{file_name(reader)}: tensor {tensor.name!r} has shape {x.shape}, "
                      f"expected {target.shape} from the metadata")
    target[...] = x
    seen.add((path, layer))
  for path, s in shapes.items():
    for layer in (range(config.num_layers) if path.startswith("layers/") else [None]):
      if (path, layer) not in seen:
        raise GgufError(f"{file_name(reader)}: missing tensor for {path} (layer {layer})")
  flat = {p: jnp.asarray(x, shapes[p].dtype) for p, x in host.items()}
  return {"params": paths.unflatten(flat)}


def load(gguf_path: str):
  """`(ModelConfig, params, tokenizer)` of a llama GGUF file (float32 params)."""
  reader = gguf.GGUFReader(gguf_path)
  config = read_config(reader)
  return config, read_params(reader, config), build_tokenizer(reader)


def convert(gguf_path: str, out_dir: str) -> str:
  """Writes a checkpoint directory for `gguf_path`; returns `out_dir`.

  The directory is a Hugging Face one: config.json, model.safetensors
  (float32, dequantized), tokenizer files with the chat template, and a
  generation_config.json with the special ids.
  """
  config, params, tokenizer = load(gguf_path)
  hf.save_checkpoint(out_dir, config, params)
  tokenizer.save_pretrained(out_dir)
  generation = {
      "bos_token_id": config.bos_token_id,
      "eos_token_id": config.eos_token_ids[0] if config.eos_token_ids else None,
      "pad_token_id": tokenizer.pad_token_id
  }
  with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
    json.dump(generation, f, indent=2)
  return out_dir
