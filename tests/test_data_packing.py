"""Packed batches: first-fit placement, every sample once, static shapes, both views."""

import json

import numpy as np
import pytest

from configs import base_data
from lead_jax.model import tokenizer as tokenizer_lib
from lead_jax.data import load_pool, packing


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
  path = tmp_path_factory.mktemp("pool") / "p.jsonl"
  rows = [{
      "dataset":
          "t", "id":
              str(i), "messages": [{"role": "user", "content": "q" * (3 + (7 * i) % 23)},
                                   {"role": "assistant", "content": "a" * (1 + i % 5)}]
  } for i in range(13)]
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  c = base_data.get()
  c.max_length, c.buckets = 64, (32, 48)
  return load_pool(c, tokenizer_lib.byte_level(), path=str(path))


def test_first_fit_by_hand():
  # longest first: 6 -> row 0 (3 left), 5 -> row 1 (4 left), 4 -> row 1 (full),
  # 3 -> row 0 (full), 2 -> row 2 (new), 1 -> row 2
  p = packing.first_fit([3, 6, 1, 5, 2, 4], length=9, max_segments=4)
  assert p.num_rows == 3
  assert p.row_N.tolist() == [0, 0, 2, 1, 2, 1]
  assert p.offset_N.tolist() == [6, 0, 2, 0, 0, 5]
  assert p.segment_N.tolist() == [2, 1, 2, 1, 1, 2]
  # the first row with room, not the tightest: 1 -> row 0 (3 left), not row 1 (1 left)
  assert packing.first_fit([7, 5, 4, 1], length=10, max_segments=4).row_N.tolist() == [0, 1, 1, 0]
  capped = packing.first_fit([1, 1, 1, 1, 1], length=9, max_segments=2)
  assert capped.row_N.tolist() == [0, 0, 1, 1, 2] and capped.num_rows == 3
  with pytest.raises(ValueError, match="lengths"):
    packing.first_fit([10], length=9, max_segments=2)


def test_first_fit_places_every_sample_once_within_the_row():
  rng = np.random.default_rng(0)
  length_N = rng.integers(1, 21, 500)
  p = packing.first_fit(length_N, length=40, max_segments=6)
  again = packing.first_fit(length_N, length=40, max_segments=6)
  for a, b in zip((p.row_N, p.offset_N, p.segment_N),
                  (again.row_N, again.offset_N, again.segment_N)):
    np.testing.assert_array_equal(a, b)  # deterministic
  assert (p.offset_N + length_N <= 40).all()
  for r in range(p.num_rows):
    mine = np.flatnonzero(p.row_N == r)
    assert 1 <= len(mine) <= 6
    assert sorted(p.segment_N[mine].tolist()) == list(range(1, len(mine) + 1))
    order = mine[np.argsort(p.offset_N[mine])]  # segments tile the row without overlap
    ends = np.concatenate([[0], (p.offset_N + length_N)[order][:-1]])
    np.testing.assert_array_equal(p.offset_N[order], ends)
  assert p.num_rows < len(length_N) / 2  # several samples per row
  assert length_N.sum() / (p.num_rows * 40) > 0.9


@pytest.mark.parametrize("view", ["full", "response"])
def test_packed_batches_hold_each_sample_as_its_own_row(pool, view):
  ids = np.array([12, 3, 5, 0, 7, 1, 9, 3, 11, 2])  # any order, even a repeat
  plan = packing.pack(pool, ids, view, max_segments=3)
  lens = packing.view_lengths(pool, ids, view)
  assert plan.length == (48 if view == "full" else 32)  # the bucket of the longest
  batches = list(packing.batches(pool, ids, plan, 3, view))
  assert len(batches) == plan.num_batches(3) == -(-plan.num_rows // 3)
  seen = []
  for batch in batches:
    assert batch["tokens_BxL"].shape == batch["segment_BxL"].shape == (3, plan.length)
    assert batch["sample_BxG"].shape == batch["index_BxG"].shape == (3, 3)
    assert batch["tokens_BxL"].dtype == np.int32 and batch["loss_mask_BxL"].dtype == bool
    for r in range(3):
      segs = batch["segment_BxL"][r]
      assert batch["is_pad_B"][r] == (segs == 0).all()
      assert (batch["tokens_BxL"][r][segs == 0] == pool.pad_id).all()
      assert not batch["loss_mask_BxL"][r][segs == 0].any()
      for g, pos in enumerate(batch["sample_BxG"][r]):
        if pos < 0:
          assert not (segs == g + 1).any()
          continue
        seen.append(pos)
        assert batch["index_BxG"][r, g] == ids[pos]
        slots = np.flatnonzero(segs == g + 1)
        assert len(slots) == lens[pos] and np.all(np.diff(slots) == 1)  # contiguous
        tokens, loss = pool.row(int(ids[pos]), view)
        np.testing.assert_array_equal(batch["tokens_BxL"][r, slots], tokens)
        np.testing.assert_array_equal(batch["loss_mask_BxL"][r, slots], loss)
        np.testing.assert_array_equal(batch["positions_BxL"][r, slots], np.arange(len(slots)))
  assert sorted(seen) == list(range(len(ids)))  # every sample exactly once


def test_pack_explicit_length_and_bad_input(pool):
  assert packing.pack(pool, [0, 1], max_segments=2, length=64).length == 64
  with pytest.raises(ValueError, match="lengths"):
    packing.pack(pool, [12], max_segments=2, length=8)
  with pytest.raises(IndexError):
    packing.pack(pool, [len(pool)], max_segments=2)
  with pytest.raises(ValueError, match="view"):
    packing.pack(pool, [0], "prompt", max_segments=2)
  assert packing.pack(pool, [], max_segments=2).num_rows == 0
