"""The main job: LEAD, then random at LEAD's distinct budget and training
sample-passes, the side-by-side table; a rerun reuses the finished runs."""

import json
import os
import subprocess
import sys

import pytest

from configs import default
from lead_jax import report

pytestmark = pytest.mark.slow  # subprocess end-to-end runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(env, workdir):
  return subprocess.run([
      sys.executable, "-m", "experiments.main", "--config", "tests/loop_config.py", "--workdir",
      str(workdir)
  ], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  cache = tmp_path_factory.getbasetemp() / "jax_cache"
  return dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(cache),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")


def test_main_runs_lead_and_random_at_the_same_budget(env, tmp_path):
  proc = _main(env, tmp_path)
  assert proc.returncode == 0, proc.stderr[-4000:]
  summary = json.load(open(tmp_path / "summary.json"))["runs"]
  lead, rand = summary["lead"], summary["random"]
  assert rand["samples_selected"] == lead["samples_selected"]
  assert rand["train_sample_passes"] == lead["train_sample_passes"]
  assert rand["forward_sample_passes"] == 0 < lead["forward_sample_passes"]
  for name in ("lead", "random"):  # one line per phase with its time
    for phase in ("set-up and offline stage: ", " iteration", "final evaluation and report: "):
      assert phase in "\n".join(l for l in proc.stdout.splitlines() if l.startswith(f"{name}: "))
  assert "PyTorch was not found" not in proc.stdout + proc.stderr
  table = open(tmp_path / "summary.md").read()
  assert table in proc.stdout and "| metric | lead | random |" in table
  for label, _ in report.ROWS:
    assert f"| {label} |" in table
  for task in default.TASKS.split(","):  # a per-task row for each task of the default lake
    assert f"| exact match: {task} |" in table
  again = _main(env, tmp_path)  # finished runs are reused, not run again
  assert again.returncode == 0 and again.stdout.count("finished before") == 2
  assert os.path.getmtime(tmp_path / "lead" / "final_metrics.json") < os.path.getmtime(tmp_path /
                                                                                       "summary.md")


def test_table_formats_missing_values():
  text = report.table({
      "a": {"exact_match": 0.5, "per_task_exact_match": {"x": 1.0}},
      "b": {"exact_match": None, "wall_seconds": 12345.6}
  })
  assert "| exact match (overall) | 0.500 | - |" in text
  assert "| wall seconds | - | 12346 |" in text and "| exact match: x | 1.000 | - |" in text
  assert "| training token-passes | - | - |" in text
  both = report.table({"a": {"train_sample_passes": 40, "train_token_passes": 2400}})
  assert "| training sample-passes | 40 |" in both and "| training token-passes | 2400 |" in both
