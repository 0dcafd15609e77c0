"""Runs one experiment config.

  python -m experiments.run --config configs/tiny.py --workdir workdir/tiny \
      [--config.train.batch_size=8 ...]

`config.method` names the job: `finetune` (plain LoRA training on the whole
pool, `lead_jax.train.finetune`); every other method is the LEAD loop's
(`lead_jax.loop`). The job resumes from the newest checkpoint in the workdir.
A run that cannot go on (bad input or config, a busy workdir, a full disk, a
signal) ends with one line and a status (`experiments.cli`).
"""

import importlib

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file (configs/*.py)",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory: checkpoints, metrics, caches")
flags.mark_flags_as_required(["config", "workdir"])

JOBS = {"finetune": "lead_jax.train.finetune"}  # every other method: lead_jax.loop


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO
    logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  module = importlib.import_module(JOBS.get(config.method, "lead_jax.loop"))
  logging.info("job %s (%s) in %s", config.method, module.__name__, _WORKDIR.value)
  cli.guarded(module.run, config, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
