"""Fixed-shape batches gathered from a Pool by index, the batch contract of jit.

    tokens_BxL         int32, right padded with the pool's pad id
    attention_mask_BxL bool, True on real tokens
    loss_mask_BxL      bool, True where tokens[t] is a response token to predict
    is_pad_B           bool, True on padding rows (all-masked)
    index_B            int32, pool index of each row, -1 on padding rows
Rows beyond len(index_B) are padding, so B is always `batch_size`. L is
`length` when given, else the smallest of the pool's buckets that fits the
longest row, so jit sees at most len(buckets) shapes.
"""

from __future__ import annotations

import numpy as np

from lead_jax.data.pool import Pool

VIEWS = ("full", "response")


def choose_length(buckets: tuple[int, ...], longest: int) -> int:
  """Smallest bucket >= longest (buckets sorted ascending)."""
  for b in buckets:
    if b >= longest:
      return b
  raise ValueError(f"a row of {longest} tokens is longer than every bucket {buckets}")


def gather(pool: Pool, index_B, batch_size: int, length: int | None = None,
           view: str = "full") -> dict[str, np.ndarray]:
  """The batch of rows `index_B` (see module doc); view "response" = IFD response only."""
  if view not in VIEWS:
    raise ValueError(f"view={view!r}; use one of {VIEWS}")
  index = np.asarray(index_B, dtype=np.int64).reshape(-1)
  if len(index) > batch_size:
    raise ValueError(f"{len(index)} indices for a batch of {batch_size}")
  if len(index) and (index.min() < 0 or index.max() >= len(pool)):
    raise IndexError(f"pool index out of range [0, {len(pool)}): {index}")
  row_len = (pool.length_N if view == "full" else pool.view_length_N)[index]
  longest = int(row_len.max(initial=0))
  if length is None:
    length = choose_length(pool.buckets or (pool.max_length,), longest)
  elif longest > length:
    raise ValueError(f"a row of {longest} tokens does not fit length={length}")
  if view == "full":
    tokens, loss = _gather_full(pool, index, row_len, length)
  else:
    tokens, loss = _gather_view(pool, index, length)
  n, pad_rows = len(index), batch_size - len(index)
  attention = np.arange(length)[None, :] < row_len[:, None]
  return {
      "tokens_BxL":
          _pad_rows(np.where(attention, tokens, pool.pad_id), pad_rows,
                    pool.pad_id).astype(np.int32),
      "attention_mask_BxL":
          _pad_rows(attention, pad_rows, False),
      "loss_mask_BxL":
          _pad_rows(loss & attention, pad_rows, False),
      "is_pad_B":
          np.arange(batch_size) >= n,
      "index_B":
          np.concatenate([index, np.full(pad_rows, -1)]).astype(np.int32),
  }


def _gather_full(pool: Pool, index, row_len, length: int):
  pos_BxL = pool.start_N[index][:, None] + np.arange(length)[None, :]
  pos_BxL = np.minimum(pos_BxL, max(len(pool.tokens_F) - 1, 0))
  return pool.tokens_F[pos_BxL], pool.loss_mask_F[pos_BxL]


def _gather_view(pool: Pool, index, length: int):
  tokens = np.full((len(index), length), pool.pad_id, np.int32)
  loss = np.zeros((len(index), length), bool)
  for r, i in enumerate(index):
    t, m = pool.row(int(i), "response")
    tokens[r, :len(t)], loss[r, :len(m)] = t, m
  return tokens, loss


def _pad_rows(x_BxL: np.ndarray, rows: int, value) -> np.ndarray:
  pad = np.full((rows,) + x_BxL.shape[1:], value, x_BxL.dtype)
  return np.concatenate([x_BxL, pad]) if rows else x_BxL


def length_buckets(pool: Pool, index_N, view: str = "full") -> np.ndarray:
  """The bucket each sample lands in alone; to group indices of similar length."""
  lengths = (pool.length_N if view == "full" else pool.view_length_N)[np.asarray(index_N)]
  buckets = np.asarray(pool.buckets or (pool.max_length,))
  return buckets[np.searchsorted(buckets, lengths)]
