"""Graceful preemption: SIGTERM and SIGINT end a run at the next safe point.

  with preempt.watch() as stop:
    for ...:
      ...one unit of work (a loop iteration, a training step)...
      if preempt.agree(stop):
        save a checkpoint, then raise preempt.Preempted(stop.agreed, where)

`watch` installs handlers that only record the signal, so the unit in flight
finishes and its checkpoint is written before the run ends; a second signal
while that happens ends the process at once (the default action). The entry
points (experiments/run.py, main.py, pretrain_base.py, run_suite.py) print the
exception's one line, which says where the checkpoint is and how to resume, and
exit with status 128 + signal (143 for SIGTERM, 130 for SIGINT), as a shell
does for a process killed by that signal. Outside the main thread, where
Python cannot take signals, `watch` records nothing.

In a multi-process run (`jax.distributed`) a signal may reach one process, or
reach them at different moments; `agree` makes every process stop after the
same unit (the one in which any of them was signalled), so that they all write
the same checkpoint and none waits alone in a collective.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
from typing import Optional

import numpy as np

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
  """The run stopped on a signal after checkpointing; `str` is one line for the user."""

  def __init__(self, signum: int, message: str):
    super().__init__(message)
    self.signum = signum

  @property
  def exit_status(self) -> int:
    return 128 + self.signum


@dataclasses.dataclass
class Stop:
  signum: Optional[int] = None  # the first signal this process received, None while none
  agreed: Optional[int] = None  # the last `agree`: the signal any process received

  @property
  def name(self) -> str:
    signum = self.agreed or self.signum
    return signal.Signals(signum).name if signum else ""


@contextlib.contextmanager
def watch():
  """Records SIGTERM / SIGINT in the yielded `Stop` for the block."""
  stop = Stop()
  if threading.current_thread() is not threading.main_thread():
    yield stop
    return

  def record(signum, _frame):
    if stop.signum is not None:  # a second signal: do not wait any longer
      signal.signal(signum, signal.SIG_DFL)
      os.kill(os.getpid(), signum)
      return
    stop.signum = signum

  previous = {s: signal.signal(s, record) for s in SIGNALS}
  try:
    yield stop
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)


def agree(stop: Stop) -> Optional[int]:
  """The signal of this unit, the same on every process: this process's own
  (one process) or the largest any process has recorded (a gather over the
  processes, as the others ask at the same point). Kept in `stop.agreed`."""
  import jax  # pylint: disable=import-outside-toplevel  (the handler module needs no JAX)
  stop.agreed = stop.signum
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    got = multihost_utils.process_allgather(np.int32(stop.signum or 0))
    stop.agreed = int(np.max(got)) or None
  return stop.agreed


def message(stop: Stop, done: str, checkpoint_dir: str) -> str:
  """The one line of a preempted run: what finished, where its state is, how to resume."""
  return (f"stopped by {stop.name} after {done}; checkpoint in {checkpoint_dir}; "
          "rerun the same command to resume")
