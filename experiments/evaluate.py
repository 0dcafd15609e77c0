r"""Evaluate a checkpoint on the paper's benchmarks; writes one JSON of results.

  python -m experiments.evaluate --checkpoint DIR_OR_WORKDIR \
      --benchmarks mmlu,gsm8k,tydiqa,humaneval --data_dir DIR [--limit N] \
      [--output results.json] [--tokenizer DIR|byte_level] [--config configs/evaluate.py]

--checkpoint is a LEAD workdir (evaluated with its LoRA adapters unmerged and
the run's tokenizer, chat template and held-out test set), a Hugging Face
checkpoint directory or a .gguf file (lead_jax.evals.checkpoints). The other
flags override the config's fields (configs/evaluate.py, whose `eval`
sub-config holds every protocol setting). Layout of --data_dir and the
protocols: configs/base_eval.py and the lead_jax.evals modules.
"""

from __future__ import annotations

import json
import os

from absl import app, flags
from ml_collections import config_flags

from lead_jax.evals import checkpoints

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(__file__), "..", "configs", "evaluate.py"),
    "evaluation config (configs/evaluate.py)", lock_config=True)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "LEAD workdir, HF checkpoint dir or .gguf")
_BENCHMARKS = flags.DEFINE_string("benchmarks", None, "comma-separated benchmarks")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "folder with one sub-folder per benchmark")
_LIMIT = flags.DEFINE_integer("limit", None, "cap per benchmark for quick runs (0 = all)")
_OUTPUT = flags.DEFINE_string("output", None, "results JSON path")
_TOKENIZER = flags.DEFINE_string("tokenizer", None, "tokenizer override (dir or byte_level)")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  config = _CONFIG.value
  for flag, field in ((_CHECKPOINT, "checkpoint"), (_OUTPUT, "output"), (_TOKENIZER, "tokenizer")):
    if flag.value is not None:
      config[field] = flag.value
  for flag, field in ((_BENCHMARKS, "benchmarks"), (_DATA_DIR, "data_dir"), (_LIMIT, "limit")):
    if flag.value is not None:
      config.eval[field] = flag.value
  report = checkpoints.evaluate(config)
  print(json.dumps(report["summary"], indent=1))


if __name__ == "__main__":
  app.run(main)
