"""experiments/example_custom_trainer.py (a flax.nnx model trained with optax,
selecting through lead_jax.api) on a tiny lake: what it trains is what the
selector proposed, the utility of exactly those samples moves, the bandit's
probabilities are distributions, and a saved selector state proposes what the
run proposed next."""

import numpy as np

from experiments import example_custom_trainer as example
from lead_jax import api


def test_the_example_trains_what_lead_proposes(tmp_path):
  out = example.run(example.Settings(str(tmp_path), pool_size=200, t_max=3))
  sel, history, config = out["selector"], out["history"], out["config"]
  assert sel.done and [r["iteration"] for r in history] == [0, 1, 2]
  trained = np.zeros(200, bool)
  for r in history:
    ids = np.array(r["ids"], np.int64)
    assert ids.size and np.unique(ids).size == ids.size
    trained[ids] = True
    p_C = np.array(r["probabilities"])
    assert abs(p_C.sum() - 1.0) < 1e-12 and p_C.min() >= config.bandit.gamma / p_C.size - 1e-12
    assert np.isfinite(r["train_loss"]) and np.isfinite(r["reward"])
  assert sel.use_count_N.sum() == sum(len(r["ids"]) for r in history)
  assert ((sel.use_count_N > 0) == trained).all()
  moved = sel.idu_N != out["idu0_N"]
  assert moved[trained].all() and not moved[~trained].any()
  with np.load(tmp_path / "selector" / "0001.npz", allow_pickle=False) as f:
    resumed = api.LeadSelector.from_state(dict(f), config)
  assert resumed.iteration == 2 and not resumed.done
  assert resumed.propose().tolist() == history[2]["ids"]
