"""LoRA adapters in PEFT's on-disk layout: adapter_config.json + adapter_model.safetensors.

PEFT keeps, for each adapted linear module M (a Hugging Face module name such
as `model.layers.3.self_attn.q_proj`), two tensors

  base_model.model.M.lora_A.weight   [r, in]    our `a` of that layer, transposed
  base_model.model.M.lora_B.weight   [out, r]   our `b` of that layer, transposed

and adds `(lora_alpha / r) * B @ A` to M's `[out, in]` weight. This project
adds `(alpha / r) * a @ b` to the `[in, out]` kernel (`lead_jax.model.lora`):
the transpose of the same matrix, so `r = lora.rank` and `lora_alpha =
lora.alpha` carry over unchanged (use_rslora false, fan_in_fan_out false).
`target_modules` lists the short names of the adapted modules (q_proj, ...,
down_proj: `lora.target_paths` adapts nothing else); PEFT matches them as name suffixes, and
every layer of this decoder is adapted alike (the layers are stacked), so
they name exactly the modules that carry tensors.

  adapter_tensors(model_config, lora_params) -> {PEFT name: float32 array}
  target_modules(tensors) -> ["q_proj", ...]
  adapter_config(lora_config, target_modules, base_path) -> dict
  save_adapters(path, model_config, lora_params, base_path)
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import safetensors.numpy

from lead_jax import paths
from lead_jax.model import hf

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PREFIX = "base_model.model."  # PeftModelForCausalLM -> LoraModel -> the HF model


def _modules(model_config, lora_params) -> list[tuple[str, np.ndarray, np.ndarray]]:
  """`(our module path, a, b)` of every adapted kernel, a and b on host."""
  flat = paths.flatten(lora_params)
  out = []
  for path in flat:
    if not path.endswith("/a"):
      continue
    module = path[:-len("/a")]
    a, b = (np.asarray(jax.device_get(flat[f"{module}/{k}"]), np.float32) for k in ("a", "b"))
    if a.shape[-1] != model_config.lora.rank or b.shape[-2] != model_config.lora.rank:
      raise ValueError(f"lora {module}: rank {a.shape[-1]}, but config.lora.rank is "
                       f"{model_config.lora.rank}; pass the LoraConfig the adapters were "
                       "trained with")
    out.append((module, a, b))
  if not out:
    raise ValueError("lora_params holds no adapters (no `.../a` leaves)")
  return out


def adapter_tensors(model_config, lora_params) -> dict[str, np.ndarray]:
  """PEFT's tensors of `lora_params` (our `lora` collection), in float32."""
  tensors = {}
  for module, a, b in _modules(model_config, lora_params):
    stacked = module.startswith("layers/")
    for i in range(a.shape[0]) if stacked else [None]:
      name = hf.tensor_name(f"{module}/kernel", i)[:-len(".weight")]
      a_i, b_i = (a[i], b[i]) if stacked else (a, b)
      tensors[f"{PREFIX}{name}.lora_A.weight"] = np.ascontiguousarray(a_i.T)
      tensors[f"{PREFIX}{name}.lora_B.weight"] = np.ascontiguousarray(b_i.T)
  return tensors


def target_modules(tensors: dict[str, np.ndarray]) -> list[str]:
  """The short names of the modules `adapter_tensors` adapted, sorted."""
  return sorted({name.split(".")[-3] for name in tensors})


def adapter_config(lora_config, modules: list[str], base_path: str) -> dict:
  """adapter_config.json for PEFT's LoraConfig (`base_path`: the base model's directory)."""
  return {
      "peft_type": "LORA",
      "task_type": "CAUSAL_LM",
      "base_model_name_or_path": base_path,
      "r": int(lora_config.rank),
      "lora_alpha": float(lora_config.alpha),
      "lora_dropout": float(lora_config.dropout),
      "target_modules": list(modules),
      "bias": "none",
      "fan_in_fan_out": False,
      "use_rslora": False,
      "init_lora_weights": True,
      "modules_to_save": None,
      "inference_mode": True,
  }


def save_adapters(path: str, model_config, lora_params, base_path: str = "") -> None:
  """Writes adapter_config.json and adapter_model.safetensors into `path`."""
  if model_config.lora is None:
    raise ValueError("config.lora is None; set it to the LoraConfig the adapters were trained with")
  os.makedirs(path, exist_ok=True)
  tensors = adapter_tensors(model_config, lora_params)
  safetensors.numpy.save_file(tensors, os.path.join(path, WEIGHTS_FILE), metadata={"format": "pt"})
  config = adapter_config(model_config.lora, target_modules(tensors), base_path)
  with open(os.path.join(path, CONFIG_FILE), "w", encoding="utf-8") as f:
    json.dump(config, f, indent=2, sort_keys=True)
    f.write("\n")
