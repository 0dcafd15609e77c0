"""KV-cache decoding: greedy and temperature / top-p sampling inside one jit.

Prompts enter left padded to a fixed bucket length P (`left_pad`), so every
row's last prompt token sits in slot P - 1 and the whole batch decodes in
lockstep; positions come from the attention mask, so padding does not shift
the rotary phases. The cache holds S = P + N slots (N = `max_new_tokens`).

`generate` is one `jax.jit` that runs the prefill (in chunks, so the
`BxTxV` logits of a long prompt never materialise at once) and a
`lax.while_loop` over new tokens. It compiles once per (batch, P, N, stop
ids) and leaves the loop as soon as every row is done: a row is done at one of
the EOS ids or, as an early exit only, at a token sequence that spells a stop
string. Stop strings are applied for real on the host (`completions`), per row
and on decoded text, so the early exit never changes a result.

`temperature` and `top_p` are traced scalars: temperature 0 is greedy, and
changing them does not recompile. Randomness comes from the explicit `key`
only (step i samples with `fold_in(key, i)`).
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lead_jax.model import decoder as model_lib

DEFAULT_PREFILL_CHUNK = 512  # prompt slots per prefill step (bounds the BxTxV logits)


def sample_logits(logits_BxV, key, temperature, top_p):
  """Next token per row: argmax when `temperature` is 0, else top-p sampling.

  Top-p keeps the smallest set of most likely tokens whose probability mass
  reaches `top_p` (the most likely token is always kept).
  """
  logits_BxV = logits_BxV.astype(jnp.float32)
  greedy_B = jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
  scaled_BxV = logits_BxV / jnp.maximum(temperature, 1e-6)
  sorted_BxV = -jnp.sort(-scaled_BxV, axis=-1)
  probs_BxV = jax.nn.softmax(sorted_BxV, axis=-1)
  mass_before_BxV = jnp.cumsum(probs_BxV, axis=-1) - probs_BxV
  keep_B = jnp.maximum(jnp.sum(mass_before_BxV < top_p, axis=-1), 1)
  threshold_B = jnp.take_along_axis(sorted_BxV, keep_B[:, None] - 1, axis=-1)
  filtered_BxV = jnp.where(scaled_BxV >= threshold_B, scaled_BxV, -jnp.inf)
  sampled_B = jax.random.categorical(key, filtered_BxV, axis=-1).astype(jnp.int32)
  return jnp.where(temperature > 0, sampled_B, greedy_B)


def prefill(config: model_lib.ModelConfig, params, tokens_BxP, mask_BxP, cache_len: int,
            chunk: int = DEFAULT_PREFILL_CHUNK):
  """Runs a left-padded prompt into a fresh cache of `cache_len` slots.

  Returns `(logits_BxV at the last prompt slot, cache, kv_valid_BxS)`.
  """
  b, p = tokens_BxP.shape
  mask_BxP = mask_BxP.astype(jnp.bool_)
  positions_BxP = model_lib.positions_from_mask(mask_BxP)
  kv_valid_BxS = jnp.zeros((b, cache_len), jnp.bool_).at[:, :p].set(mask_BxP)
  cache = model_lib.init_cache(config, b, cache_len)
  if p <= chunk or p % chunk:
    chunk = p
  n_chunks = p // chunk

  def step(carry, c):
    cache, _ = carry
    start = c * chunk
    tokens = jax.lax.dynamic_slice_in_dim(tokens_BxP, start, chunk, axis=1)
    positions = jax.lax.dynamic_slice_in_dim(positions_BxP, start, chunk, axis=1)
    logits_BxTxV, cache = model_lib.forward_cached(config, params, tokens, positions, kv_valid_BxS,
                                                   cache, start)
    return (cache, logits_BxTxV[:, -1]), None

  init_logits = jnp.zeros((b, config.vocab_size), jnp.float32)
  (cache, last_logits_BxV), _ = jax.lax.scan(step, (cache, init_logits), jnp.arange(n_chunks))
  return last_logits_BxV, cache, kv_valid_BxS


def _stop_hit(tokens_BxN, i, stop_seqs):
  """True for rows whose tokens up to and including step `i` end with a stop sequence."""
  hit_B = jnp.zeros(tokens_BxN.shape[:1], jnp.bool_)
  for seq in stop_seqs:
    m = len(seq)
    start = jnp.maximum(i - m + 1, 0)
    window_BxM = jax.lax.dynamic_slice_in_dim(tokens_BxN, start, m, axis=1)
    match_B = jnp.all(window_BxM == jnp.asarray(seq, jnp.int32)[None], axis=1)
    hit_B |= match_B & (i + 1 >= m)
  return hit_B


def _generate(config: model_lib.ModelConfig, params, tokens_BxP, mask_BxP, key, temperature=0.0,
              top_p=1.0, eos_ids_E=(-1,), *, max_new_tokens: int, pad_id: int,
              stop_seqs: tuple[tuple[int, ...],
                               ...] = (), prefill_chunk: int = DEFAULT_PREFILL_CHUNK):
  """Unjitted body of `generate`: returns `(tokens_BxN, steps)`.

  `eos_ids_E` is traced (an array of ids; -1 for none), so a model's EOS set
  does not trigger a compile; `stop_seqs` (token tuples) is static. Rows that
  are done are filled with `pad_id`; `steps` is how many loop iterations ran
  (below N when every row stopped early).
  """
  b, p = tokens_BxP.shape
  n = max_new_tokens
  stop_seqs = tuple(s for s in stop_seqs if len(s) <= n)  # longer ones cannot complete
  logits_BxV, cache, kv_valid_BxS = prefill(config, params, tokens_BxP, mask_BxP, p + n,
                                            prefill_chunk)
  prompt_len_B = jnp.sum(mask_BxP.astype(jnp.int32), axis=1)
  eos_E = jnp.asarray(eos_ids_E, jnp.int32).reshape(-1)
  done_B = prompt_len_B == 0  # padding rows of a partial batch never decode
  tokens_BxN = jnp.full((b, n), pad_id, jnp.int32)

  def cond(state):
    i, _, done_B, *_ = state
    return (i < n) & ~jnp.all(done_B)

  def body(state):
    i, tokens_BxN, done_B, logits_BxV, cache, kv_valid_BxS = state
    tok_B = sample_logits(logits_BxV, jax.random.fold_in(key, i), temperature, top_p)
    tok_B = jnp.where(done_B, pad_id, tok_B)
    tokens_BxN = tokens_BxN.at[:, i].set(tok_B)
    done_B = done_B | jnp.isin(tok_B, eos_E) | _stop_hit(tokens_BxN, i, stop_seqs)
    slot = p + i
    kv_valid_BxS = kv_valid_BxS.at[:, slot].set(True)
    logits_Bx1xV, cache = model_lib.forward_cached(config, params, tok_B[:, None],
                                                   (prompt_len_B + i)[:, None], kv_valid_BxS, cache,
                                                   slot)
    return i + 1, tokens_BxN, done_B, logits_Bx1xV[:, 0], cache, kv_valid_BxS

  state = (jnp.int32(0), tokens_BxN, done_B, logits_BxV, cache, kv_valid_BxS)
  steps, tokens_BxN, *_ = jax.lax.while_loop(cond, body, state)
  return tokens_BxN, steps


generate = jax.jit(
    _generate, static_argnames=("config", "max_new_tokens", "pad_id", "stop_seqs", "prefill_chunk"))

# ----------------------------------------------------------------- host side


def left_pad(ids_list: Sequence[Sequence[int]], length: int, pad_id: int,
             batch: Optional[int] = None):
  """Left-pads token lists to `length` (and to `batch` rows with empty rows).

  Returns NumPy `(tokens_BxP int32, mask_BxP bool)`.
  """
  batch = len(ids_list) if batch is None else batch
  if len(ids_list) > batch:
    raise ValueError(f"{len(ids_list)} prompts do not fit a batch of {batch}")
  tokens = np.full((batch, length), pad_id, np.int32)
  mask = np.zeros((batch, length), np.bool_)
  for row, ids in enumerate(ids_list):
    if len(ids) > length:
      raise ValueError(f"prompt {row} has {len(ids)} tokens, more than the bucket length "
                       f"{length}; pick a longer bucket or truncate the prompt")
    if len(ids):
      tokens[row, length - len(ids):] = ids
      mask[row, length - len(ids):] = True
  return tokens, mask


def trim_at_stop(text: str, stop_strings: Sequence[str]) -> str:
  """Cuts `text` at the earliest occurrence of any stop string (which is dropped)."""
  cut = min((i for i in (text.find(s) for s in stop_strings if s) if i >= 0), default=len(text))
  return text[:cut]


def completions(tokenizer, prompt_ids: Sequence[Sequence[int]], tokens_BxN, eos_ids,
                stop_strings: Sequence[str] = ()) -> list[str]:
  """Decoded continuation of each prompt, cut at its first EOS and stop string.

  The text is `decode(prompt + new) minus decode(prompt)`, not `decode(new)`,
  so tokenizers that drop a word-initial space at the start of a decode keep
  it (it matters for code completion).
  """
  tokens_BxN = np.asarray(tokens_BxN)
  eos = set(int(e) for e in eos_ids)
  texts = []
  for row, ids in enumerate(prompt_ids):
    new = [int(t) for t in tokens_BxN[row]]
    end = next((j for j, t in enumerate(new) if t in eos), len(new))
    ids = [int(t) for t in ids]
    prefix = tokenizer.decode(ids, skip_special_tokens=True)
    full = tokenizer.decode(ids + new[:end], skip_special_tokens=True)
    texts.append(trim_at_stop(full[len(prefix):], stop_strings))
  return texts


def stop_token_seqs(tokenizer, stop_strings: Sequence[str]) -> tuple[tuple[int, ...], ...]:
  """Token spellings of the stop strings, for the in-loop early exit.

  A stop string is encoded after a space that is then dropped (so word-initial
  forms match); a spelling is kept only if it decodes back to text that
  contains the stop string, which keeps the early exit a pure optimisation.
  """
  seqs = []
  for s in stop_strings:
    for ids in (tokenizer.encode(s, add_special_tokens=False),
                tokenizer.encode(" " + s, add_special_tokens=False)[1:]):
      ids = tuple(int(t) for t in ids)
      if ids and s in tokenizer.decode(list(ids)) and ids not in seqs:
        seqs.append(ids)
  return tuple(seqs)


def eos_ids_for(config: model_lib.ModelConfig, tokenizer) -> tuple[int, ...]:
  """The model's EOS ids plus the tokenizer's, sorted and deduplicated."""
  ids = set(config.eos_token_ids)
  if tokenizer.eos_token_id is not None:
    ids.add(int(tokenizer.eos_token_id))
  return tuple(sorted(ids))


def pad_id_for(tokenizer) -> int:
  pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
  if pad is None:
    raise ValueError("tokenizer has neither a pad nor an eos token; set tokenizer.pad_token")
  return int(pad)


@functools.partial(jax.jit, static_argnames=("config", "prefill_chunk"))
def next_token_logits(config: model_lib.ModelConfig, params, tokens_BxP, mask_BxP,
                      prefill_chunk: int = DEFAULT_PREFILL_CHUNK):
  """Logits `BxV` for the token after each left-padded prompt (chunked prefill)."""
  logits_BxV, _, _ = prefill(config, params, tokens_BxP, mask_BxP, tokens_BxP.shape[1],
                             prefill_chunk)
  return logits_BxV
