"""Evaluating what a run leaves: imported checkpoints and LEAD workdirs (unmerged LoRA)."""

import json
import os

import jax
import pytest

from configs import base, evaluate as evaluate_config
from lead_jax import metrics
from lead_jax.train import build
from lead_jax.train import checkpoint
from lead_jax.model import hf
from lead_jax.train import optim
from lead_jax.evals import checkpoints, runner


def _eval_config(checkpoint_path, fixtures_dir, out, benchmarks="mmlu"):
  c = evaluate_config.get_config()
  c.checkpoint = checkpoint_path
  c.tokenizer = "byte_level"
  c.output = str(out)
  c.eval.benchmarks = benchmarks
  c.eval.data_dir = fixtures_dir
  c.eval.limit = 2
  c.eval.mmlu.batch_size = 4
  c.eval.synthetic.max_new_tokens = 4
  return c


def test_imported_checkpoint_scores_like_the_unmerged_model(tmp_path, fixtures_dir, tiny, tok,
                                                            eval_cfg, data_cfg):
  config, params = tiny
  hf.save_checkpoint(str(tmp_path / "hf"), config, params)  # LoRA merged on export
  report = checkpoints.evaluate(
      _eval_config(str(tmp_path / "hf"), fixtures_dir, tmp_path / "out.json"))
  with open(tmp_path / "out.json") as f:
    assert json.load(f)["summary"] == report["summary"]
  eval_cfg.benchmarks, eval_cfg.data_dir, eval_cfg.limit = "mmlu", fixtures_dir, 2
  unmerged = runner.run(config, params, tok, eval_cfg, data_cfg)
  assert report["benchmarks"]["mmlu"]["per_subject"] == unmerged["benchmarks"]["mmlu"][
      "per_subject"]


def test_lead_workdir_is_evaluated_with_its_adapters(tmp_path, fixtures_dir):
  run = base.get_config()
  run.model.hidden_size, run.model.intermediate_size, run.model.num_layers = 32, 64, 2
  run.data.synthetic.size, run.data.synthetic.test_per_task = 100, 2
  workdir = str(tmp_path / "run")
  metrics.write_config(workdir, run)
  model_config, base_params = build.load_base(run.model, run.lora, jax.random.key(0))
  tx, _ = optim.make(run.optim)
  state, _ = build.init_state(model_config, base_params, tx, jax.random.key(1))
  manager = checkpoint.Manager(os.path.join(workdir, "checkpoints"), run.checkpoint)
  manager.save(7, state, {"step": 7}, force=True)
  manager.close()
  loaded_config, params, _ = checkpoints.load_workdir(workdir)
  assert loaded_config.lora is not None and set(params) == {"params", "lora"}
  report = checkpoints.evaluate(
      _eval_config(workdir, fixtures_dir, tmp_path / "r.json", "mmlu,synthetic"))
  synthetic = report["benchmarks"]["synthetic"]
  assert synthetic["num_examples"] == 2 * len(synthetic["per_task"])  # limit 2 per task
  assert report["benchmarks"]["mmlu"]["num_questions"] == 4
