"""Fixed-shape batches: the jit contract, padding rows, buckets, determinism, IFD view."""

import json

import numpy as np
import pytest

from configs import base_data
from lead_jax.model import tokenizer as tokenizer_lib
from lead_jax.data import choose_length, gather, length_buckets, load_pool


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
  path = tmp_path_factory.mktemp("pool") / "p.jsonl"
  rows = [{
      "dataset":
          "t", "id":
              str(i), "messages": [{"role": "user", "content": "q" * (3 + 7 * i)},
                                   {"role": "assistant", "content": "a" * (1 + i)}]
  } for i in range(6)]
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  c = base_data.get()
  c.max_length, c.buckets = 64, (16, 32)
  return load_pool(c, tokenizer_lib.byte_level(), path=str(path))


def test_batch_contract(pool):
  batch = gather(pool, [2, 0, 1], batch_size=5)
  assert set(batch) == {"tokens_BxL", "attention_mask_BxL", "loss_mask_BxL", "is_pad_B", "index_B"}
  dtypes = {k: v.dtype for k, v in batch.items()}
  assert dtypes == {
      "tokens_BxL": np.int32, "attention_mask_BxL": bool, "loss_mask_BxL": bool, "is_pad_B": bool,
      "index_B": np.int32
  }
  assert batch["tokens_BxL"].shape == (5, 32)  # longest row 29 -> bucket 32
  assert list(batch["is_pad_B"]) == [False, False, False, True, True]
  assert list(batch["index_B"]) == [2, 0, 1, -1, -1]
  for r, i in enumerate([2, 0, 1]):
    n = pool.length_N[i]
    tokens, loss = pool.row(i)
    np.testing.assert_array_equal(batch["tokens_BxL"][r, :n], tokens)
    assert batch["attention_mask_BxL"][r].sum() == n  # right padding
    assert batch["attention_mask_BxL"][r, :n].all()
    assert (batch["tokens_BxL"][r, n:] == pool.pad_id).all()
    np.testing.assert_array_equal(batch["loss_mask_BxL"][r, :n], loss)
  pads = batch["is_pad_B"]
  assert not batch["attention_mask_BxL"][pads].any() and not batch["loss_mask_BxL"][pads].any()
  assert (batch["tokens_BxL"][pads] == pool.pad_id).all()


def test_loss_mask_marks_response_tokens(pool):
  batch = gather(pool, [3], batch_size=1)
  tokens = batch["tokens_BxL"][0][batch["loss_mask_BxL"][0]]
  assert list(tokens) == [ord("a")] * 4 + [256]  # the response and eos


def test_buckets_and_explicit_length(pool):
  assert gather(pool, [0], 2)["tokens_BxL"].shape == (2, 16)
  assert gather(pool, [5], 2)["tokens_BxL"].shape == (2, 64)
  assert gather(pool, [0], 2, length=48)["tokens_BxL"].shape == (2, 48)
  assert gather(pool, [], 3)["is_pad_B"].all()
  assert choose_length((16, 32, 64), 17) == 32
  assert list(length_buckets(pool, range(6))) == [16, 32, 32, 64, 64, 64]
  with pytest.raises(ValueError, match="does not fit"):
    gather(pool, [5], 2, length=16)
  with pytest.raises(ValueError, match="indices for a batch of 1"):
    gather(pool, [0, 1], 1)
  with pytest.raises(IndexError):
    gather(pool, [6], 2)


def test_deterministic(pool):
  a = gather(pool, [4, 1], 4)
  b = gather(pool, np.array([4, 1]), 4)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])


def test_response_view(pool):
  batch = gather(pool, [3, 1], 3, view="response")
  assert batch["tokens_BxL"].shape == (3, 16)
  for r, i in enumerate([3, 1]):
    tokens, loss = pool.row(i, "response")
    n = pool.view_length_N[i]
    assert n == len(tokens) == 2 + (2 + i)  # header (2) + response + eos
    np.testing.assert_array_equal(batch["tokens_BxL"][r, :n], tokens)
    np.testing.assert_array_equal(batch["loss_mask_BxL"][r, :n], loss)
    assert batch["attention_mask_BxL"][r].sum() == n
  full = gather(pool, [3, 1], 3)
  assert batch["loss_mask_BxL"].sum() == full["loss_mask_BxL"].sum()  # same targets
