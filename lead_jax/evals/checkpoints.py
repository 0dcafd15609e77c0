"""What an evaluation runs on: a LEAD workdir, a Hugging Face directory or a GGUF file.

  LEAD workdir      has checkpoints/ and config.json (the run's config): the
                    run's base weights (rebuilt as the run built them) and the
                    newest checkpoint's LoRA adapters, unmerged, with the run's
                    tokenizer, chat template and held-out test set
  Hugging Face dir  config.json + safetensors, the tokenizer beside them
  .gguf file        llama architecture, the tokenizer read from the file
`evaluate(config)` (configs/evaluate.py) loads one, runs the benchmarks and
writes the JSON report.
"""

from __future__ import annotations

import json
import logging
import os

import jax
import ml_collections

from lead_jax import artifacts
from lead_jax.train import base_cache
from lead_jax.train import build
from lead_jax.train import checkpoint
from lead_jax.train import optim
from lead_jax.model import tokenizer as tokenizer_lib
from lead_jax.train import step as train
from lead_jax.data import load as data_load
from lead_jax.evals import runner

log = logging.getLogger(__name__)


def is_workdir(path: str) -> bool:
  return os.path.isdir(os.path.join(path, "checkpoints")) and os.path.isfile(
      os.path.join(path, "config.json"))


def load_workdir(workdir: str):
  """(ModelConfig with lora, params {"params", "lora"}, run config) of the newest checkpoint."""
  with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
    run = ml_collections.ConfigDict(json.load(f))
  # Checkpoints hold the adapters; the frozen base is rebuilt as the run built it.
  model_config, base = build.load_base(
      base_cache.resolve_model(run), run.lora, build.base_key(run.seed))
  tx, _ = optim.make(run.optim)
  abstract, _ = build.abstract_state(model_config, tx)
  one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])  # whatever mesh saved it
  abstract = checkpoint.abstract(abstract, jax.tree.map(lambda _: one, abstract))
  manager = checkpoint.Manager(checkpoint.directory(run.checkpoint, workdir), run.checkpoint)
  try:
    state, _ = manager.restore(abstract)
  finally:
    manager.close()
  return model_config, train.params(base, state.lora), run


def load(config):
  """(model_config, params, tokenizer, data config, synthetic test path) of config.checkpoint."""
  path = config.checkpoint
  if not path:
    raise ValueError("checkpoint is required: a LEAD workdir, a Hugging Face checkpoint "
                     "directory or a .gguf file")
  if path.endswith(".gguf"):
    from lead_jax.model import gguf_import  # the gguf reader only when asked for
    model_config, params, tok = gguf_import.load(path)
    tok = tokenizer_lib.load(config.tokenizer) if config.tokenizer else tok
    return model_config, params, tok, config.data, config.data.test_path
  if is_workdir(path):
    model_config, params, run = load_workdir(path)
    tok = tokenizer_lib.load(config.tokenizer or run.data.tokenizer)
    return model_config, params, tok, run.data, data_load.resolve_paths(run.data, path)["test"]
  if not os.path.isfile(os.path.join(path, "config.json")):
    raise FileNotFoundError(f"{path}: neither a LEAD workdir (checkpoints/ + config.json), a "
                            "Hugging Face checkpoint directory (config.json) nor a .gguf file")
  from lead_jax.model import hf
  model_config, params = hf.load_checkpoint(path)
  tok = tokenizer_lib.load(config.tokenizer or path)
  return model_config, params, tok, config.data, config.data.test_path


def evaluate(config) -> dict:
  """Loads config.checkpoint, runs config.eval's benchmarks, writes and returns the report."""
  model_config, params, tok, data_cfg, test_path = load(config)
  report = runner.run(model_config, params, tok, config.eval, data_cfg, test_path=test_path)
  report["checkpoint"] = config.checkpoint
  output = config.output or os.path.join(
      config.checkpoint if os.path.isdir(config.checkpoint) else os.path.dirname(config.checkpoint),
      "eval_results.json")
  artifacts.write_json(output, report, ensure_ascii=False)
  log.info("results: %s -> %s", report["summary"], output)
  return report
