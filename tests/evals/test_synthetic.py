"""Held-out loss and per-task exact match on the synthetic lake's test set."""

import jax
import numpy as np
import pytest

from lead_jax.train import losses
from lead_jax.model import decoder as model
from lead_jax.data import synthetic as lake
from lead_jax.data import templates
from lead_jax.evals import synthetic


@pytest.fixture(scope="module")
def test_path(tmp_path_factory):
  out = tmp_path_factory.mktemp("lake")
  return lake.write_lake(str(out), seed=0, size=100, test_per_task=2, dev_per_task=1)["test"]


def test_read_keeps_limit_records_per_task(test_path, data_cfg):
  records = synthetic.read(data_cfg, test_path, limit=1)
  tasks = [r.task for r in records]
  assert len(tasks) == len(set(tasks)) == len(synthetic.read(data_cfg, test_path)) // 2


def test_held_out_loss_is_the_training_response_loss(test_path, data_cfg, tiny, tok, template):
  config, params = tiny
  records = synthetic.read(data_cfg, test_path)[:5]
  mean, per_task = synthetic.held_out_loss(config, params, tok, records, data_cfg, template, 4)
  encoded = [templates.encode(template, tok, r.messages) for r in records]
  tokens = np.zeros((len(records), max(len(ids) for ids, _ in encoded)), np.int32)
  for row, (ids, _) in enumerate(encoded):
    tokens[row, :len(ids)] = ids  # right padding: causal attention never sees it
  logits = jax.jit(model.forward, static_argnums=0)(config, params, tokens)
  want = []
  for row, (ids, kinds) in enumerate(encoded):
    target = np.asarray(kinds) == templates.RESPONSE
    loss, _ = losses.token_mean_ce(logits[row, :len(ids)], np.asarray(ids), target)
    want.append(float(loss))
  assert mean == pytest.approx(np.mean(want), rel=1e-5)
  assert set(per_task) == {r.task for r in records}


def test_exact_match_compares_stripped_text(test_path, data_cfg):
  records = synthetic.read(data_cfg, test_path, limit=1)[:3]
  refs = [r.messages[-1][1] for r in records]
  overall, macro, per_task = synthetic.exact_match(records,
                                                   [f"  {refs[0]}\n", refs[1] + "x", refs[2]])
  assert overall == pytest.approx(2 / 3) and macro == pytest.approx(2 / 3)
  assert per_task == {records[0].task: 1.0, records[1].task: 0.0, records[2].task: 1.0}


def test_evaluate_end_to_end_with_lora(test_path, data_cfg, tiny, tok, eval_cfg):
  config, params = tiny
  result = synthetic.evaluate(config, params, tok, test_path, data_cfg, eval_cfg.synthetic,
                              key=jax.random.PRNGKey(0), limit=1)
  assert result["num_examples"] == len(result["per_task"])
  assert np.isfinite(result["loss"]) and result["loss"] > 0
  assert all(0.0 <= v["exact_match"] <= 1.0 and v["loss"] > 0 for v in result["per_task"].values())
