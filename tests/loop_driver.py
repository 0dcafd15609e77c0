"""Runs `experiments.run`, optionally pausing at a named point so that a test
can kill the process there (kill -9) and check what a rerun makes of it.

  LOOP_PAUSE=iteration:K    inside the K-th iteration this process runs, after
                            its training pass (the IDU update is about to run)
  LOOP_PAUSE=checkpoint:S   inside the save of checkpoint S: every item is
                            written, orbax's commit rename is about to run
  LOOP_PAUSE_FILE=PATH      created when the process has paused
  LOOP_SIGNAL=TERM|INT      at the point, send this process SIGTERM / SIGINT
                            and go on instead of pausing (graceful preemption)
  LOOP_FSIZE=S:BYTES        from the save of checkpoint S on, no file may grow
                            past BYTES (RLIMIT_FSIZE; SIGXFSZ ignored, so a
                            write fails with EFBIG as on a full disk)

  python tests/loop_driver.py --config tests/loop_config.py --workdir DIR
"""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _pause():
  if os.environ.get("LOOP_SIGNAL"):
    os.kill(os.getpid(), getattr(signal, "SIG" + os.environ["LOOP_SIGNAL"]))
    return
  with open(os.environ["LOOP_PAUSE_FILE"], "w", encoding="utf-8") as f:
    f.write(str(os.getpid()))
  time.sleep(3600)


def _install(point: str, k: int) -> None:
  if point == "iteration":
    from lead_jax import idu
    original, calls = idu.update, [0]

    def update(*args, **kwargs):
      if calls[0] == k:
        _pause()
      calls[0] += 1
      return original(*args, **kwargs)

    idu.update = update
  elif point == "checkpoint":
    from orbax.checkpoint._src.path import async_path
    original_rename = async_path.rename

    async def rename(src, dst):
      if dst.name == str(k):
        _pause()
      return await original_rename(src, dst)

    async_path.rename = rename
  else:
    raise ValueError(f"LOOP_PAUSE={point}:{k}; use iteration:K or checkpoint:S")


def _limit_file_size(step: int, limit: int) -> None:
  import resource
  from lead_jax.train import checkpoint
  original = checkpoint.Manager.save

  def save(self, at, *args, **kwargs):
    if at == step:
      signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
      resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    return original(self, at, *args, **kwargs)

  checkpoint.Manager.save = save


if __name__ == "__main__":
  if os.environ.get("LOOP_FSIZE"):
    at, _, limit = os.environ["LOOP_FSIZE"].partition(":")
    _limit_file_size(int(at), int(limit))
  if os.environ.get("LOOP_PAUSE"):
    name, _, at = os.environ["LOOP_PAUSE"].partition(":")
    _install(name, int(at))
  from absl import app
  from experiments import run
  app.run(run.main, argv=["run"] + sys.argv[1:])
