"""One writer per workdir: a lock file holding the owner's pid and host.

  with lock.held(workdir):   # raises Busy when another live process holds it
    ...

The lock is `<workdir>/lock.json`, created atomically (`O_CREAT | O_EXCL`)
with `{"pid", "host", "started"}` and removed when the block ends. A second
process on the same workdir gets `Busy` at once, with a one-line message that
names the holder. A lock left by a process that is gone (same host, no such
pid) is stale: it is taken over with a warning. A lock from another host
cannot be checked from here; its message says to delete the file if that
process is known to be gone. In a multi-process run only process 0 takes the
lock (every process writes to the same workdir by design).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time

from lead_jax import artifacts

log = logging.getLogger(__name__)

LOCK = "lock.json"


class Busy(RuntimeError):
  """Another live process holds the workdir; the message is one line for the user."""


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by someone else
    return True
  return True


def _read(path: str) -> dict:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}  # half written or gone: treated as stale below


def _create(path: str) -> bool:
  """Creates the lock file with this process's details; False when it exists."""
  try:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
  except FileExistsError:
    return False
  with os.fdopen(fd, "w", encoding="utf-8") as f:
    json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}, f)
  return True


def acquire(workdir: str) -> str:
  """Takes the workdir's lock (taking over a stale one); returns its path."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK)
  for _ in range(3):  # create; else judge the holder, remove a stale lock, retry
    if _create(path):
      return path
    holder = _read(path)
    pid, host = holder.get("pid"), holder.get("host")
    if host == socket.gethostname() and isinstance(pid, int) and _alive(pid):
      raise Busy(f"{workdir}: in use by process {pid} on {host} ({path}); wait for it to end, "
                 "stop it, or use another --workdir")
    if host not in (None, socket.gethostname()):
      raise Busy(f"{workdir}: in use by process {pid} on host {host} ({path}); if that process "
                 "is gone, delete the file, else use another --workdir")
    log.warning("%s: taking over the stale lock of process %s on %s (no such process)", workdir,
                pid, host)
    with contextlib.suppress(FileNotFoundError):
      os.remove(path)
  raise Busy(f"{workdir}: could not take {path}; another process keeps taking it")


def release(path: str) -> None:
  """Removes the lock file when it is still this process's."""
  if _read(path).get("pid") == os.getpid():
    with contextlib.suppress(FileNotFoundError):
      os.remove(path)


@contextlib.contextmanager
def held(workdir: str):
  """The workdir's lock for the block (process 0 only in multi-process runs)."""
  if not artifacts.is_writer():
    yield
    return
  path = acquire(workdir)
  try:
    yield
  finally:
    release(path)
