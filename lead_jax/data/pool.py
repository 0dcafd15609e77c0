"""The tokenised pool: `Pool`, a frozen set of NumPy arrays, and how it is built.

Layout (ragged, so a pool with a few long samples costs its real token count):
  tokens_F, loss_mask_F, view_mask_F   every sample's tokens, concatenated (F)
  start_N, length_N                    sample i is tokens_F[start_N[i]:][:length_N[i]]
  view_length_N                        tokens in sample i's response-only view
  task_N, task_names                   source task index and names
  ids_N, source_ids                    pool index 0..N-1 and the original string ids
loss_mask is True on response tokens (every assistant turn); view_mask is True
on assistant header + response tokens, the IFD "response only" text.

Truncation rule, for a sample longer than its limit (`data.max_length`, or its
task's entry in `data.max_length_per_task`): split it at the first assistant
header into a prompt part (P tokens) and a response part (R tokens: every
header, response and later turn). The prompt keeps its last
    p = min(P, max(limit - R, limit // 2))
tokens (its tail), the response part its first limit - p tokens (its head):
a long prompt never takes more than half the length from a response that needs
it. A sample left with no response token is excluded and counted.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Sequence

import numpy as np
import tqdm

from lead_jax.data import templates
from lead_jax.data.errors import DataError
from lead_jax.data.formats import Record, Reject


@dataclasses.dataclass(frozen=True, eq=False)
class Pool:
  tokens_F: np.ndarray  # int32
  loss_mask_F: np.ndarray  # bool
  view_mask_F: np.ndarray  # bool
  start_N: np.ndarray  # int64
  length_N: np.ndarray  # int32
  view_length_N: np.ndarray  # int32
  truncated_N: np.ndarray  # bool: the sample was cut to its length limit
  task_N: np.ndarray  # int32, index into task_names
  ids_N: np.ndarray  # int32, the pool index (stable for a given file and config)
  source_ids: np.ndarray  # str, the records' own ids
  task_names: tuple[str, ...]
  max_length: int
  pad_id: int
  buckets: tuple[int, ...] = ()  # batch lengths `gather` chooses from; () = max_length
  fingerprint: str = ""
  stats: dict = dataclasses.field(default_factory=dict)

  def __len__(self) -> int:
    return len(self.length_N)

  def row(self, i: int, view: str = "full") -> tuple[np.ndarray, np.ndarray]:
    """Tokens and loss mask of sample i, in the full or the response-only view."""
    s = slice(self.start_N[i], self.start_N[i] + self.length_N[i])
    tokens, loss = self.tokens_F[s], self.loss_mask_F[s]
    if view == "response":
      keep = self.view_mask_F[s]
      return tokens[keep], loss[keep]
    return tokens, loss

  def arrays(self) -> dict[str, np.ndarray]:
    return {
        f.name: getattr(self, f.name)
        for f in dataclasses.fields(self)
        if isinstance(getattr(self, f.name), np.ndarray)
    }


def truncation_keep(kinds_S: np.ndarray, limit: int) -> np.ndarray:
  """Indices of the tokens a sample keeps under the truncation rule (module doc)."""
  n = len(kinds_S)
  if n <= limit:
    return np.arange(n)
  not_context = np.flatnonzero(kinds_S != templates.CONTEXT)
  p_all = int(not_context[0]) if len(not_context) else n
  r_all = n - p_all
  p = min(p_all, max(limit - r_all, limit // 2))
  r = min(r_all, limit - p)
  return np.concatenate([np.arange(p_all - p, p_all), np.arange(p_all, p_all + r)])


def parse_task_lengths(spec: str, max_length: int) -> dict[str, int]:
  """'task=len,task=len' -> {task: len}, each length in [1, max_length]."""
  out = {}
  for item in filter(None, (s.strip() for s in spec.split(","))):
    task, _, value = item.partition("=")
    if not value.strip().isdigit() or not 0 < int(value) <= max_length:
      raise DataError(f"data.max_length_per_task: {item!r} is not task=N with "
                      f"0 < N <= data.max_length ({max_length}); fix the entry")
    out[task.strip()] = int(value)
  return out


def build(records: Sequence[Record], tokenizer, template: templates.Template, max_length: int,
          task_lengths: dict[str, int] | None = None,
          chunk: int = 8192) -> tuple[Pool, list[Reject]]:
  """Tokenises records into a Pool; returns it and the samples excluded by truncation."""
  task_lengths = task_lengths or {}
  parts, excluded, n_trunc = [], [], 0
  kept_records = []
  with tqdm.tqdm(
      total=len(records), desc="tokenise pool", unit="sample",
      disable=True if len(records) < 4 * chunk else None) as bar:
    for lo in range(0, len(records), chunk):
      batch = records[lo:lo + chunk]
      limits = np.array([task_lengths.get(r.task, max_length) for r in batch])
      tokens, kinds, lengths, trunc = _encode_chunk(batch, tokenizer, template, limits)
      targets = np.add.reduceat((kinds == templates.RESPONSE).astype(np.int64), _starts(lengths))
      has_target = targets > 0
      for r, ok in zip(batch, has_target):
        if ok:
          kept_records.append(r)
        else:
          excluded.append(
              Reject(
                  r.where, "response_truncated", f"{r.where}: id {r.id!r} "
                  "has no response token left after truncation; raise "
                  "data.max_length or shorten the prompt"))
      keep_tok = np.repeat(has_target, lengths)
      parts.append((tokens[keep_tok], kinds[keep_tok], lengths[has_target], trunc[has_target]))
      n_trunc += int(trunc[has_target].sum())
      bar.update(len(batch))
  pool = _assemble(parts, kept_records, max_length, _pad_id(tokenizer))
  stats = {
      "records": len(records), "samples": len(pool), "truncated": n_trunc,
      "excluded_truncated": len(excluded), "tokens": int(pool.length_N.sum())
  }
  return dataclasses.replace(pool, stats=stats), excluded


def _encode_chunk(batch, tokenizer, template, limits_B):
  """Flat tokens and kinds of a chunk of records, each truncated to its limit."""
  segs = [templates.segments(template, tokenizer, r.messages) for r in batch]
  texts = [t for s in segs for t, _ in s]
  unique = list(dict.fromkeys(texts))  # headers and stock prompts repeat: tokenise once
  by_text = dict(zip(unique, templates.tokenize(tokenizer, unique)))
  seg_ids = [by_text[t] for t in texts]
  seg_len = np.fromiter(map(len, seg_ids), np.int64, count=len(seg_ids))
  seg_kind = np.fromiter((k for s in segs for _, k in s), np.int8, count=len(seg_ids))
  tokens = np.fromiter(itertools.chain.from_iterable(seg_ids), np.int32, count=int(seg_len.sum()))
  kinds = np.repeat(seg_kind, seg_len)
  per_sample = np.fromiter(map(len, segs), np.int64, count=len(segs))
  lengths = np.add.reduceat(seg_len, _starts(per_sample)) if len(seg_len) else per_sample
  trunc = lengths > limits_B
  if trunc.any():
    keep = np.ones(len(tokens), bool)
    starts = _starts(lengths)
    for b in np.flatnonzero(trunc):
      s = slice(starts[b], starts[b] + lengths[b])
      mask = np.zeros(lengths[b], bool)
      mask[truncation_keep(kinds[s], int(limits_B[b]))] = True
      keep[s] = mask
    lengths = np.add.reduceat(keep.astype(np.int64), starts)
    tokens, kinds = tokens[keep], kinds[keep]
  return tokens, kinds, lengths.astype(np.int64), trunc


def _starts(lengths: np.ndarray) -> np.ndarray:
  return np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)


def _assemble(parts, records: Sequence[Record], max_length: int, pad_id: int) -> Pool:
  tokens = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int32)
  kinds = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int8)
  length = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.int64)
  trunc = np.concatenate([p[3] for p in parts]) if parts else np.zeros(0, bool)
  view = kinds != templates.CONTEXT
  start = _starts(length) if len(length) else np.zeros(0, np.int64)
  view_length = (
      np.add.reduceat(view.astype(np.int64), start) if len(start) else np.zeros(0, np.int64))
  task_names = tuple(sorted({r.task for r in records}))
  task_index = {t: i for i, t in enumerate(task_names)}
  return Pool(
      tokens_F=tokens.astype(np.int32), loss_mask_F=kinds == templates.RESPONSE, view_mask_F=view,
      start_N=start, length_N=length.astype(np.int32), view_length_N=view_length.astype(np.int32),
      truncated_N=trunc.astype(bool), task_N=np.array([task_index[r.task] for r in records],
                                                      np.int32),
      ids_N=np.arange(len(records), dtype=np.int32), source_ids=np.array([r.id for r in records],
                                                                         dtype=np.str_),
      task_names=task_names, max_length=max_length, pad_id=pad_id)


def _pad_id(tokenizer) -> int:
  for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id):
    if tid is not None:
      return int(tid)
  return 0
