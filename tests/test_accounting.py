"""The compute ledger: booking, totals that add up, the JSON form, the check."""

import numpy as np
import pytest

from lead_jax import accounting


def _batch():
  return {
      "is_pad_B": np.array([False, False, True]),
      "attention_mask_BxL": np.array([[1, 1, 0], [1, 1, 1], [0, 0, 0]], bool)
  }


def test_passes_of_a_batch_count_real_rows_and_tokens():
  assert accounting.passes_of_batch(_batch(), backward=False) == {
      "forward_samples": 2, "forward_tokens": 5, "backward_samples": 0, "backward_tokens": 0
  }
  assert accounting.passes_of_batch(_batch(), backward=True)["backward_tokens"] == 5


def test_phases_add_up_and_round_trip():
  ledger = accounting.empty()
  ledger = accounting.add(ledger, "offline", "ifd", {"forward_samples": 10, "forward_tokens": 90})
  ledger = accounting.add(ledger, "offline", "warmup_train",
                          accounting.passes_of_batch(_batch(), backward=True))
  ledger = accounting.add(ledger, "selection", "dev_loss", {"forward_samples": 3})
  ledger = accounting.add(ledger, "training", "train",
                          accounting.passes_of_batch(_batch(), backward=True))
  for phase, s in (("setup", 1.5), ("offline", 2.0), ("training", 0.25), ("checkpoint", 0.1)):
    ledger = accounting.add_seconds(ledger, phase, s)
  d = accounting.to_dict(ledger)
  accounting.check(d)
  assert d["totals"]["forward_samples"] == 10 + 2 + 3 + 2
  assert d["phases"]["offline"]["totals"]["backward_samples"] == 2
  # forward-only scoring outside training: IFD and the dev loss, not warmup steps
  assert d["forward_sample_passes"] == 13
  assert d["wall_seconds"]["total"] == pytest.approx(3.85)
  assert accounting.to_dict(accounting.from_dict(d)) == d
  d["phases"]["offline"]["totals"]["forward_samples"] += 1
  with pytest.raises(ValueError, match="offline"):
    accounting.check(d)


def test_unknown_phase_or_counter_fails():
  with pytest.raises(ValueError, match="phase"):
    accounting.add(accounting.empty(), "online", "x", {})
  with pytest.raises(ValueError, match="counters"):
    accounting.add(accounting.empty(), "training", "x", {"flops": 1})
