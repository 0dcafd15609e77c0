"""Packed batches for forward-only passes: several samples per row, static shapes.

`first_fit` places samples into rows of L tokens, first-fit decreasing: the
longest sample first (ties by position), each into the lowest-numbered row
with room for it and fewer than G samples, else into a new row. `pack` does
so for one view of a set of pool samples, `batches` cuts its rows into calls
of B rows (`gather` builds one):

    tokens_BxL     int32, the pool's pad id after the last segment
    segment_BxL    int32, 0 on padding, 1..n on the n samples of the row, in order
    positions_BxL  int32, restarting at 0 at the first token of every segment
    loss_mask_BxL  bool, True where tokens[t] is a response token to predict
    is_pad_B       bool, True on rows holding no sample (the last call's tail)
    sample_BxG     int32, position into `ids_N` of segment g + 1 of the row, -1 if none
    index_BxG      int32, pool index of that sample, -1 if none
B, L and G are fixed per pass, so jit sees one shape per (L, G). A sample is
never split, so its tokens, mask and positions are those of its unpacked row;
a model that attends within segments (`lead_jax.model.decoder.forward(segment_BxL=)`)
sees each sample as if it were alone.
"""

from __future__ import annotations

import dataclasses
import heapq
from typing import Iterator

import numpy as np

from lead_jax.data.batching import VIEWS, choose_length
from lead_jax.data.pool import Pool


@dataclasses.dataclass(frozen=True)
class Packing:
  """Where every sample goes: row `row_N[i]`, slots `offset_N[i]` on, segment
  `segment_N[i]` (1-based) of that row."""
  row_N: np.ndarray  # int64
  offset_N: np.ndarray  # int64
  segment_N: np.ndarray  # int32
  num_rows: int
  length: int  # L
  max_segments: int  # G

  def num_batches(self, batch_size: int) -> int:
    return -(-self.num_rows // batch_size)


def first_fit(length_N, length: int, max_segments: int) -> Packing:
  """First-fit decreasing of samples of `length_N` tokens into rows of `length`
  tokens holding at most `max_segments` samples each (see module doc)."""
  length_N = np.asarray(length_N, np.int64).reshape(-1)
  if max_segments < 1:
    raise ValueError(f"max_segments={max_segments} must be positive")
  if len(length_N) and (length_N.min() < 1 or length_N.max() > length):
    raise ValueError(f"sample lengths must lie in [1, {length}]: got "
                     f"[{length_N.min()}, {length_N.max()}]")
  n = len(length_N)
  row_N, offset_N = np.zeros(n, np.int64), np.zeros(n, np.int64)
  segment_N = np.zeros(n, np.int32)
  # Open rows by free space: heaps of row numbers, and the smallest row of each
  # heap (inf if empty), so the first fit is an argmin over free >= length.
  by_free = [[] for _ in range(length + 1)]
  first_C = np.full(length + 1, np.iinfo(np.int64).max, np.int64)
  free, used, rows = [], [], 0
  for i in np.argsort(-length_N, kind="stable"):
    need = int(length_N[i])
    c = need + int(np.argmin(first_C[need:]))
    if first_C[c] == np.iinfo(np.int64).max:
      r, rows = rows, rows + 1
      free.append(length)
      used.append(0)
    else:
      r = heapq.heappop(by_free[c])
      first_C[c] = by_free[c][0] if by_free[c] else np.iinfo(np.int64).max
    row_N[i], offset_N[i] = r, length - free[r]
    used[r] += 1
    segment_N[i] = used[r]
    free[r] -= need
    if used[r] < max_segments and free[r] > 0:
      heapq.heappush(by_free[free[r]], r)
      first_C[free[r]] = by_free[free[r]][0]
  return Packing(row_N, offset_N, segment_N, rows, length, max_segments)


def _ranges(starts_N, lengths_N):
  """The concatenation of `arange(s, s + n)` over (s, n), and each element's rank."""
  lengths_N = np.asarray(lengths_N, np.int64)
  begin = np.concatenate([[0], np.cumsum(lengths_N)[:-1]]).astype(np.int64)
  rank = np.arange(int(lengths_N.sum())) - np.repeat(begin, lengths_N)
  return np.repeat(np.asarray(starts_N, np.int64), lengths_N) + rank, rank


def view_lengths(pool: Pool, index_N, view: str) -> np.ndarray:
  """Tokens of each sample in `view` ("full" or IFD's "response" only view)."""
  if view not in VIEWS:
    raise ValueError(f"view={view!r}; use one of {VIEWS}")
  return (pool.length_N if view == "full" else pool.view_length_N)[np.asarray(index_N)]


def _view_tokens(pool: Pool, index_N, view: str):
  """Flat pool positions of the view tokens of samples `index_N`, concatenated."""
  src, _ = _ranges(pool.start_N[index_N], pool.length_N[index_N])
  return src if view == "full" else src[pool.view_mask_F[src]]


def gather(pool: Pool, ids_N, packing: Packing, rows: range, batch_size: int,
           view: str = "full") -> dict[str, np.ndarray]:
  """The packed batch of rows `rows` (at most `batch_size`) of `packing`, a
  packing of the samples `ids_N` (pool indices) in `view` (see module doc)."""
  ids_N = np.asarray(ids_N, np.int64)
  if len(rows) > batch_size:
    raise ValueError(f"{len(rows)} rows for a batch of {batch_size}")
  b, l, g = batch_size, packing.length, packing.max_segments
  pos = np.flatnonzero((packing.row_N >= rows.start) & (packing.row_N < rows.stop))
  index = ids_N[pos]
  lens = view_lengths(pool, index, view)
  row = packing.row_N[pos] - rows.start
  dst, rank = _ranges(row * l + packing.offset_N[pos], lens)
  src = _view_tokens(pool, index, view)
  tokens = np.full(b * l, pool.pad_id, np.int32)
  loss = np.zeros(b * l, bool)
  segment, positions = np.zeros(b * l, np.int32), np.zeros(b * l, np.int32)
  tokens[dst], loss[dst] = pool.tokens_F[src], pool.loss_mask_F[src]
  segment[dst], positions[dst] = np.repeat(packing.segment_N[pos], lens), rank
  sample, pool_index = np.full((b, g), -1, np.int32), np.full((b, g), -1, np.int32)
  sample[row, packing.segment_N[pos] - 1] = pos
  pool_index[row, packing.segment_N[pos] - 1] = index
  return {
      "tokens_BxL": tokens.reshape(b, l), "segment_BxL": segment.reshape(b, l),
      "positions_BxL": positions.reshape(b, l), "loss_mask_BxL": loss.reshape(b, l),
      "is_pad_B": np.arange(b) >= len(rows), "sample_BxG": sample, "index_BxG": pool_index
  }


def pack(pool: Pool, ids_N, view: str = "full", *, max_segments: int,
         length: int | None = None) -> Packing:
  """The packing of samples `ids_N` (pool indices) in `view`; L is `length`
  when given, else the smallest of the pool's buckets that fits the longest."""
  ids_N = np.asarray(ids_N, np.int64).reshape(-1)
  if len(ids_N) and (ids_N.min() < 0 or ids_N.max() >= len(pool)):
    raise IndexError(f"pool index out of range [0, {len(pool)}): {ids_N}")
  lens = view_lengths(pool, ids_N, view)
  if length is None:
    length = choose_length(pool.buckets or (pool.max_length,), int(lens.max(initial=1)))
  return first_fit(np.maximum(lens, 1), length, max_segments)  # an empty view keeps a slot


def batches(pool: Pool, ids_N, packing: Packing, batch_size: int,
            view: str = "full") -> Iterator[dict[str, np.ndarray]]:
  """The packed batches of `batch_size` rows of `packing` (of `ids_N` in
  `view`, `pack`): every sample exactly once, in ceil(rows / B) batches."""
  for start in range(0, packing.num_rows, batch_size):
    yield gather(pool, ids_N, packing, range(start, min(start + batch_size, packing.num_rows)),
                 batch_size, view)
