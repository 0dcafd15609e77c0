"""One writer per workdir: the lock file, stale takeover, other hosts, the entry point."""

import json
import os
import subprocess
import sys
import time

import pytest

from lead_jax import lock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _holder(workdir):
  """A child process that holds the workdir's lock until killed."""
  code = ("import sys, time; from lead_jax import lock; lock.acquire(sys.argv[1]); "
          "print('held', flush=True); time.sleep(600)")
  child = subprocess.Popen([sys.executable, "-c", code, str(workdir)], cwd=ROOT,
                           stdout=subprocess.PIPE, text=True)
  assert child.stdout.readline().strip() == "held"
  return child


def test_acquire_writes_the_owner_and_release_removes_it(tmp_path):
  path = lock.acquire(str(tmp_path / "w"))
  holder = json.load(open(path))
  assert holder["pid"] == os.getpid() and holder["host"] and holder["started"] <= time.time()
  with pytest.raises(lock.Busy, match=f"in use by process {os.getpid()}"):
    lock.acquire(str(tmp_path / "w"))  # held, even by this very process
  lock.release(path)
  assert not os.path.exists(path)
  with lock.held(str(tmp_path / "w")):
    assert os.path.exists(path)
  assert not os.path.exists(path)


def test_a_live_holder_blocks_and_a_dead_one_is_taken_over(tmp_path, caplog):
  child = _holder(tmp_path)
  try:
    with pytest.raises(lock.Busy) as err:
      lock.acquire(str(tmp_path))
    assert f"process {child.pid}" in str(err.value) and "\n" not in str(err.value)
  finally:
    child.kill()
    child.wait()
  path = lock.acquire(str(tmp_path))  # the holder is gone: stale
  assert json.load(open(path))["pid"] == os.getpid()
  assert f"taking over the stale lock of process {child.pid}" in caplog.text
  lock.release(path)


def test_a_lock_from_another_host_is_not_taken(tmp_path):
  with open(tmp_path / lock.LOCK, "w") as f:
    json.dump({"pid": 1, "host": "some-other-host", "started": 0}, f)
  with pytest.raises(lock.Busy, match="on host some-other-host .*delete the file"):
    lock.acquire(str(tmp_path))


def test_a_half_written_lock_is_stale(tmp_path, caplog):
  (tmp_path / lock.LOCK).write_text("{")
  lock.release(lock.acquire(str(tmp_path)))
  assert "stale lock" in caplog.text


def test_a_second_run_on_a_busy_workdir_exits_at_once_with_one_line(tmp_path):
  child = _holder(tmp_path)
  try:
    proc = subprocess.run([
        sys.executable, "-m", "experiments.run", "--config", "tests/loop_config.py", "--workdir",
        str(tmp_path)
    ], cwd=ROOT, capture_output=True, text=True, timeout=120)
  finally:
    child.kill()
    child.wait()
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      f"error: {tmp_path}: in use by process {child.pid} on {os.uname().nodename} "
      f"({tmp_path / lock.LOCK}); wait for it to end, stop it, or use another --workdir")
  assert "Traceback" not in proc.stderr
  assert not os.path.exists(tmp_path / "checkpoints")  # nothing was computed
