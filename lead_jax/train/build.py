"""From the `model` and `lora` sub-configs to a `ModelConfig` and base weights.

`model.checkpoint` empty: a randomly initialised model with the architecture
fields of the sub-config (the tiny byte-level model by default). A local
Hugging Face directory or a `.gguf` file: the architecture comes from the
checkpoint and the sub-config only sets dtypes and rematerialisation.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import jax
import jax.numpy as jnp

from lead_jax.model import lora as lora_lib
from lead_jax.model import decoder as model_lib
from lead_jax.train import sharding
from lead_jax.train import step as train


def lora_config(lora_cfg) -> lora_lib.LoraConfig:
  if lora_cfg.rank <= 0:
    raise ValueError(f"lora.rank={lora_cfg.rank} must be positive")
  return lora_lib.LoraConfig(rank=lora_cfg.rank, alpha=float(lora_cfg.alpha),
                             dropout=float(lora_cfg.dropout), targets=tuple(lora_cfg.targets))


def _rope_scaling(m) -> Optional[model_lib.RopeScaling]:
  if not m.rope_scaling_type:
    return None
  return model_lib.RopeScaling(
      factor=float(m.rope_scaling_factor), low_freq_factor=float(m.rope_low_freq_factor),
      high_freq_factor=float(m.rope_high_freq_factor), original_max_position_embeddings=int(
          m.rope_original_max_positions), rope_type=m.rope_scaling_type)


def model_config(model_cfg, lora_cfg) -> model_lib.ModelConfig:
  """The architecture declared field by field in the sub-config (no checkpoint)."""
  m = model_cfg
  return model_lib.ModelConfig(
      vocab_size=m.vocab_size, hidden_size=m.hidden_size, intermediate_size=m.intermediate_size,
      num_layers=m.num_layers, num_heads=m.num_heads, num_kv_heads=m.num_kv_heads,
      head_dim=m.head_dim or m.hidden_size // m.num_heads, rope_theta=float(
          m.rope_theta), rope_scaling=_rope_scaling(m), rms_norm_eps=float(m.rms_norm_eps),
      tie_embeddings=m.tie_embeddings, max_position_embeddings=m.max_position_embeddings,
      dtype=m.dtype, param_dtype=m.param_dtype, remat=m.remat, lora=lora_config(lora_cfg))


def _from_checkpoint(model_cfg):
  path = model_cfg.checkpoint
  if path.endswith(".gguf"):
    if not os.path.isfile(path):
      raise FileNotFoundError(f"model.checkpoint={path!r}: no such GGUF file")
    from lead_jax.model import gguf_import  # the gguf reader only when asked for
    config, params, _ = gguf_import.load(path)
    return config, params
  from lead_jax.model import hf
  return hf.load_checkpoint(path, param_dtype=model_cfg.param_dtype, dtype=model_cfg.dtype)


def base_key(seed: int) -> jax.Array:
  """The key of a randomly initialised base. Checkpoints do not store the
  frozen base, so every reader of a run rebuilds it from this key."""
  return jax.random.fold_in(jax.random.key(seed), 0)


def load_base(model_cfg, lora_cfg, key: jax.Array):
  """`(ModelConfig, base)`: `base` is the `params` collection (no adapters)."""
  if not model_cfg.checkpoint:
    config = model_config(model_cfg, lora_cfg)
    return config, model_lib.init(config, key)["params"]
  config, params = _from_checkpoint(model_cfg)
  config = dataclasses.replace(config, dtype=model_cfg.dtype, param_dtype=model_cfg.param_dtype,
                               remat=model_cfg.remat, lora=lora_config(lora_cfg))
  dtype = jnp.dtype(config.param_dtype)
  return config, jax.tree.map(lambda x: x.astype(dtype), params["params"])


def abstract_base(config: model_lib.ModelConfig):
  """Shapes and dtypes of the base parameters, without allocating them."""
  return jax.eval_shape(lambda k: model_lib.init(config, k)["params"], jax.random.key(0))


def _creator(model_config: model_lib.ModelConfig, tx):

  def create(base, key):
    return train.TrainState.create(lora_lib.init(model_config.lora, base, key), tx)

  return create


def _split_shardings(mesh, rules, state_shapes, base_shapes):
  """`(state shardings, base shardings)`: the rules matched over the paths
  `base/...`, `step`, `lora/...` and `opt_state/...` together (a rule must match
  one of them)."""
  fields = {f.name: getattr(state_shapes, f.name) for f in dataclasses.fields(state_shapes)}
  both = sharding.tree_shardings(mesh, rules, {"base": base_shapes, **fields})
  base = both.pop("base")
  return train.TrainState(**both), base


def shardings(model_config: model_lib.ModelConfig, tx, mesh=None, rules=()):
  """`(state shardings, base shardings)`, `(None, None)` without a mesh: where
  `TrainState` leaves and base weights live (place the base with
  `sharding.place(base, base_shardings)`), without allocating anything."""
  if mesh is None:
    return None, None
  base = abstract_base(model_config)
  state = jax.eval_shape(_creator(model_config, tx), base, jax.random.key(0))
  return _split_shardings(mesh, rules, state, base)


def abstract_state(model_config: model_lib.ModelConfig, tx, mesh=None, rules=()):
  """`(abstract TrainState, its shardings or None)` without allocating anything;
  with a mesh the ShapeDtypeStructs carry their shardings (AOT, restore). The
  base is not part of it (`abstract_base`, `shardings`)."""
  base = abstract_base(model_config)
  shapes = jax.eval_shape(_creator(model_config, tx), base, jax.random.key(0))
  if mesh is None:
    return shapes, None
  state_shardings, _ = _split_shardings(mesh, rules, shapes, base)
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes,
                      state_shardings), state_shardings


def init_state(model_config: model_lib.ModelConfig, base, tx, key: jax.Array, mesh=None, rules=()):
  """`(TrainState, its shardings or None)`: fresh adapters and optimiser state
  for `base` (read for its shapes only), created directly with their shardings
  when a mesh is given. The base is not placed here: the caller places it
  (`shardings`) and hands it to the steps beside the state."""

  def adapters(base, key):
    lora = lora_lib.init(model_config.lora, base, key)
    return lora, tx.init(lora)

  step = jnp.zeros((), jnp.int32)
  if mesh is None:
    return train.TrainState(step, *jax.jit(adapters)(base, key)), None
  state_shardings, _ = _split_shardings(mesh, rules,
                                        jax.eval_shape(_creator(model_config, tx), base, key),
                                        jax.eval_shape(lambda b: b, base))
  lora, opt_state = jax.jit(adapters, out_shardings=(state_shardings.lora,
                                                     state_shardings.opt_state))(base, key)
  return train.TrainState(jax.device_put(step, state_shardings.step), lora,
                          opt_state), state_shardings
