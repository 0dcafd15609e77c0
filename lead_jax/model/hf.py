"""Local Hugging Face checkpoints <-> `(ModelConfig, params)`.

A checkpoint is a directory with `config.json` and either `model.safetensors`
or a sharded `model.safetensors.index.json`, for LlamaForCausalLM,
MistralForCausalLM or Qwen2ForCausalLM. Hugging Face stores one `[out, in]`
weight per layer; this project stores `[in, out]` kernels stacked over a
leading layer axis (see `lead_jax.model.decoder`). Tensors are read into NumPy with
`safetensors` (no torch), one at a time, straight into the stacked arrays.

Public API:
  load_checkpoint(path) -> (ModelConfig, params)
  save_checkpoint(path, config, params)   merges LoRA adapters if present
  tensor_name(path, layer) -> str         the Hugging Face name of one of our parameters
  config_from_hf(dict) -> ModelConfig;  config_to_hf(ModelConfig) -> dict
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import safetensors
import safetensors.numpy

from lead_jax.model import lora as lora_lib
from lead_jax import paths
from lead_jax.model.hf_config import (ARCHITECTURES, CheckpointError, config_from_hf, config_to_hf,
                                      generation_eos_ids)
from lead_jax.model.decoder import ModelConfig, param_shapes

__all__ = [
    "ARCHITECTURES", "CheckpointError", "config_from_hf", "config_to_hf", "load_checkpoint",
    "save_checkpoint", "tensor_name"
]

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
DEFAULT_MAX_SHARD_BYTES = 5 * 2**30  # what `transformers` uses for big models

# Hugging Face per-layer suffix (after `model.layers.{i}.`) -> our path under
# `layers/`, and whether the tensor is a linear weight stored `[out, in]`.
_LAYER_TENSORS = {
    "self_attn.q_proj.weight": ("attn/q_proj/kernel", True),
    "self_attn.k_proj.weight": ("attn/k_proj/kernel", True),
    "self_attn.v_proj.weight": ("attn/v_proj/kernel", True),
    "self_attn.o_proj.weight": ("attn/o_proj/kernel", True),
    "self_attn.q_proj.bias": ("attn/q_proj/bias", False),
    "self_attn.k_proj.bias": ("attn/k_proj/bias", False),
    "self_attn.v_proj.bias": ("attn/v_proj/bias", False),
    "mlp.gate_proj.weight": ("mlp/gate_proj/kernel", True),
    "mlp.up_proj.weight": ("mlp/up_proj/kernel", True),
    "mlp.down_proj.weight": ("mlp/down_proj/kernel", True),
    "input_layernorm.weight": ("attn_norm/scale", False),
    "post_attention_layernorm.weight": ("mlp_norm/scale", False),
}
_GLOBAL_TENSORS = {
    "model.embed_tokens.weight": ("embed/embedding", False),
    "model.norm.weight": ("final_norm/scale", False),
    "lm_head.weight": ("lm_head/kernel", True),
}
_LAYER_BY_PATH = {v[0]: (k, v[1]) for k, v in _LAYER_TENSORS.items()}
_GLOBAL_BY_PATH = {v[0]: (k, v[1]) for k, v in _GLOBAL_TENSORS.items()}
# Non-parameter buffers that some exporters write; they carry no weights.
_IGNORED = re.compile(r"\.rotary_emb\.inv_freq$")
_NP_DTYPES = {"float32": np.float32, "bfloat16": jnp.bfloat16}
_FROM_STORED = {"BF16": "bfloat16", "F16": "float32", "F32": "float32"}


class _Entry(NamedTuple):
  """One Hugging Face tensor and where it lives in our tree."""
  name: str  # Hugging Face tensor name
  path: str  # our `/`-joined parameter path
  layer: int | None  # index along the stacked layer axis, None for globals
  transpose: bool
  hf_shape: tuple[int, ...]


def _tensor_plan(config: ModelConfig) -> list[_Entry]:
  """Every Hugging Face tensor of `config`, grouped by our parameter path."""
  plan = []
  for path, shape in param_shapes(config).items():
    if path.startswith("layers/"):
      suffix, transpose = _LAYER_BY_PATH[path[len("layers/"):]]
      hf_shape = shape.shape[1:][::-1] if transpose else shape.shape[1:]
      plan += [
          _Entry(f"model.layers.{i}.{suffix}", path, i, transpose, hf_shape)
          for i in range(config.num_layers)
      ]
    else:
      name, transpose = _GLOBAL_BY_PATH[path]
      plan.append(
          _Entry(name, path, None, transpose, shape.shape[::-1] if transpose else shape.shape))
  return plan


def tensor_name(path: str, layer: int | None = None) -> str:
  """The Hugging Face tensor name of our parameter `path` (`layer`: its index
  on the stacked layer axis, for paths under `layers/`), e.g.
  `layers/attn/q_proj/kernel`, 3 -> `model.layers.3.self_attn.q_proj.weight`."""
  if path.startswith("layers/") and path[len("layers/"):] in _LAYER_BY_PATH:
    if layer is None:
      raise ValueError(f"{path}: a layer parameter needs its layer index")
    return f"model.layers.{layer}.{_LAYER_BY_PATH[path[len('layers/'):]][0]}"
  if path in _GLOBAL_BY_PATH:
    return _GLOBAL_BY_PATH[path][0]
  raise ValueError(f"{path}: not a parameter of the Llama/Mistral/Qwen2 decoder")


def _weight_files(path: str) -> dict[str, str]:
  """{tensor name: safetensors file} from the index or the single file."""
  index = os.path.join(path, INDEX_FILE)
  if os.path.isfile(index):
    with open(index) as f:
      weight_map = json.load(f)["weight_map"]
    for file in set(weight_map.values()):
      if not os.path.isfile(os.path.join(path, file)):
        raise FileNotFoundError(f"{index} lists {file}, which is not in {path}")
    return {name: os.path.join(path, file) for name, file in weight_map.items()}
  single = os.path.join(path, SINGLE_FILE)
  if os.path.isfile(single):
    with safetensors.safe_open(single, "np") as f:
      return {name: single for name in f.keys()}
  raise FileNotFoundError(
      f"{path}: no {SINGLE_FILE} or {INDEX_FILE}. Only safetensors checkpoints are "
      "read; convert .bin/.pth weights with transformers' save_pretrained first.")


def _check_names(plan: list[_Entry], files: dict[str, str], config: ModelConfig, path: str) -> None:
  expected = {e.name for e in plan}
  for name in expected:
    if name not in files:
      raise CheckpointError(
          f"{path}: missing tensor {name!r}, required by {config.architecture} with "
          f"num_layers={config.num_layers}, tie_embeddings={config.tie_embeddings}, "
          f"qkv_bias={config.qkv_bias}. Is config.json from the same model?")
  for name, file in files.items():
    tied_head = name == "lm_head.weight" and config.tie_embeddings
    if name not in expected and not tied_head and not _IGNORED.search(name):
      raise CheckpointError(f"{file}: unexpected tensor {name!r} for {config.architecture}; this "
                            "loader knows only the Llama/Mistral/Qwen2 decoder tensors.")


def _stored_param_dtype(files: dict[str, str]) -> str:
  name = "model.embed_tokens.weight"
  with safetensors.safe_open(files[name], "np") as f:
    stored = f.get_slice(name).get_dtype()
  if stored not in _FROM_STORED:
    raise CheckpointError(f"{files[name]}: {name} is stored as {stored}; expected "
                          f"one of {sorted(_FROM_STORED)}")
  return _FROM_STORED[stored]


def _read_tensor(handle, entry: _Entry, file: str) -> np.ndarray:
  x = handle.get_tensor(entry.name)
  if tuple(x.shape) != tuple(entry.hf_shape):
    raise CheckpointError(f"{file}: tensor {entry.name!r} has shape {tuple(x.shape)}, expected "
                          f"{tuple(entry.hf_shape)} from config.json")
  return x.T if entry.transpose else x


def _read_params(plan: list[_Entry], files: dict[str, str], config: ModelConfig) -> dict:
  shapes = param_shapes(config)
  grouped: dict[str, list[_Entry]] = {}
  for entry in plan:
    grouped.setdefault(entry.path, []).append(entry)
  flat = {}
  with contextlib.ExitStack() as stack:
    handles = {}
    for path, entries in grouped.items():
      target = shapes[path]
      host = np.empty(target.shape, target.dtype)
      for e in entries:
        file = files[e.name]
        if file not in handles:
          handles[file] = stack.enter_context(safetensors.safe_open(file, "np"))
        x = _read_tensor(handles[file], e, file)
        if e.layer is None:
          host[...] = x
        else:
          host[e.layer] = x
      flat[path] = jnp.asarray(host)  # one stacked parameter on host at a time
  return paths.unflatten(flat)


def load_checkpoint(path: str, *, param_dtype: str | None = None,
                    dtype: str | None = None) -> tuple[ModelConfig, dict]:
  """Reads a local Hugging Face checkpoint directory.

  `param_dtype` defaults to the stored dtype (bf16 stays bf16, fp16 and fp32
  become fp32); the compute `dtype` defaults to `param_dtype`. EOS ids are the
  union of config.json's and generation_config.json's.
  """
  config_path = os.path.join(path, "config.json")
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f"{path}: no config.json; pass a local Hugging Face "
                            "checkpoint directory (hub names are not fetched)")
  with open(config_path) as f:
    config = config_from_hf(json.load(f), source=config_path)
  files = _weight_files(path)
  _check_names(_tensor_plan(config), files, config, path)
  param_dtype = param_dtype or _stored_param_dtype(files)
  eos = tuple(dict.fromkeys(config.eos_token_ids + generation_eos_ids(path)))
  config = dataclasses.replace(config, param_dtype=param_dtype, dtype=dtype or param_dtype,
                               eos_token_ids=eos)
  return config, {"params": _read_params(_tensor_plan(config), files, config)}


def _base_params(config: ModelConfig, params) -> dict:
  """The base tree to export, with adapters merged in when present."""
  unknown = set(params) - {"params", "lora"}
  if unknown or "params" not in params:
    raise ValueError(f"params must be {{'params': ..., ['lora': ...]}}; got keys {sorted(params)}")
  if "lora" not in params:
    return params["params"]
  if config.lora is None:
    raise ValueError("params carry LoRA adapters but config.lora is None; set it "
                     "to the LoraConfig the adapters were trained with")
  return lora_lib.merge(config.lora, params["params"], params["lora"])


def _shard(plan: list[_Entry], itemsize: int, max_bytes: int) -> list[list[_Entry]]:
  shards, size = [[]], 0
  for e in plan:
    nbytes = int(np.prod(e.hf_shape)) * itemsize
    if shards[-1] and size + nbytes > max_bytes:
      shards, size = shards + [[]], 0
    shards[-1].append(e)
    size += nbytes
  return shards


def _remove_stale_weights(path: str) -> None:
  pattern = os.path.join(path, "model*.safetensors*")
  for file in glob.glob(pattern):
    if re.fullmatch(r"model(-\d+-of-\d+)?\.safetensors(\.index\.json)?", os.path.basename(file)):
      os.remove(file)


def save_checkpoint(path: str, config: ModelConfig, params, *,
                    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> None:
  """Writes config.json + safetensors that `transformers` loads.

  LoRA adapters are merged. Every tensor is stored in `config.param_dtype`
  (bf16 stays bf16). Above `max_shard_bytes` the weights are sharded with a
  `model.safetensors.index.json`. Old weight files in `path` are replaced.
  """
  flat = paths.flatten(_base_params(config, params))
  plan = _tensor_plan(config)
  wanted = {e.path for e in plan}
  if set(flat) != wanted:
    raise ValueError(f"params do not match config: unexpected {sorted(set(flat) - wanted)}, "
                     f"missing {sorted(wanted - set(flat))}")
  np_dtype = np.dtype(_NP_DTYPES[config.param_dtype])
  shards = _shard(plan, np_dtype.itemsize, max_shard_bytes)
  os.makedirs(path, exist_ok=True)
  _remove_stale_weights(path)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(config_to_hf(config), f, indent=2)
  host, weight_map = {}, {}
  for i, shard in enumerate(shards):
    name = SINGLE_FILE if len(shards) == 1 else (
        f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors")
    tensors = {}
    for e in shard:
      if e.path not in host:  # one stacked parameter on host at a time
        host = {e.path: np.asarray(jax.device_get(flat[e.path]))}
      x = host[e.path] if e.layer is None else host[e.path][e.layer]
      tensors[e.name] = np.ascontiguousarray((x.T if e.transpose else x).astype(np_dtype))
      weight_map[e.name] = name
    safetensors.numpy.save_file(tensors, os.path.join(path, name), metadata={"format": "pt"})
  if len(shards) > 1:
    total = sum(int(np.prod(e.hf_shape)) * np_dtype.itemsize for e in plan)
    with open(os.path.join(path, INDEX_FILE), "w") as f:
      json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
