r"""Evaluate a checkpoint on the paper's benchmarks; writes one JSON of results.

  python -m experiments.evaluate --checkpoint DIR_OR_WORKDIR \
      --benchmarks mmlu,gsm8k,tydiqa,humaneval --data_dir DIR [--limit N] \
      [--output results.json] [--tokenizer DIR|byte_level] [--config configs/evaluate.py]

--checkpoint is one of
  a LEAD workdir     (has checkpoints/ and config.json): the newest checkpoint's
                     base weights and LoRA adapters, evaluated unmerged, with
                     the run's tokenizer, chat template and held-out test set
  a Hugging Face dir (config.json + safetensors), its tokenizer beside it
  a .gguf file       (llama architecture), its tokenizer from the file
The other flags override the config's fields (configs/evaluate.py, whose
`eval` sub-config holds every protocol setting). Layout of --data_dir and the
protocols: configs/base_eval.py and the lead_jax.evals modules.
"""

from __future__ import annotations

import json
import os

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from lead_jax import build, checkpoint, optim, tokenizer as tokenizer_lib
from lead_jax.data import load as data_load
from lead_jax.evals import runner

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(__file__), "..", "configs", "evaluate.py"),
    "evaluation config (configs/evaluate.py)", lock_config=True)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "LEAD workdir, HF checkpoint dir or .gguf")
_BENCHMARKS = flags.DEFINE_string("benchmarks", None, "comma-separated benchmarks")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "folder with one sub-folder per benchmark")
_LIMIT = flags.DEFINE_integer("limit", None, "cap per benchmark for quick runs (0 = all)")
_OUTPUT = flags.DEFINE_string("output", None, "results JSON path")
_TOKENIZER = flags.DEFINE_string("tokenizer", None, "tokenizer override (dir or byte_level)")


def is_workdir(path: str) -> bool:
  return os.path.isdir(os.path.join(path, "checkpoints")) and os.path.isfile(
      os.path.join(path, "config.json"))


def load_workdir(workdir: str):
  """(ModelConfig with lora, params {"params", "lora"}, run config) of the newest checkpoint."""
  with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
    run = ml_collections.ConfigDict(json.load(f))
  model_config, base = build.load_base(run.model, run.lora, jax.random.key(run.seed))
  tx, _ = optim.make(run.optim)
  abstract, _ = build.abstract_state(model_config, tx)
  manager = checkpoint.Manager(os.path.join(workdir, "checkpoints"), run.checkpoint)
  try:
    state, _ = manager.restore(abstract)
  finally:
    manager.close()
  del base
  return model_config, state.params, run


def load(config):
  """(model_config, params, tokenizer, data config, synthetic test path)."""
  path = config.checkpoint
  if not path:
    raise ValueError("--checkpoint is required: a LEAD workdir, a Hugging Face checkpoint "
                     "directory or a .gguf file")
  if path.endswith(".gguf"):
    from lead_jax import gguf_import  # the gguf reader only when asked for
    model_config, params, tok = gguf_import.load(path)
    tok = tokenizer_lib.load(config.tokenizer) if config.tokenizer else tok
    return model_config, params, tok, config.data, config.data.test_path
  if is_workdir(path):
    model_config, params, run = load_workdir(path)
    tok = tokenizer_lib.load(config.tokenizer or run.data.tokenizer)
    test_path = data_load.resolve_paths(run.data, path)["test"]
    return model_config, params, tok, run.data, test_path
  from lead_jax import hf
  model_config, params = hf.load_checkpoint(path)
  tok = tokenizer_lib.load(config.tokenizer or path)
  return model_config, params, tok, config.data, config.data.test_path


def evaluate(config) -> dict:
  """Loads the checkpoint, runs the benchmarks, writes and returns the report."""
  model_config, params, tok, data_cfg, test_path = load(config)
  report = runner.run(model_config, params, tok, config.eval, data_cfg, test_path=test_path)
  report["checkpoint"] = config.checkpoint
  output = config.output or os.path.join(
      config.checkpoint if os.path.isdir(config.checkpoint) else
      os.path.dirname(config.checkpoint), "eval_results.json")
  runner.write_json(output, report)
  logging.info("results: %s -> %s", report["summary"], output)
  return report


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  config = _CONFIG.value
  for flag, field in ((_CHECKPOINT, "checkpoint"), (_OUTPUT, "output"),
                      (_TOKENIZER, "tokenizer")):
    if flag.value is not None:
      config[field] = flag.value
  for flag, field in ((_BENCHMARKS, "benchmarks"), (_DATA_DIR, "data_dir"), (_LIMIT, "limit")):
    if flag.value is not None:
      config.eval[field] = flag.value
  report = evaluate(config)
  print(json.dumps(report["summary"], indent=1))


if __name__ == "__main__":
  app.run(main)
