"""The training-pass driver: step order, keys, fetched outputs and its booking."""

import jax
import jax.numpy as jnp
import numpy as np

from lead_jax import accounting
from lead_jax.train import passes


def _batch(real: int, rows: int = 4, length: int = 5, tokens: int = 3) -> dict:
  mask_BxL = np.zeros((rows, length), np.int32)
  mask_BxL[:real, :tokens] = 1
  return {
      "x_B": np.arange(rows, dtype=np.float32), "is_pad_B": np.arange(rows) >= real,
      "attention_mask_BxL": mask_BxL
  }


def _step(state, base, batch, key):
  """Adds base + the batch's sum; reports the key's data and a jvp flag on odd states."""
  new = state + base + jnp.sum(batch["x_B"])
  return new, {
      "key": jax.random.key_data(key), "metrics": {"dl_jvp": (state % 2).astype(jnp.int32)}
  }


def test_train_runs_the_batches_in_order_with_folded_keys_and_books_them():
  key = jax.random.key(7)
  batches = [_batch(4), _batch(2), _batch(3)]
  done = list(
      passes.train(_step, jnp.asarray(0.0), jnp.asarray(1.0), batches, mesh=None, step_key=key,
                   start=5, desc="t"))
  assert [d.index for d in done] == [5, 6, 7]
  assert [float(d.state) for d in done] == [7.0, 14.0, 21.0]  # 0 + 1 + 6, then + 7 each
  for d in done:
    np.testing.assert_array_equal(d.out["key"],
                                  jax.random.key_data(jax.random.fold_in(key, d.index)))
    assert isinstance(d.out["key"], np.ndarray)  # fetched to the host
  # state 0 (even) -> no jvp; state 7 (odd) -> jvp; state 14 (even) -> no jvp
  assert [sorted(d.counts) for d in done] == [["train"], ["train", "train_dl_jvp"], ["train"]]
  total = {}
  for d in done:
    total = passes.add(total, d.counts)
  assert total["train"] == {
      "forward_samples": 9, "forward_tokens": 27, "backward_samples": 9, "backward_tokens": 27
  }
  assert total["train_dl_jvp"] == {
      "forward_samples": 2, "forward_tokens": 6, "backward_samples": 0, "backward_tokens": 0
  }
  ledger = passes.book(accounting.empty(), "training", total)
  assert accounting.phase_totals(ledger, "training")["forward_samples"] == 11
  assert accounting.phase_totals(ledger, "training")["backward_samples"] == 9


def test_train_without_fetch_or_key_keeps_device_outputs_and_books_no_jvp():
  step = lambda s, b, batch, key: (s + 1, {"key_is_none": key is None, "metrics": {"dl_jvp": 1}})
  done = list(passes.train(step, 0, None, [_batch(1)], mesh=None, step_key=None, fetch=False))
  assert done[0].out["key_is_none"] and done[0].state == 1
  assert sorted(done[0].counts) == ["train"]  # unfetched outputs are not read for the flag


def test_counts_of_names_the_activity():
  got = passes.counts_of(_batch(2), "warmup_train", dl_jvp=True)
  assert sorted(got) == ["warmup_train", "warmup_train_dl_jvp"]
  assert got["warmup_train"]["backward_tokens"] == 6
