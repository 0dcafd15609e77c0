"""KV-cache decoding against full forward passes, sampling, EOS and stop strings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lead_jax.model import decoding
from lead_jax.model import lora
from lead_jax.model import decoder as model
from lead_jax.model import tokenizer as tokenizer_lib

PROMPTS = ["ab", "hello wor", "x", "the cat s"]
BUCKET = 16
MAX_NEW = 6


@pytest.fixture(scope="module")
def tok():
  return tokenizer_lib.byte_level()


@pytest.fixture(scope="module")
def tiny(tok):
  """Tiny random model with non-zero (unmerged) LoRA adapters."""
  lora_cfg = lora.LoraConfig(rank=4, alpha=8.0)
  config = model.ModelConfig(
      vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
      num_kv_heads=2, head_dim=8, lora=lora_cfg)
  params = model.init(config, jax.random.PRNGKey(0))
  adapters = lora.init(lora_cfg, params["params"], jax.random.PRNGKey(1))
  adapters = jax.tree_util.tree_map(
      lambda x: jax.random.normal(jax.random.PRNGKey(2), x.shape) * 0.3, adapters)
  return config, {"params": params["params"], "lora": adapters}


@pytest.fixture(scope="module")
def batch(tok):
  ids = [tok.encode(p) for p in PROMPTS]
  tokens, mask = decoding.left_pad(ids, BUCKET, tok.pad_token_id)
  return ids, jnp.asarray(tokens), jnp.asarray(mask)


def _run(tiny, batch, key=0, **kw):
  config, params = tiny
  _, tokens, mask = batch
  eos = np.full((4,), -1, np.int32)  # fixed size: one compile for every EOS set
  eos_ids = kw.pop("eos_ids", ())
  eos[:len(eos_ids)] = eos_ids
  out, steps = decoding.generate(config, params, tokens, mask, jax.random.PRNGKey(key),
                                 kw.pop("temperature", 0.0), kw.pop("top_p", 1.0), eos,
                                 max_new_tokens=MAX_NEW, pad_id=257, **kw)
  return np.asarray(out), int(steps)


def _greedy_full_forward(config, params, ids_list, n):
  """Greedy by repeated full forward passes over a right-padded fixed buffer."""
  forward = jax.jit(model.forward, static_argnums=0)
  length = max(len(ids) for ids in ids_list) + n
  seqs = [list(ids) for ids in ids_list]
  for _ in range(n):
    tokens = np.zeros((len(seqs), length), np.int32)
    mask = np.zeros((len(seqs), length), bool)
    for r, ids in enumerate(seqs):
      tokens[r, :len(ids)], mask[r, :len(ids)] = ids, True
    logits = np.asarray(forward(config, params, tokens, mask))
    for r, ids in enumerate(seqs):
      ids.append(int(logits[r, len(ids) - 1].argmax()))
  return [ids[-n:] for ids in seqs]


def test_cached_greedy_equals_full_forward_greedy(tiny, batch):
  config, params = tiny
  ids, _, _ = batch
  out, steps = _run(tiny, batch, prefill_chunk=4)  # 4 prefill chunks of 4 slots
  assert steps == MAX_NEW
  assert out.tolist() == _greedy_full_forward(config, params, ids, MAX_NEW)


def test_adapters_change_the_generation(tiny, batch):
  config, params = tiny
  base_only = {"params": params["params"]}
  base_config = model.ModelConfig(**{**config.__dict__, "lora": None})
  _, tokens, mask = batch
  out_base, _ = decoding.generate(base_config, base_only, tokens, mask, jax.random.PRNGKey(0),
                                  max_new_tokens=MAX_NEW, pad_id=257)
  out_lora, _ = _run(tiny, batch)
  assert not np.array_equal(np.asarray(out_base), out_lora)


def test_sampling_is_deterministic_for_a_key(tiny, batch):
  a, _ = _run(tiny, batch, key=3, temperature=1.0, top_p=0.95)
  b, _ = _run(tiny, batch, key=3, temperature=1.0, top_p=0.95)
  c, _ = _run(tiny, batch, key=4, temperature=1.0, top_p=0.95)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_low_temperature_and_tiny_top_p_equal_greedy(tiny, batch):
  greedy, _ = _run(tiny, batch)
  cold, _ = _run(tiny, batch, key=5, temperature=1e-4, top_p=1.0)
  narrow, _ = _run(tiny, batch, key=6, temperature=1.5, top_p=1e-6)
  np.testing.assert_array_equal(cold, greedy)
  np.testing.assert_array_equal(narrow, greedy)


def test_sample_logits_top_p_keeps_the_nucleus():
  logits = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]]))
  keys = jax.random.split(jax.random.PRNGKey(0), 400)
  draws = np.asarray(jax.vmap(lambda k: decoding.sample_logits(logits, k, 1.0, 0.7))(keys))
  assert set(draws.ravel().tolist()) == {0, 1}  # 0.5 < 0.7 <= 0.8: tokens 0 and 1 only


def test_eos_stops_rows_and_the_loop(tiny, batch, tok):
  ids, _, _ = batch
  greedy, _ = _run(tiny, batch)
  eos = int(greedy[0, 2])  # row 0 emits this at step 2
  out, _ = _run(tiny, batch, eos_ids=(eos, 999))
  first = out[0].tolist().index(eos)
  assert first <= 2 and all(t == 257 for t in out[0, first + 1:])
  texts = decoding.completions(tok, ids, out, (eos,))
  assert texts[0] == tok.decode(out[0, :first].tolist())
  # Every row stops at its first token: the loop runs a single step.
  _, steps = _run(tiny, batch, eos_ids=tuple(sorted(set(greedy[:, 0].tolist()))))
  assert steps == 1


def test_stop_strings_are_trimmed_per_row(tok):
  prompts = [tok.encode("p1"), tok.encode("q")]
  new = [tok.encode("abc\nclass X") + [256], tok.encode("def f():\n  return 1\nif x")]
  width = max(len(n) for n in new)
  tokens = np.full((2, width), 257, np.int32)
  for row, n in enumerate(new):
    tokens[row, :len(n)] = n
  texts = decoding.completions(tok, prompts, tokens, (256,), ["\nclass", "\nif", "\ndef"])
  assert texts == ["abc", "def f():\n  return 1"]
  assert decoding.trim_at_stop("x\nprint\nif", ["\nif", "\nprint"]) == "x"


def test_stop_sequences_exit_the_loop_early(tiny, batch):
  greedy, _ = _run(tiny, batch)
  seqs = tuple(sorted({tuple(greedy[r, 1:3].tolist()) for r in range(len(PROMPTS))}))
  early, steps = _run(tiny, batch, stop_seqs=seqs)
  assert steps <= 3
  for row in range(len(PROMPTS)):
    hit = next(i for i in range(1, MAX_NEW) if tuple(greedy[row, i - 1:i + 1]) in seqs)
    np.testing.assert_array_equal(early[row, :hit + 1], greedy[row, :hit + 1])
    assert (early[row, hit + 1:] == 257).all()


def test_stop_sequences_longer_than_the_budget_are_ignored(tiny, batch):
  greedy, _ = _run(tiny, batch)
  out, steps = _run(tiny, batch, stop_seqs=(tuple(range(MAX_NEW + 1)),))
  np.testing.assert_array_equal(out, greedy)
  assert steps == MAX_NEW


def test_stop_token_seqs_spell_the_stop_strings(tok):
  assert decoding.stop_token_seqs(tok, ["\nclass", "\n#"]) == (tuple(b"\nclass"), tuple(b"\n#"))


def test_generate_traces_once_per_shape(tiny, batch, tok):
  config, params = tiny
  traces = []

  def counted(config, *args, **kwargs):
    traces.append(1)
    return decoding._generate(config, *args, **kwargs)

  fn = jax.jit(counted, static_argnums=0, static_argnames=("max_new_tokens", "pad_id"))
  other = [tok.encode(p) for p in ["zz", "a longer prompt", "q", ""]]
  for i, prompt_ids in enumerate([batch[0], other]):
    tokens, mask = decoding.left_pad(prompt_ids, BUCKET, 257)
    fn(config, params, tokens, mask, jax.random.PRNGKey(i), 0.3 * i, 0.9,
       np.asarray([256, 257 + i]), max_new_tokens=MAX_NEW, pad_id=257)
  assert len(traces) == 1


def test_left_pad_rejects_long_prompts_and_pads_rows():
  tokens, mask = decoding.left_pad([[1, 2], [3]], 4, 0, batch=3)
  np.testing.assert_array_equal(tokens, [[0, 0, 1, 2], [0, 0, 0, 3], [0, 0, 0, 0]])
  assert mask.sum(1).tolist() == [2, 1, 0]
  with pytest.raises(ValueError, match="bucket length"):
    decoding.left_pad([[1, 2, 3]], 2, 0)


def test_next_token_logits_match_forward(tiny, batch):
  config, params = tiny
  ids, tokens, mask = batch
  got = decoding.next_token_logits(config, params, tokens, mask, prefill_chunk=8)
  right = np.zeros((len(ids), BUCKET), np.int32)
  for row, prompt in enumerate(ids):
    right[row, :len(prompt)] = prompt
  logits = jax.jit(model.forward, static_argnums=0)(config, params, right, right > 0)
  for row, prompt in enumerate(ids):
    np.testing.assert_allclose(got[row], logits[row, len(prompt) - 1], atol=1e-4)
