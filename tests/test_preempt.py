"""Graceful preemption: the signal is recorded, handlers come back, a second one is final."""

import os
import signal
import subprocess
import sys

import pytest

from lead_jax import preempt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_watch_records_the_signal_and_restores_the_handlers(sig, status):
  before = signal.getsignal(sig)
  with preempt.watch() as stop:
    assert stop.signum is None
    os.kill(os.getpid(), sig)  # recorded, not acted on
    assert stop.signum == sig and stop.name == signal.Signals(sig).name
  assert signal.getsignal(sig) == before
  e = preempt.Preempted(sig, preempt.message(stop, "step 3", "/w/checkpoints"))
  assert e.exit_status == status
  assert str(e) == (f"stopped by {stop.name} after step 3; checkpoint in /w/checkpoints; "
                    "rerun the same command to resume")


def test_a_second_signal_ends_the_process_at_once():
  code = ("import os, signal, time; from lead_jax import preempt\n"
          "with preempt.watch() as stop:\n"
          "  os.kill(os.getpid(), signal.SIGTERM)\n"
          "  print('recorded', stop.signum, flush=True)\n"
          "  os.kill(os.getpid(), signal.SIGTERM)\n"
          "  time.sleep(30)\n"
          "print('not reached')\n")
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                        timeout=60)
  assert proc.returncode == -signal.SIGTERM
  assert proc.stdout == f"recorded {int(signal.SIGTERM)}\n"
