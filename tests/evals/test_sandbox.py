"""Hostile programs in the sandbox: contained, reported as failures, harness goes on."""

import hashlib
import os
import socket
import textwrap
import threading
import time

import pytest

from lead_jax.evals import sandbox

MEMORY_MB = 256


def _snapshot(root):
  """{relative path: sha256 of contents (or 'dir')} of everything under root."""
  snap = {}
  for dirpath, dirnames, filenames in os.walk(root):
    for d in dirnames:
      snap[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
    for f in filenames:
      path = os.path.join(dirpath, f)
      with open(path, "rb") as fh:
        snap[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
  return snap


@pytest.fixture
def sandbox_root(tmp_path):
  root = tmp_path / "sandbox_tmp"
  root.mkdir()
  yield str(root)
  assert os.listdir(root) == [], "the temporary working directory was not removed"


def _run(program, sandbox_root, timeout_s=2.0, **kw):
  return sandbox.execute(
      textwrap.dedent(program), timeout_s, MEMORY_MB, tmp_root=sandbox_root, **kw)


def test_correct_program_passes_and_output_is_captured(sandbox_root):
  r = _run(
      """
      def add(a, b):
          return a + b
      assert add(2, 3) == 5
      print("all good")
      """, sandbox_root)
  assert r.status == "passed" and r.passed and r.output == "all good\n"
  assert "guard" in r.isolation


def test_failing_assertion_and_syntax_error_fail(sandbox_root):
  assert _run("assert 1 == 2, 'wrong'", sandbox_root).status == "failed"
  r = _run("def f(:\n  pass", sandbox_root)
  assert r.status == "failed" and "SyntaxError" in r.output


def test_infinite_loop_times_out_and_the_group_is_killed(sandbox_root):
  start = time.monotonic()
  r = _run("while True:\n    pass", sandbox_root, timeout_s=1.0)
  assert r.status == "timeout"
  assert time.monotonic() - start < 5


def test_sleeping_program_times_out(sandbox_root):
  r = _run("import time\ntime.sleep(60)", sandbox_root, timeout_s=0.5)
  assert r.status == "timeout" and r.duration_s < 5


@pytest.mark.parametrize("program", [
    "import os\nwhile True:\n    os.fork()",
    "import posix\nwhile True:\n    posix.fork()",
    "import subprocess\nsubprocess.run(['sh', '-c', ':(){ :|:& };:'])",
    "import multiprocessing\nps = [multiprocessing.Process(target=print) for _ in range(99)]\n"
    "[p.start() for p in ps]",
    "import ctypes\nctypes.CDLL(None).fork()",
])
def test_fork_bombs_fail(program, sandbox_root):
  r = _run(program, sandbox_root)
  assert r.status == "failed", r.output


def test_forked_children_die_with_the_process_group(sandbox_root):
  # With the Python guard off, only the OS layer stands: children that
  # outlive the program must be killed with its process group.
  r = _run(
      """
      import os, time
      for _ in range(3):
          pid = os.fork()
          if pid == 0:
              time.sleep(60)
              os._exit(0)
          print(pid, flush=True)
      """, sandbox_root, python_guard=False)
  assert r.status == "passed", r.output
  pids = [int(x) for x in r.output.split()]
  assert len(pids) == 3
  deadline = time.monotonic() + 5
  while time.monotonic() < deadline and any(_alive(p) for p in pids):
    time.sleep(0.05)
  assert not any(_alive(p) for p in pids)


def _alive(pid):
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().split(")")[-1].split()[0] not in ("Z", "X")
  except FileNotFoundError:
    return False


@pytest.mark.parametrize("program", [
    "x = bytearray(4 * 1024 ** 3)",
    "blocks = []\nwhile True:\n    blocks.append(bytearray(10 * 1024 ** 2))",
])
def test_memory_hogs_fail(program, sandbox_root):
  r = _run(program, sandbox_root)
  assert r.status == "failed" and "MemoryError" in r.output


def test_file_destruction_outside_is_blocked(tmp_path, sandbox_root):
  outside = tmp_path / "outside"
  (outside / "sub").mkdir(parents=True)
  (outside / "keep.txt").write_text("precious")
  (outside / "sub" / "also.txt").write_text("also precious")
  before = _snapshot(outside)
  target, sub = str(outside / "keep.txt"), str(outside / "sub")
  attacks = [
      f"import os\nos.remove({target!r})",
      f"import os\nos.unlink({target!r})",
      f"import shutil\nshutil.rmtree({str(outside)!r})",
      f"open({target!r}, 'w').write('gone')",
      f"import pathlib\npathlib.Path({target!r}).write_text('gone')",
      f"import pathlib\npathlib.Path({target!r}).unlink()",
      f"import os\nos.rename({target!r}, {target + '.moved'!r})",
      f"import os\nos.truncate({target!r}, 0)",
      f"import os\nfd = os.open({target!r}, os.O_WRONLY | os.O_TRUNC)",
      f"import io\nio.FileIO({target!r}, 'w')",
      f"import os\nos.mkdir({str(outside / 'new')!r})",
      f"import os\nos.system('rm -rf {outside}')",
      f"import posix\nposix.unlink({target!r})",
      f"import os\nfd = os.open({str(outside)!r}, os.O_RDONLY)\nos.unlink('keep.txt', dir_fd=fd)",
      f"import os\nos.symlink({target!r}, 'link')\nopen('link', 'w').write('gone')",
      f"import os\nos.chmod({target!r}, 0)",
      "import os\nos.rmdir(os.getcwd())",
  ]
  results = sandbox.execute_many(attacks, 2.0, MEMORY_MB, workers=2, tmp_root=sandbox_root)
  assert [r.status for r in results] == ["failed"] * len(attacks), [r.output for r in results]
  assert _snapshot(outside) == before


def test_files_inside_the_working_directory_are_allowed(sandbox_root):
  r = _run(
      """
      import os, tempfile
      with open("scratch.txt", "w") as f:
          f.write("ok")
      os.remove("scratch.txt")
      with tempfile.TemporaryFile() as f:
          f.write(b"x")
      """, sandbox_root)
  assert r.status == "passed", r.output


@pytest.fixture
def listener():
  server = socket.socket()
  server.bind(("127.0.0.1", 0))
  server.listen(8)
  server.settimeout(0.2)
  accepted, stop = [], threading.Event()

  def serve():
    while not stop.is_set():
      try:
        accepted.append(server.accept())
      except OSError:
        pass

  thread = threading.Thread(target=serve, daemon=True)
  thread.start()
  yield server.getsockname()[1], accepted
  stop.set()
  thread.join()
  server.close()


@pytest.mark.parametrize("guard", [True, False])
def test_network_connections_fail(listener, sandbox_root, guard):
  port, accepted = listener
  r = _run(
      f"""
      import socket
      s = socket.create_connection(("127.0.0.1", {port}), timeout=1)
      s.sendall(b"leak")
      """, sandbox_root, python_guard=guard)
  if not guard and "netns" not in r.isolation:
    pytest.skip("no network namespace on this machine: only the Python guard blocks sockets")
  assert r.status == "failed"
  time.sleep(0.3)
  assert accepted == []


def test_raw_socket_module_is_blocked(sandbox_root):
  r = _run("import _socket\n_socket.socket()", sandbox_root)
  assert r.status == "failed"


def test_huge_output_is_capped_and_fails(sandbox_root):
  limits = sandbox.Limits(output_bytes=4096)
  r = _run("while True:\n    print('x' * 1000)", sandbox_root, limits=limits)
  assert r.status == "failed" and r.truncated and len(r.output) <= 4096
  r = _run("import sys\nsys.stdout.write('y' * 10 ** 7)", sandbox_root, limits=limits)
  assert r.status == "failed" and r.truncated


def test_large_files_hit_the_size_limit(sandbox_root):
  limits = sandbox.Limits(max_file_bytes=1024 * 1024)
  r = _run("open('big', 'wb').write(b'z' * (8 * 1024 * 1024))", sandbox_root, limits=limits)
  assert r.status == "failed"


@pytest.mark.parametrize("program", [
    "import sys\nsys.exit(0)",
    "exit(0)",
    "import os\nos._exit(0)",
    "raise SystemExit",
])
def test_early_exits_do_not_pass(program, sandbox_root):
  assert _run(program, sandbox_root).status == "failed"
  assert _run(program, sandbox_root, python_guard=False).status == "failed"


def test_harness_keeps_going_after_hostile_programs(sandbox_root):
  programs = [
      "while True:\n    pass", "import os\nos.fork()", "x = bytearray(4 * 1024 ** 3)",
      "print('ok')", "import sys\nsys.exit(3)", "assert sum([1, 2]) == 3"
  ]
  statuses = [
      r.status
      for r in sandbox.execute_many(programs, 1.0, MEMORY_MB, workers=3, tmp_root=sandbox_root)
  ]
  assert statuses == ["timeout", "failed", "failed", "passed", "failed", "passed"]
