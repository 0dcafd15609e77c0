"""Batched scoring and generation over prompts: order, padding and buckets do not matter."""

import jax
import numpy as np
import pytest

from lead_jax.model import decoding
from lead_jax.model import decoder as model
from lead_jax.evals import lm

PROMPTS = [
    "Question: 2+2?\nAnswer:", "hi", "a much longer prompt than the others, with words", "x y z",
    "The capital of France is"
]


def test_bucket_length():
  assert [lm.bucket_length(n) for n in (1, 64, 65, 128, 129, 3000)] == [64, 64, 128, 128, 256, 4096]


def test_next_token_probs_match_unpadded_forward(tiny, tok):
  config, params = tiny
  ids = [tok.encode(p) for p in PROMPTS]
  cands = [65, 66, 67, 68]
  got = lm.next_token_probs(config, params, ids, cands, batch_size=2)  # 3 batches, last partial
  right = np.zeros((len(ids), 64), np.int32)  # right padded: causal attention ignores the pad
  for row, prompt in enumerate(ids):
    right[row, :len(prompt)] = prompt
  logits = jax.jit(model.forward, static_argnums=0)(config, params, right)
  for row, prompt in enumerate(ids):
    want = np.asarray(jax.nn.softmax(logits[row, len(prompt) - 1]))[cands]
    np.testing.assert_allclose(got[row], want, rtol=1e-4, atol=1e-7)


def test_generate_matches_one_prompt_at_a_time(tiny, tok):
  config, params = tiny
  ids = [tok.encode(p) for p in PROMPTS]
  key = jax.random.PRNGKey(0)
  batched = lm.generate(config, params, tok, ids, key, batch_size=4, max_new_tokens=5)
  singles = []
  for prompt in ids:
    tokens, mask = decoding.left_pad([prompt], lm.bucket_length(len(prompt)), 0)
    out, _ = decoding.generate(config, params, tokens, mask, key, 0.0, 1.0, np.asarray([256]),
                               max_new_tokens=5, pad_id=257)
    singles.append(decoding.completions(tok, [prompt], out, (256,))[0])
  assert batched == singles


def test_generate_is_deterministic_for_a_key(tiny, tok):
  config, params = tiny
  ids = [tok.encode(p) for p in PROMPTS[:3]]
  run = lambda k: lm.generate(config, params, tok, ids, jax.random.PRNGKey(k), batch_size=4,
                              max_new_tokens=6, temperature=1.0, top_p=0.9)
  assert run(1) == run(1)
  assert run(1) != run(2)


def test_chat_prompt_ids_follow_the_template(tok, template):
  ids = lm.chat_prompt_ids(template, tok, "What is 2+2?", "Answer:")
  assert tok.decode(ids) == "<|user|>\nWhat is 2+2?\n<|assistant|>\nAnswer:"
  assert lm.chat_prompt_ids(template, tok, "Q") == tok.encode("<|user|>\nQ\n<|assistant|>\n")


def test_empty_prompt_is_rejected(tiny):
  config, params = tiny
  with pytest.raises(ValueError, match="empty"):
    lm.next_token_probs(config, params, [[1], []], [1], batch_size=2)
