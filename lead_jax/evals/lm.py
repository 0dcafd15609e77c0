"""The model as a function of token prompts: batched, bucketed, jitted.

Evaluators hand over lists of prompt token ids; this module sorts them by
length, cuts fixed-size batches (the last one filled with empty rows), left
pads each batch to a power-of-two bucket (at least `MIN_BUCKET`), and calls
the jitted scoring or decoding function, so the number of compilations is
bounded by the number of distinct buckets. Results come back in the input
order. Parameters may carry unmerged LoRA adapters.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from lead_jax.model import decoding
from lead_jax.model import decoder as model_lib
from lead_jax.data import templates

MIN_BUCKET = 64  # shortest padded prompt length
EOS_SLOTS = 8  # EOS ids are passed as a fixed-size array (-1 filled): one compile


def bucket_length(n: int) -> int:
  """Smallest power of two >= n and >= MIN_BUCKET."""
  return max(MIN_BUCKET, 1 << max(0, int(n) - 1).bit_length())


def chat_prompt_ids(template, tokenizer, user_text: str, answer_prefix: str = "") -> list[int]:
  """A one-turn chat prompt up to the assistant header, then `answer_prefix`.

  The prompt tokens are the data layer's (exactly those seen in training);
  the prefix is joined with a space unless the header ends in a newline or
  space, as open-instruct does.
  """
  messages = [("user", user_text)]
  ids = templates.encode_prompt(template, tokenizer, messages)
  if not answer_prefix:
    return ids
  text = templates.prompt_text(template, tokenizer, messages)
  suffix = answer_prefix if text[-1] in "\n " else " " + answer_prefix
  return ids + templates.tokenize(tokenizer, [suffix])[0]


def _batches(prompt_ids: Sequence[Sequence[int]], batch_size: int):
  """(indices, padded tokens, mask) per batch, shortest prompts first."""
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size}; use a positive batch size")
  empty = [i for i, ids in enumerate(prompt_ids) if not len(ids)]
  if empty:
    raise ValueError(f"prompts {empty[:5]} are empty; every prompt needs at least one token")
  order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
  for start in range(0, len(order), batch_size):
    idx = order[start:start + batch_size]
    rows = [prompt_ids[i] for i in idx]
    tokens, mask = decoding.left_pad(rows, bucket_length(max(len(r) for r in rows)), 0,
                                     batch=batch_size)
    yield idx, tokens, mask


@functools.partial(jax.jit, static_argnames=("config",))
def _candidate_probs(config, params, tokens_BxP, mask_BxP, candidates_C):
  logits_BxV = decoding.next_token_logits(config, params, tokens_BxP, mask_BxP)
  return jax.nn.softmax(logits_BxV, axis=-1)[:, candidates_C]


def next_token_probs(config: model_lib.ModelConfig, params, prompt_ids, candidate_ids, *,
                     batch_size: int, desc: str = "scoring") -> np.ndarray:
  """`[N, C]` probabilities (softmax over the whole vocabulary) of the candidates."""
  out = np.zeros((len(prompt_ids), len(candidate_ids)), np.float32)
  candidates = jnp.asarray(candidate_ids, jnp.int32)
  total = -(-len(prompt_ids) // batch_size)
  for idx, tokens, mask in tqdm.tqdm(
      _batches(prompt_ids, batch_size), total=total, desc=desc, leave=False, disable=None):
    probs = _candidate_probs(config, params, tokens, mask, candidates)
    out[idx] = jax.device_get(probs)[:len(idx)]
  return out


def generate(config: model_lib.ModelConfig, params, tokenizer, prompt_ids, key, *, batch_size: int,
             max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
             stop_strings: Sequence[str] = (), extra_eos_ids: Sequence[int] = (),
             desc: str = "generating", stats: Optional[dict] = None) -> list[str]:
  """Continuations of every prompt, cut at EOS and at the first stop string.

  EOS ids are the model's, the tokenizer's and `extra_eos_ids` (e.g. a chat
  template's end-of-turn token). Batch j samples with `fold_in(key, j)`.
  `stats`, when given, accumulates `decode_token_passes`: decoding steps run
  times the batch's real rows (one token through the model per step and row,
  rows that stopped early included: the batch decodes in lockstep).
  """
  eos = sorted(set(decoding.eos_ids_for(config, tokenizer)) | set(int(e) for e in extra_eos_ids))
  if len(eos) > EOS_SLOTS:
    raise ValueError(f"{len(eos)} EOS ids {eos}; at most {EOS_SLOTS} are supported")
  eos_E = np.full((EOS_SLOTS,), -1, np.int32)
  eos_E[:len(eos)] = eos
  stop_seqs = decoding.stop_token_seqs(tokenizer, stop_strings)
  pad_id = decoding.pad_id_for(tokenizer)
  texts = [""] * len(prompt_ids)
  total = -(-len(prompt_ids) // batch_size)
  for j, (idx, tokens, mask) in enumerate(
      tqdm.tqdm(
          _batches(prompt_ids, batch_size), total=total, desc=desc, leave=False, disable=None)):
    new, steps = decoding.generate(config, params, tokens, mask, jax.random.fold_in(key, j),
                                   temperature, top_p, eos_E, max_new_tokens=max_new_tokens,
                                   pad_id=pad_id, stop_seqs=stop_seqs)
    new, steps = jax.device_get((new, steps))
    if stats is not None:
      stats["decode_token_passes"] = stats.get("decode_token_passes", 0) + int(steps) * len(idx)
    for row, text in enumerate(
        decoding.completions(tokenizer, [prompt_ids[i] for i in idx], new[:len(idx)], eos,
                             stop_strings)):
      texts[idx[row]] = text
  return texts
