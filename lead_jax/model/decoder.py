"""Llama-family decoder (Llama, Mistral, Qwen2) in Flax linen, with LoRA.

Parameters live in two collections: `params` (the frozen base model) and,
optionally, `lora` (adapters, see `lead_jax.model.lora`). Layers are stacked with
`nn.scan`, so every per-layer parameter has a leading layer axis; paths look
like `layers/attn/q_proj/kernel` with kernels stored `[in, out]`.

Public entry points:
  forward(config, params, tokens_BxL, attention_mask_BxL=None) -> logits_BxLxV
      with `segment_BxL` (packed rows, `lead_jax.data.packing`): block-diagonal
      causal attention, RoPE positions restarting at 0 in every segment
  forward_cached(...)  one prefill or decode step against a KV cache
  init(config, key) -> params
  param_shapes(config) -> {path: ShapeDtypeStruct}  without allocating
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from lead_jax import paths
from lead_jax.model.lora import LoraConfig

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class RopeScaling:
  """RoPE frequency scaling: Llama-3 style (`rope_type` "llama3") or "linear".

  "linear" divides every frequency by `factor` and ignores the other fields.
  """
  factor: float
  low_freq_factor: float = 1.0
  high_freq_factor: float = 4.0
  original_max_position_embeddings: int = 8192
  rope_type: str = "llama3"  # "llama3" or "linear"

  def __post_init__(self):
    if self.rope_type not in ("llama3", "linear"):
      raise ValueError(f"rope_type={self.rope_type!r}; use 'llama3' or 'linear'")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  rope_theta: float = 10000.0
  rope_scaling: Optional[RopeScaling] = None
  rms_norm_eps: float = 1e-6
  tie_embeddings: bool = False
  qkv_bias: bool = False  # Qwen2
  sliding_window: Optional[int] = None  # Mistral v0.1
  max_position_embeddings: int = 4096
  architecture: str = "LlamaForCausalLM"
  bos_token_id: Optional[int] = None
  eos_token_ids: tuple[int, ...] = ()
  dtype: str = "float32"  # compute dtype: float32 | bfloat16
  param_dtype: str = "float32"  # storage dtype of the base parameters
  remat: bool = False  # rematerialise each layer in the backward pass
  lora: Optional[LoraConfig] = None

  def __post_init__(self):
    if self.num_heads % self.num_kv_heads:
      raise ValueError(f"num_heads={self.num_heads} is not a multiple of "
                       f"num_kv_heads={self.num_kv_heads}")
    if self.head_dim % 2:
      raise ValueError(f"head_dim={self.head_dim} must be even for rotary embeddings")
    for field in ("dtype", "param_dtype"):
      if getattr(self, field) not in _DTYPES:
        raise ValueError(f"{field}={getattr(self, field)!r}; use one of {list(_DTYPES)}")


def rope_frequencies(config: ModelConfig) -> jax.Array:
  """Inverse frequencies `[head_dim // 2]`, with Llama-3 scaling if configured."""
  dim = config.head_dim
  inv_freq = 1.0 / (config.rope_theta**(jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
  s = config.rope_scaling
  if s is None:
    return inv_freq
  if s.rope_type == "linear":
    return inv_freq / s.factor
  low_wavelen = s.original_max_position_embeddings / s.low_freq_factor
  high_wavelen = s.original_max_position_embeddings / s.high_freq_factor
  wavelen = 2 * math.pi / inv_freq
  scaled = jnp.where(wavelen > low_wavelen, inv_freq / s.factor, inv_freq)
  smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (
      s.high_freq_factor - s.low_freq_factor)
  smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled
  medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
  return jnp.where(medium, smoothed, scaled)


def apply_rope(x_BxTxNxH, positions_BxT, inv_freq):
  """Rotate-half rotary embedding (the Hugging Face layout)."""
  angles = positions_BxT[..., None].astype(jnp.float32) * inv_freq  # BxTx(H/2)
  angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]
  x = x_BxTxNxH.astype(jnp.float32)
  half = x.shape[-1] // 2
  rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
  return (x * jnp.cos(angles) + rotated * jnp.sin(angles)).astype(x_BxTxNxH.dtype)


class RMSNorm(nn.Module):
  eps: float
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, x):
    scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return (scale.astype(jnp.float32) * x32).astype(self.dtype)


class LoraDense(nn.Module):
  """Dense layer `[in, out]` whose kernel is adapted when `lora/a,b` exist.

  Every leading axis (rows, tokens) is flattened into one before the matmuls
  and restored after, so each kernel's and adapter's weight gradient is a dot
  contracting a single axis of a 2-D operand. On `[B, L, D]` inputs the
  gradients contract over B and L at once, and XLA:CPU lowers such a dot by
  first transposing the whole output cotangent (`[B*L, F] -> [F, B*L]`, a
  strided copy per kernel and layer that dominated the MLP backward). The
  output has the input's leading axes, so sharding constraints on it (the
  residual stream's, `Block`) see the same layout as before.
  """
  features: int
  use_bias: bool
  config: ModelConfig

  @nn.compact
  def __call__(self, x_NxD, deterministic: bool = True):
    dtype = _DTYPES[self.config.dtype]
    lead, d = x_NxD.shape[:-1], x_NxD.shape[-1]
    kernel = self.param("kernel", nn.initializers.normal(0.02), (d, self.features),
                        _DTYPES[self.config.param_dtype])
    x_MxD = x_NxD.reshape(-1, d).astype(dtype)  # M = prod(leading axes)
    y_MxF = jnp.dot(x_MxD, kernel.astype(dtype))
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.features,),
                        _DTYPES[self.config.param_dtype])
      y_MxF = y_MxF + bias.astype(dtype)
    if self.has_variable("lora", "a"):
      lora = self.config.lora
      if lora is None:
        raise ValueError("params carry LoRA adapters but ModelConfig.lora is None")
      a = self.get_variable("lora", "a").astype(dtype)
      b = self.get_variable("lora", "b").astype(dtype)
      # Dropout on the unflattened input: the same mask for the same key.
      h_NxD = nn.Dropout(lora.dropout)(x_NxD.astype(dtype), deterministic=deterministic)
      y_MxF = y_MxF + (h_NxD.reshape(-1, d) @ a @ b) * jnp.asarray(lora.scale, dtype)
    return y_MxF.reshape(lead + (self.features,))


class Attention(nn.Module):
  config: ModelConfig

  @nn.compact
  def __call__(self, x_BxTxD, positions_BxT, mask_BxTxS, cache, index, deterministic):
    c = self.config
    b, t, _ = x_BxTxD.shape
    proj = lambda n, name, bias: LoraDense(n * c.head_dim, bias, c, name=name)(
        x_BxTxD, deterministic).reshape(b, t, n, c.head_dim)
    q = proj(c.num_heads, "q_proj", c.qkv_bias)
    k = proj(c.num_kv_heads, "k_proj", c.qkv_bias)
    v = proj(c.num_kv_heads, "v_proj", c.qkv_bias)
    inv_freq = rope_frequencies(c)
    q, k = apply_rope(q, positions_BxT, inv_freq), apply_rope(k, positions_BxT, inv_freq)
    if cache is not None:
      k_cache, v_cache = cache
      k = jax.lax.dynamic_update_slice(k_cache, k.astype(k_cache.dtype), (0, index, 0, 0))
      v = jax.lax.dynamic_update_slice(v_cache, v.astype(v_cache.dtype), (0, index, 0, 0))
      cache = (k, v)
    groups = c.num_heads // c.num_kv_heads
    q = q.reshape(b, t, c.num_kv_heads, groups, c.head_dim)
    scores = jnp.einsum("btkgh,bskh->bkgts", q, k.astype(q.dtype)).astype(jnp.float32)
    scores = scores / math.sqrt(c.head_dim)
    scores = jnp.where(mask_BxTxS[:, None, None], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(q.dtype)
    out = jnp.einsum("bkgts,bskh->btkgh", probs, v.astype(q.dtype))
    out = out.reshape(b, t, c.num_heads * c.head_dim)
    return LoraDense(c.hidden_size, False, c, name="o_proj")(out, deterministic), cache


class Mlp(nn.Module):
  config: ModelConfig

  @nn.compact
  def __call__(self, x, deterministic):
    c = self.config
    dense = lambda n, name, h: LoraDense(n, False, c, name=name)(h, deterministic)
    h = nn.silu(dense(c.intermediate_size, "gate_proj", x)) * dense(c.intermediate_size, "up_proj",
                                                                    x)
    return dense(c.hidden_size, "down_proj", h)


# Logical axes of the residual stream. A no-op unless the caller runs under a
# context mesh with `nn.logical_axis_rules` for these names (lead_jax.train.step does,
# so FSDP gathers weights layer by layer instead of moving activations).
ACTIVATION_AXES = ("activation_batch", "activation_length", "activation_embed")


class Block(nn.Module):
  config: ModelConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, x, positions_BxT, mask_BxTxS, cache, index):
    c, dtype = self.config, _DTYPES[self.config.dtype]
    x = nn.with_logical_constraint(x, ACTIVATION_AXES)
    h, cache = Attention(c, name="attn")(RMSNorm(c.rms_norm_eps, dtype,
                                                 name="attn_norm")(x), positions_BxT, mask_BxTxS,
                                         cache, index, self.deterministic)
    x = x + h
    x = x + Mlp(c, name="mlp")(RMSNorm(c.rms_norm_eps, dtype, name="mlp_norm")(x),
                               self.deterministic)
    return x, cache


class Decoder(nn.Module):
  config: ModelConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, tokens_BxT, positions_BxT, mask_BxTxS, cache=None, index=0):
    c, dtype = self.config, _DTYPES[self.config.dtype]
    embed = nn.Embed(c.vocab_size, c.hidden_size, embedding_init=nn.initializers.normal(0.02),
                     param_dtype=_DTYPES[c.param_dtype], name="embed")
    x = embed(tokens_BxT).astype(dtype)
    block = Block
    if c.remat:
      block = nn.remat(Block, prevent_cse=False, policy=jax.checkpoint_policies.nothing_saveable)
    layers = nn.scan(block, variable_axes={"params": 0,
                                           "lora": 0}, split_rngs={"params": True, "dropout": True},
                     in_axes=(nn.broadcast, nn.broadcast, 0, nn.broadcast), length=c.num_layers)
    x, cache = layers(c, self.deterministic, name="layers")(x, positions_BxT, mask_BxTxS, cache,
                                                            index)
    x = RMSNorm(c.rms_norm_eps, dtype, name="final_norm")(x)
    if c.tie_embeddings:
      logits = embed.attend(x)
    else:
      # Tokens flattened as in LoraDense (one contracting axis per dot).
      logits = nn.Dense(c.vocab_size, use_bias=False, dtype=dtype,
                        param_dtype=_DTYPES[c.param_dtype],
                        name="lm_head")(x.reshape(-1, x.shape[-1])).reshape(x.shape[:-1] + (-1,))
    return logits.astype(jnp.float32), cache


def _mask(q_pos_T, k_valid_BxS, sliding_window):
  """Causal-by-slot mask `BxTxS`: key slot j visible to query slot i if j <= i."""
  k_slot = jnp.arange(k_valid_BxS.shape[1])
  visible = k_slot[None, :] <= q_pos_T[:, None]
  if sliding_window is not None:
    visible &= (q_pos_T[:, None] - k_slot[None, :]) < sliding_window
  return visible[None] & k_valid_BxS[:, None, :]


def positions_from_mask(attention_mask_BxL):
  """Per-row positions counting only real tokens (left padding safe)."""
  return jnp.maximum(jnp.cumsum(attention_mask_BxL.astype(jnp.int32), axis=1) - 1, 0)


def _segment_mask(segment_BxL, sliding_window):
  """Block-diagonal causal mask `BxLxL`: slot j visible to slot i if j <= i, both
  lie in the same segment and j is real (segment id > 0; 0 is padding)."""
  slot = jnp.arange(segment_BxL.shape[1])
  visible = slot[None, :] <= slot[:, None]
  if sliding_window is not None:  # segments are contiguous: slot distance = position distance
    visible &= (slot[:, None] - slot[None, :]) < sliding_window
  same = segment_BxL[:, :, None] == segment_BxL[:, None, :]
  return visible[None] & same & (segment_BxL > 0)[:, None, :]


def positions_from_segments(segment_BxL):
  """Positions restarting at 0 at the first slot of every segment (a run of
  equal ids); the padding after the last segment counts on from its start."""
  slot = jnp.arange(segment_BxL.shape[1])
  first = jnp.concatenate(
      [jnp.ones_like(segment_BxL[:, :1], jnp.bool_), segment_BxL[:, 1:] != segment_BxL[:, :-1]],
      axis=1)
  start = jax.lax.cummax(jnp.where(first, slot[None, :], 0), axis=1)
  return slot[None, :] - start


def _inputs(config: ModelConfig, tokens_BxL, attention_mask_BxL, segment_BxL, positions_BxL):
  """`(tokens, positions, mask BxLxL)` of a padded or (with segments) a packed batch."""
  tokens_BxL = jnp.asarray(tokens_BxL)
  if segment_BxL is None:
    if positions_BxL is not None:
      raise ValueError("positions_BxL is only taken with segment_BxL (packed rows)")
    if attention_mask_BxL is None:
      attention_mask_BxL = jnp.ones(tokens_BxL.shape, jnp.bool_)
    attention_mask_BxL = jnp.asarray(attention_mask_BxL).astype(jnp.bool_)
    mask = _mask(jnp.arange(tokens_BxL.shape[1]), attention_mask_BxL, config.sliding_window)
    return tokens_BxL, positions_from_mask(attention_mask_BxL), mask
  if attention_mask_BxL is not None:
    raise ValueError("pass attention_mask_BxL or segment_BxL, not both (segment 0 is padding)")
  segment_BxL = jnp.asarray(segment_BxL).astype(jnp.int32)
  if positions_BxL is None:
    positions_BxL = positions_from_segments(segment_BxL)
  return tokens_BxL, jnp.asarray(positions_BxL), _segment_mask(segment_BxL, config.sliding_window)


def forward(config: ModelConfig, params, tokens_BxL, attention_mask_BxL=None, *, segment_BxL=None,
            positions_BxL=None, dropout_key: Optional[jax.Array] = None):
  """Logits `BxLxV` (float32). `params` is `{"params": base[, "lora": adapters]}`.

  Padded rows: `attention_mask_BxL` (default all real). Packed rows: instead,
  `segment_BxL` (0 padding, 1..n the row's samples, each a contiguous run) and
  optionally `positions_BxL` (default: restarting at 0 per segment); a token
  attends only to earlier tokens of its segment, so each segment's logits are
  those of its sample alone. A `dropout_key` enables LoRA dropout (training);
  without it the pass is deterministic.
  """
  tokens_BxL, positions_BxL, mask = _inputs(config, tokens_BxL, attention_mask_BxL, segment_BxL,
                                            positions_BxL)
  rngs = None if dropout_key is None else {"dropout": dropout_key}
  logits, _ = Decoder(config, deterministic=dropout_key
                      is None).apply(params, tokens_BxL, positions_BxL, mask, rngs=rngs)
  return logits


def final_hidden(config: ModelConfig, params, tokens_BxL, attention_mask_BxL=None, *,
                 segment_BxL=None, positions_BxL=None):
  """The last hidden states `BxLxD` (float32): the final norm's output, i.e. the
  input of the output projection (sample features for clustering). Padded or
  packed rows as in `forward`."""
  tokens_BxL, positions_BxL, mask = _inputs(config, tokens_BxL, attention_mask_BxL, segment_BxL,
                                            positions_BxL)
  _, state = Decoder(config).apply(
      params, tokens_BxL, positions_BxL, mask,
      capture_intermediates=lambda module, method: module.name == "final_norm",
      mutable=["intermediates"])
  return state["intermediates"]["final_norm"]["__call__"][0].astype(jnp.float32)


def init_cache(config: ModelConfig, batch: int, max_len: int):
  shape = (config.num_layers, batch, max_len, config.num_kv_heads, config.head_dim)
  dtype = _DTYPES[config.dtype]
  return jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)


def forward_cached(config: ModelConfig, params, tokens_BxT, positions_BxT, kv_valid_BxS, cache,
                   index):
  """Runs `T` new tokens written to cache slots `[index, index + T)`.

  `kv_valid_BxS` marks the cache slots holding real tokens (including the new
  ones). Returns `(logits_BxTxV, cache)`.
  """
  t = tokens_BxT.shape[1]
  mask = _mask(index + jnp.arange(t), kv_valid_BxS, config.sliding_window)
  return Decoder(config).apply(params, tokens_BxT, positions_BxT, mask, cache, index)


@functools.partial(jax.jit, static_argnums=0)
def init(config: ModelConfig, key: jax.Array) -> dict:
  """Random base parameters `{"params": ...}` (no adapters), compiled once per config."""
  tokens = jnp.zeros((1, 2), jnp.int32)
  mask = _mask(jnp.arange(2), jnp.ones((1, 2), jnp.bool_), None)
  variables = Decoder(config).init(key, tokens, jnp.zeros((1, 2), jnp.int32), mask)
  return {"params": variables["params"]}


def param_shapes(config: ModelConfig) -> dict[str, jax.ShapeDtypeStruct]:
  """`{path: shape and dtype}` of `init(config, key)["params"]`, allocating nothing."""
  shapes = jax.eval_shape(lambda key: init(config, key), jax.random.key(0))
  return paths.flatten(shapes["params"])
