"""LoRA adapters as their own pytree.

The adapters live in the `lora` variable collection, mirroring the module
paths of the base kernels they adapt: a base kernel `layers/attn/q_proj/kernel`
of shape `[..., in, out]` gets `layers/attn/q_proj/a` (`[..., in, r]`, Kaiming
uniform like PEFT) and `layers/attn/q_proj/b` (`[..., r, out]`, zeros), so the
adapted model equals the base model at initialisation. The effective weight is
`kernel + (alpha / r) * a @ b`. Only the `lora` tree is trained; the base tree
is never differentiated, so per-example gradients touch the adapters only.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from lead_jax import paths

DEFAULT_TARGETS = (r"(q|k|v|o|gate|up|down)_proj/kernel$",)


@dataclasses.dataclass(frozen=True)
class LoraConfig:
  rank: int = 8
  alpha: float = 16.0
  dropout: float = 0.0
  targets: tuple[str, ...] = DEFAULT_TARGETS  # regexes over base kernel paths

  @property
  def scale(self) -> float:
    return self.alpha / self.rank


ADAPTED = "layers/"  # the decoder applies adapters to the projections of its layers only


def target_paths(lora_config: LoraConfig, base_params) -> list[str]:
  """The base kernels `lora.targets` selects; each regex must match one, and
  none may match a kernel outside the layers (lm_head), which the decoder
  would never adapt: its adapter would be trained by nothing."""
  kernels = [p for p in paths.flatten(base_params) if p.endswith("/kernel")]
  chosen = paths.select(lora_config.targets, kernels, "lora.targets")
  outside = [p for p in chosen if not p.startswith(ADAPTED)]
  if outside:
    raise ValueError(f"lora.targets={tuple(lora_config.targets)} matches {outside}: the decoder "
                     "adapts only the projections inside its layers (q/k/v/o/gate/up/down_proj); "
                     "narrow the regexes to those")
  return chosen


@functools.partial(jax.jit, static_argnums=0)
def init(lora_config: LoraConfig, base_params, key: jax.Array) -> dict:
  """Adapter tree for `base_params` (the `params` collection, unboxed).

  Only the shapes of `base_params` are used; a target regex matching no
  kernel raises.
  """
  flat_base = paths.flatten(base_params)
  flat = {}
  for i, path in enumerate(target_paths(lora_config, base_params)):
    kernel = flat_base[path]
    *lead, d_in, d_out = kernel.shape
    # PEFT: kaiming_uniform_(a=sqrt(5)) on A, i.e. U(-1/sqrt(in), 1/sqrt(in)).
    bound = 1.0 / math.sqrt(d_in)
    module = path[:-len("/kernel")]
    flat[f"{module}/a"] = jax.random.uniform(
        jax.random.fold_in(key, i), (*lead, d_in, lora_config.rank), jnp.float32, -bound, bound)
    flat[f"{module}/b"] = jnp.zeros((*lead, lora_config.rank, d_out), jnp.float32)
  return paths.unflatten(flat)


def count(lora_params) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(lora_params)))


@functools.partial(jax.jit, static_argnums=0)
def merge(lora_config: LoraConfig, base_params, lora_params) -> dict:
  """Base tree with `scale * a @ b` folded into every adapted kernel."""
  flat_lora = paths.flatten(lora_params)
  merged = {}
  for path, kernel in paths.flatten(base_params).items():
    module = path[:-len("/kernel")] if path.endswith("/kernel") else None
    if module is not None and f"{module}/a" in flat_lora:
      a, b = flat_lora[f"{module}/a"], flat_lora[f"{module}/b"]
      delta = jnp.einsum("...ir,...ro->...io", a.astype(jnp.float32), b.astype(
          jnp.float32)) * lora_config.scale
      kernel = (kernel.astype(jnp.float32) + delta).astype(kernel.dtype)
    merged[path] = kernel
  return paths.unflatten(merged)
