"""How the entry points end a run that cannot go on: one line, a status.

  experiments.cli.guarded(fn, *args)

returns `fn(*args)`, or ends the process with one line on stderr:
  bad input or config (`DataError`, `checks.ConfigError`), a busy workdir
  (`lock.Busy`)                                   "error: ...", status 2
  a write the disk refused (`artifacts.WriteError`) "error: ...", status 1,
  at once (a failed save's writer threads would only add noise at shutdown)
  a signal (`preempt.Preempted`)                  where and how to resume,
  status 128 + signal (143 SIGTERM, 130 SIGINT)
"""

import os
import sys

from lead_jax import artifacts, lock, preempt
from lead_jax.data import DataError


def guarded(fn, *args):
  try:
    return fn(*args)
  except (DataError, lock.Busy) as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)
  except artifacts.WriteError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)
  except preempt.Preempted as e:
    print(e, file=sys.stderr, flush=True)
    sys.exit(e.exit_status)
