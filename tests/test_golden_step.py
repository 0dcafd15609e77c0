"""Golden one-step test: one LEAD step on a fixed tiny config, batch and seed,
pinned to values stored in tests/fixtures/golden_step.npz.

It guards refactors of the training core (state, steps, gradients,
projection): the loss before the update, dL_B, one projected gradient row and
the updated adapters must stay what they were when the file was written. The
other tests check properties (dL is the first-order change, chunking changes
nothing, ...); this one checks that the numbers themselves did not move.

Regenerate only for an intended numerical change, and say why in the commit:
  LEAD_JAX_WRITE_GOLDEN=1 python -m pytest tests/test_golden_step.py
"""

import os

import jax
import numpy as np

from lead_jax.train import step as train
from tests.test_train import copy, make_batch, setup, tiny_config

GOLDEN = os.path.join(os.path.dirname(__file__), "fixtures", "golden_step.npz")


def _one_step() -> dict:
  state, base, steps, _ = setup(tiny_config(), lr=1e-3)
  new, out = steps.train(copy(state), base, make_batch(), jax.random.key(9))
  out = train.fetch(out)
  lora = {
      "/".join(str(getattr(k, "key", k))
               for k in path): np.asarray(x)
      for path, x in jax.tree_util.tree_leaves_with_path(new.lora)
  }
  return {
      "loss_B": out["loss_B"],
      "dL_B": out["dL_B"],
      "g_row0_K": out["g_BxK"][0],
      "valid_B": out["valid_B"],
      "step": np.asarray(new.step),
      **{f"lora:{k}": v for k, v in sorted(lora.items())},
  }


def test_one_lead_step_matches_the_stored_values():
  got = _one_step()
  if os.environ.get("LEAD_JAX_WRITE_GOLDEN"):
    np.savez(GOLDEN, **got)
  want = dict(np.load(GOLDEN))
  assert sorted(got) == sorted(want), "the adapters' tree changed"
  assert int(want["step"]) == 1 and want["valid_B"].sum() == 7
  for k, v in want.items():
    np.testing.assert_allclose(got[k], v, rtol=2e-5, atol=1e-7, err_msg=k)
