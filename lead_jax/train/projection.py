"""The seeded +-1 random projection of per-example LoRA gradients.

    g_K = R^T g / sqrt(K),   R[r, c] in {-1, +1},   E[<g_K, h_K>] = <g, h>

R is never stored: its entries are hashed from (seed, global row, column)
block by block inside jit, one 32-bit hash per row and 32 columns, one bit per
entry. Rows are the flattened LoRA parameters chosen by regex (`targets`),
numbered leaf by leaf in path order, each leaf in C order; any blocking, any
chunking and any sharding give the same matrix.

With the LoRA parameters' shardings, every device projects only the rows of
the parameters it holds: the micro-batch's per-example gradients move to the
parameter sharding (one all-to-all), each device hashes and multiplies its
share of R under `shard_map`, and the partial sums are added over the sharded
axes. The generation work is then split over the devices instead of repeated
on each (it is P x K hashes per micro-batch: at Llama-8B scale, K = 8192 and
168M adapter parameters, the dominant cost of the projection).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from lead_jax import paths


@dataclasses.dataclass(frozen=True)
class Projection:
  """A seeded +-1 random projection of a regex-chosen subset of LoRA params."""
  dim: int  # K, a multiple of 32
  targets: tuple[str, ...] = (r".*",)  # regexes over LoRA paths, e.g. layers/attn/q_proj/b
  block_rows: int = 1024  # rows of R generated at a time (memory: block_rows * K floats)
  seed: int = 0

  def __post_init__(self):
    if self.dim <= 0 or self.dim % 32:
      raise ValueError(f"projection dim K={self.dim} must be a positive multiple of 32")
    if self.block_rows <= 0:
      raise ValueError(f"projection block_rows={self.block_rows} must be positive")


def _fmix32(x):
  # murmur3's finaliser: a bijective avalanche mix of uint32, cheap on any chip.
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x85EBCA6B)
  x = x ^ (x >> 13)
  x = x * jnp.uint32(0xC2B2AE35)
  return x ^ (x >> 16)


def sign_rows(seed: int, rows_R, dim: int):
  """Rows `rows_R` (uint32 global row ids) of R as float32 +-1, `[R, dim]`."""
  s = np.uint32(seed & 0xFFFFFFFF)
  row_hash = _fmix32(_fmix32(rows_R.astype(jnp.uint32) ^ s) + jnp.uint32(0x9E3779B9))
  words = dim // 32
  word_salt = _fmix32(jnp.arange(words, dtype=jnp.uint32) * jnp.uint32(0x632BE5AB) + s)
  h = _fmix32(row_hash[:, None] ^ word_salt[None, :])  # rows x words
  bits = (h[:, :, None] >> jnp.arange(32, dtype=jnp.uint32)) & jnp.uint32(1)
  return (1.0 - 2.0 * bits.astype(jnp.float32)).reshape(rows_R.shape[0], dim)


def sign_block(seed: int, row0, rows: int, dim: int):
  """Rows `[row0, row0 + rows)` of R."""
  return sign_rows(seed, jnp.asarray(row0, jnp.uint32) + jnp.arange(rows, dtype=jnp.uint32), dim)


def subset(proj: Projection, lora) -> list[str]:
  return paths.select(proj.targets, list(paths.flatten(lora)), "projection targets")


def _project_flat(proj: Projection, x_mxN, row_of: Callable):
  """`x_mxN @ R[row_of(0..N)]`, generated `block_rows` rows at a time."""
  m, n = x_mxN.shape
  br = min(proj.block_rows, n)
  nb = -(-n // br)
  x = jnp.pad(x_mxN.astype(jnp.float32), ((0, 0), (0, nb * br - n)))  # zero rows add 0

  def body(i, acc):
    blk = jax.lax.dynamic_slice_in_dim(x, i * br, br, axis=1)
    local = jnp.asarray(i * br, jnp.uint32) + jnp.arange(br, dtype=jnp.uint32)
    return acc + blk @ sign_rows(proj.seed, row_of(local), proj.dim)

  # Zeros derived from x, so under shard_map the carry varies like x does.
  acc0 = jnp.zeros((m, proj.dim), jnp.float32) + 0.0 * x[:, :1]
  return jax.lax.fori_loop(0, nb, body, acc0)


def _axes(entry) -> tuple[str, ...]:
  return () if entry is None else (tuple(entry) if isinstance(entry, (tuple, list)) else (entry,))


def _project_sharded(proj: Projection, x, row0: int, sharding: NamedSharding):
  """One leaf `[m, *shape]`, each device projecting the rows it holds."""
  mesh, shape = sharding.mesh, x.shape[1:]
  spec = tuple(sharding.spec) + (None,) * (len(shape) - len(sharding.spec))
  used = tuple(a for entry in spec for a in _axes(entry))
  gstride = np.cumprod((1,) + shape[:0:-1])[::-1].astype(np.uint32)  # C-order strides

  def local(xl):
    lshape = xl.shape[1:]
    lstride = np.cumprod((1,) + lshape[:0:-1])[::-1].astype(np.uint32)
    starts = []
    for d, entry in enumerate(spec):
      index = jnp.uint32(0)
      for a in _axes(entry):  # a tuple entry splits the dimension major-to-minor
        index = index * jnp.uint32(mesh.shape[a]) + jax.lax.axis_index(a).astype(jnp.uint32)
      starts.append(index * jnp.uint32(lshape[d]))

    def row_of(j):
      row = jnp.asarray(row0, jnp.uint32)
      for d in range(len(lshape)):
        coord = (j // jnp.uint32(lstride[d])) % jnp.uint32(lshape[d])
        row = row + (starts[d] + coord) * jnp.uint32(gstride[d])
      return row

    acc = _project_flat(proj, xl.reshape(xl.shape[0], -1), row_of)
    return jax.lax.psum(acc, used) if used else acc

  return jax.shard_map(local, mesh=mesh, in_specs=PartitionSpec(None, *spec),
                       out_specs=PartitionSpec())(
                           x)


def project(proj: Projection, g, shardings: Optional[dict] = None):
  """`[m, K]` projections of per-example gradients `g` (leaves `[m, ...]`).

  `shardings`: `{lora path: NamedSharding}` of the parameters; when given,
  each device projects its own rows (see module doc).
  """
  flat = paths.flatten(g)
  acc, row0 = 0.0, 0
  for path in subset(proj, jax.tree.map(lambda x: x[0], g)):
    x = flat[path]
    size = int(np.prod(x.shape[1:]))
    if row0 + size >= 2**32:
      raise ValueError(f"projection over more than {row0 + size} parameters exceeds the "
                       "2^32 row counter; narrow train.projection_targets")
    if shardings is None:
      acc = acc + _project_flat(proj, x.reshape(x.shape[0], -1),
                                lambda j, r0=row0: jnp.uint32(r0) + j)
    else:
      acc = acc + _project_sharded(proj, x, row0, shardings[path])
    row0 += size
  return acc / math.sqrt(proj.dim)
