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
  LOOP_KILL=PHASE:K:DELAY   kill -9 this process inside the K-th call (0 = the
                            first) of PHASE: DELAY seconds after it began, or
                            as it returns if it ends sooner. PHASE is one of
                            PHASES: base pretraining, one offline artifact
                            (offline:NAME, its computation), an iteration, a
                            checkpoint save, the final evaluation, the report
  LOOP_ENTRY=MODULE         the entry point to run (default experiments.run)
  LOOP_TRACE=PATH           append JSON lines to PATH: {"write": path} for each
                            file or directory this process's Python code opens
                            for writing, creates, renames or removes inside
                            the workdir, {"restore": step, "digest": sha256}
                            for each checkpoint restored (the digest covers
                            the restored device arrays and host state)

  python tests/loop_driver.py --config tests/loop_config.py --workdir DIR
"""

import os
import signal
import sys
import threading
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


PHASES = {  # phase: (module, attribute) of the function whose calls it is
    "pretraining": ("lead_jax.train.pretrain", "train"),
    "iteration": ("lead_jax.loop.iteration", "run_iteration"),
    "checkpoint": ("lead_jax.train.checkpoint", "Manager.save"),
    "evaluation": ("lead_jax.loop.final", "evaluate"),
    "report": ("lead_jax.report", "plots"),
}


def _kill_in(phase: str, k: int, delay: float) -> None:
  import importlib

  def kill():
    os.kill(os.getpid(), signal.SIGKILL)

  def wrap(original):
    calls = [0]

    def inside(*args, **kwargs):
      calls[0] += 1
      if calls[0] != k + 1:
        return original(*args, **kwargs)
      threading.Timer(delay, kill).start()
      out = original(*args, **kwargs)
      kill()  # it ended before the timer: at its return
      return out

    return inside

  if phase.startswith("offline:"):  # one artifact's computation
    from lead_jax.offline import stage
    name, original_artifact = phase.partition(":")[2], stage._Stage.artifact
    if name not in ARTIFACTS:
      raise ValueError(f"LOOP_KILL={phase}: no artifact {name!r}; one of {ARTIFACTS}")

    def artifact(self, got, fp, compute):
      return original_artifact(self, got, fp, wrap(compute) if got == name else compute)

    stage._Stage.artifact = artifact
    return
  if phase not in PHASES:
    raise ValueError(f"LOOP_KILL={phase}: one of {sorted(PHASES)} or offline:<artifact>")
  module, attr = PHASES[phase]
  owner = importlib.import_module(module)
  *outer, name = attr.split(".")
  for part in outer:
    owner = getattr(owner, part)
  setattr(owner, name, wrap(getattr(owner, name)))


ARTIFACTS = ("warmup", "ifd", "base_loss", "clusters")  # the tiny LEAD run's offline artifacts


def _trace(path: str, workdir: str) -> None:
  import hashlib
  import json
  import numpy as np
  root = os.path.abspath(workdir) + os.sep
  lock = threading.Lock()

  def emit(record):
    with lock, open(path, "a", encoding="utf-8") as f:
      f.write(json.dumps(record) + "\n")

  def inside(p) -> bool:
    return isinstance(p, (str, bytes, os.PathLike)) and os.path.abspath(
        os.fsdecode(p)).startswith(root)

  def hook(event, args):
    if event == "open" and inside(args[0]):
      mode, flags = args[1], args[2]
      writes = any(c in (mode or "") for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR)
      if writes and os.path.abspath(os.fsdecode(args[0])) != os.path.abspath(path):
        emit({"write": os.path.relpath(os.fsdecode(args[0]), root)})
    elif event in ("os.rename", "os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree") and inside(
        args[0]):
      emit({"write": os.path.relpath(os.fsdecode(args[0]), root), "op": event})

  sys.addaudithook(hook)
  from lead_jax.train import checkpoint
  original = checkpoint.Manager.restore

  def restore(self, abstract_state, step=None):
    import jax
    state, host = original(self, abstract_state, step)
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(state):
      digest.update(np.asarray(leaf.addressable_shards[0].data).tobytes())
    digest.update(
        json.dumps(host, sort_keys=True, default=lambda a: np.asarray(a).tolist()).encode())
    emit({"restore": self.latest_step() if step is None else step, "digest": digest.hexdigest()})
    return state, host

  checkpoint.Manager.restore = restore


if __name__ == "__main__":
  if os.environ.get("LOOP_TRACE"):
    _trace(os.environ["LOOP_TRACE"], sys.argv[sys.argv.index("--workdir") + 1])
  if os.environ.get("LOOP_FSIZE"):
    at, _, limit = os.environ["LOOP_FSIZE"].partition(":")
    _limit_file_size(int(at), int(limit))
  if os.environ.get("LOOP_PAUSE"):
    name, _, at = os.environ["LOOP_PAUSE"].partition(":")
    _install(name, int(at))
  if os.environ.get("LOOP_KILL"):
    phase, k, delay = os.environ["LOOP_KILL"].rsplit(":", 2)
    _kill_in(phase, int(k), float(delay))
  import importlib
  from absl import app
  entry = importlib.import_module(os.environ.get("LOOP_ENTRY") or "experiments.run")
  app.run(entry.main, argv=["run"] + sys.argv[1:])
