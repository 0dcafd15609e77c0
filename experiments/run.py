"""Runs one experiment config.

  python -m experiments.run --config configs/tiny.py --workdir workdir/tiny \
      [--config.train.batch_size=8 ...]

`config.method` names the job: `finetune` (plain LoRA training on the whole
pool, `lead_jax.train.finetune`); every other method is the LEAD loop's
(`lead_jax.loop`). The job resumes from the newest checkpoint in the workdir.
Bad input data ends the run with the data layer's one-line error and exit
status 2, without a traceback.
"""

import importlib
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from lead_jax import artifacts, lock, preempt
from lead_jax.data import DataError

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
  try:
    module.run(config, _WORKDIR.value)
  except (DataError, lock.Busy) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except artifacts.WriteError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)  # at once: a failed save's writer threads would only add noise at shutdown
  except preempt.Preempted as e:
    print(e, file=sys.stderr, flush=True)
    sys.exit(e.exit_status)


if __name__ == "__main__":
  app.run(main)
