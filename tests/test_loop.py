"""The LEAD loop end to end on a very small config (tests/loop_config.py), run
as the command line runs it: outputs, accounting, kill -9 and resume, bad input.

Every run is a subprocess (as a user runs it, and so that kill -9 is real);
they share a persistent JAX compilation cache so that only the first compiles.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from lead_jax import accounting, outputs
from configs import default

pytestmark = pytest.mark.slow  # subprocess end-to-end runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVER = os.path.join(ROOT, "tests", "loop_driver.py")
CONFIG = os.path.join("tests", "loop_config.py")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  cache = tmp_path_factory.getbasetemp() / "jax_cache"
  return dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(cache),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", LOOP_PAUSE="")


def run_loop(env, workdir, *flags, pause="", timeout=300):
  """Runs the loop in a subprocess; with `pause`, kills it -9 once paused there."""
  marker = f"{workdir}.paused"
  e = dict(env, LOOP_PAUSE=pause, LOOP_PAUSE_FILE=marker)
  cmd = [sys.executable, DRIVER, "--config", CONFIG, "--workdir", str(workdir), *flags]
  if not pause:
    return subprocess.run(cmd, cwd=ROOT, env=e, capture_output=True, text=True, timeout=timeout)
  proc = subprocess.Popen(cmd, cwd=ROOT, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
  deadline = time.monotonic() + timeout
  while not os.path.exists(marker):
    if proc.poll() is not None or time.monotonic() > deadline:
      proc.kill()
      raise AssertionError(f"never paused at {pause}: {proc.communicate()[1][-3000:]}")
    time.sleep(0.1)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  os.remove(marker)
  return proc


def _ok(proc):
  assert proc.returncode == 0, proc.stderr[-4000:]


def _final(workdir) -> dict:
  with open(os.path.join(workdir, "final_metrics.json")) as f:
    final = json.load(f)
  final.pop("wall_seconds")
  return final


@pytest.fixture(scope="module")
def lead(env, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("lead") / "run"
  _ok(run_loop(env, workdir))
  return workdir


def test_lead_run_writes_every_output(lead):
  final = json.load(open(lead / "final_metrics.json"))
  for key in ("exact_match", "test_loss", "samples_selected", "train_steps", "wall_seconds",
              "forward_sample_passes", "per_task_exact_match", "idu_loss_spearman",
              "idu0_loss_spearman"):
    assert key in final and final[key] is not None, key
  n = final["pool_size"]
  assert final["forward_sample_passes"] == 3 * n == final["declared_scoring_passes"]
  assert final["iterations"] == 3 and 0 < final["samples_selected"] <= final["budget"]
  assert final["samples_trained"] == final["samples_selected"]
  tasks = default.TASKS.split(",")  # the default lake's tasks (tests/loop_config.py keeps them)
  assert sorted(final["per_task_exact_match"]) == sorted(tasks)
  # accounting adds up, and agrees with the final metrics
  acct = json.load(open(lead / "accounting.json"))
  accounting.check(acct)
  assert acct["phases"]["training"]["totals"]["backward_samples"] == final["train_sample_passes"]
  assert acct["wall_seconds"]["total"] == pytest.approx(final["wall_seconds"], abs=0.01)
  test_samples = 2 * len(tasks)  # test_per_task = 2 (tests/loop_config.py)
  assert acct["phases"]["evaluation"]["activities"]["test_loss"]["forward_samples"] == test_samples
  # selected.jsonl: every field, use counts, consistent with the iterations
  picked = outputs.read_jsonl(lead / "selected.jsonl")
  assert set(picked[0]) == {"id", "source_id", "iteration", "cluster", "task", "idu", "use_count"}
  assert len({r["id"] for r in picked}) == final["samples_selected"]
  assert sum(r["use_count"] == 1 for r in picked) == final["samples_selected"]
  assert {r["iteration"] for r in picked} == {0, 1, 2}
  arms = outputs.read_jsonl(lead / "bandit.jsonl")
  assert [r["iteration"] for r in arms] == [0, 1, 2]
  for r in arms:
    assert sum(r["probabilities"]) == pytest.approx(1.0)
    assert min(r["probabilities"]) >= 0.1 / len(r["probabilities"]) - 1e-12
    assert all(p["cluster"] == r["arm"] for p in picked if p["iteration"] == r["iteration"])
  assert sorted(os.listdir(lead / "idu")) == [
      "idu_0000.npz", "idu_0001.npz", "idu_0002.npz", "idu_init.npz"
  ]
  assert sorted(os.listdir(lead / "plots")) == [
      "bandit_probabilities.png", "idu_vs_loss.png", "selections.png"
  ]
  # the IDU snapshots move only the samples trained in that iteration
  before, after = (np.load(lead / "idu" / n)["idu_N"] for n in ("idu_init.npz", "idu_0000.npz"))
  moved = set(np.flatnonzero(before != after).tolist())
  assert moved <= {r["id"] for r in picked if r["iteration"] == 0} and moved


def test_random_run_at_its_budget(env, tmp_path):
  _ok(
      run_loop(env, tmp_path / "random", "--config.method=random",
               "--config.loop.static_epochs=2.5"))
  final = json.load(open(tmp_path / "random" / "final_metrics.json"))
  assert final["samples_selected"] == final["budget"] == int(0.2 * final["pool_size"])
  assert final["iterations"] == 1 and final["forward_sample_passes"] == 0
  assert final["train_sample_passes"] == round(2.5 * final["budget"])
  assert final["samples_trained"] == final["budget"]
  assert final["train_steps"] == 2 * -(-final["budget"] // 8) + -(-final["budget"] // 2 // 8)
  assert not os.path.exists(tmp_path / "random" / "bandit.jsonl")
  accounting.check(json.load(open(tmp_path / "random" / "accounting.json")))


def _host(workdir) -> dict:
  """The newest checkpoint's host state (IDU table, bandit, use counts, ...)."""
  from lead_jax.train import build
  from lead_jax.train import checkpoint
  from lead_jax.train import optim
  from loop_config import get_config
  config = get_config()
  tx, _ = optim.make(config.optim)
  abstract, _ = build.abstract_state(build.model_config(config.model, config.lora), tx)
  manager = checkpoint.Manager(os.path.join(workdir, "checkpoints"), config.checkpoint)
  try:
    return manager.restore(abstract)[1]
  finally:
    manager.close()


def test_killed_runs_resume_to_the_uninterrupted_result(env, lead, tmp_path):
  """kill -9 inside iteration 1 (checkpoint 1 exists), then inside the save of
  checkpoint 2 (its outputs written, not committed), then a clean rerun: the
  same selections, bandit, IDU table and final metrics as the run never killed."""
  workdir = tmp_path / "run"
  run_loop(env, workdir, pause="iteration:1")
  assert sorted(os.listdir(workdir / "checkpoints")) == ["1"]
  run_loop(env, workdir, pause="checkpoint:2")
  assert os.path.exists(workdir / "checkpoints" / "1")
  assert any(r["iteration"] == 1 for r in outputs.read_jsonl(workdir / "selected.jsonl"))
  _ok(run_loop(env, workdir))
  for name in ("selected.jsonl", "bandit.jsonl"):
    assert open(workdir / name).read() == open(lead / name).read(), name
  assert _final(workdir) == _final(lead)
  for name in os.listdir(lead / "idu"):
    np.testing.assert_array_equal(
        np.load(workdir / "idu" / name)["idu_N"],
        np.load(lead / "idu" / name)["idu_N"])
  host_a, host_b = _host(workdir), _host(lead)
  assert host_a["rng_state"] == host_b["rng_state"] and host_a["history"] == host_b["history"]
  for key in ("arms", "table", "sel"):
    for name in host_b[key]:
      np.testing.assert_array_equal(host_a[key][name], host_b[key][name])
  np.testing.assert_array_equal(host_a["trained_N"], host_b["trained_N"])
  strip = lambda rs: [{k: v for k, v in r.items() if k != "wall_seconds"} for r in rs]
  assert strip(outputs.read_jsonl(workdir / "metrics.jsonl")) == strip(
      outputs.read_jsonl(lead / "metrics.jsonl"))


@pytest.mark.parametrize("which", ["train", "test"])
def test_bad_input_ends_with_the_data_layers_one_line_error(env, tmp_path, which):
  good = json.dumps({
      "dataset": "t", "id": "a", "messages": [{"role": "user", "content": "hi"},
                                              {"role": "assistant", "content": "yo"}]
  })
  if which == "train":
    bad = good + "\n{not json\n"
  else:  # a test record must end with the reference answer
    bad = json.dumps({
        "dataset":
            "t", "id":
                "b", "messages": [{"role": "user", "content": "hi"}, {
                    "role": "assistant", "content": "yo"
                }, {"role": "user", "content": "and?"}]
    }) + "\n"
  path = tmp_path / f"{which}.jsonl"
  path.write_text(bad)
  other = tmp_path / "good.jsonl"
  other.write_text("\n".join([good.replace('"a"', f'"{i}"') for i in range(40)]) + "\n")
  paths = {"train": other, "test": other, which: path}
  proc = subprocess.run([
      sys.executable, "-m", "experiments.run", "--config", "configs/default.py", "--workdir",
      str(tmp_path / "w"), f"--config.data.train_path={paths['train']}",
      f"--config.data.test_path={paths['test']}"
  ], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-2000:]
  assert lines[0].startswith("error: ") and str(path) in lines[0]
  assert not os.path.exists(tmp_path / "w" / "checkpoints")


def test_reducible_reference_run_books_the_cross_fit_and_records_both_scores(env, lead, tmp_path):
  """idu.reference=warmup: two half-size warmups and one pass per warmup
  sample on top of LEAD's offline cost; selected.jsonl keeps the IDU and adds
  the reference loss and the reducible score the picks were ranked by."""
  workdir = tmp_path / "reducible"
  _ok(run_loop(env, workdir, "--config.idu.reference=warmup", "--config.idu.reference_weight=0.5"))
  final, base = _final(workdir), _final(lead)
  n, n_warm = final["pool_size"], round(0.1 * final["pool_size"])  # warmup_fraction 0.1
  assert final["forward_sample_passes"] == 3 * n + n_warm == final["declared_scoring_passes"]
  acts = json.load(open(workdir / "accounting.json"))["phases"]["offline"]["activities"]
  lead_acts = json.load(open(lead / "accounting.json"))["phases"]["offline"]["activities"]
  assert set(acts) - set(lead_acts) == {"crossfit_train", "crossfit_il"}
  assert acts["crossfit_train"]["backward_samples"] == n_warm  # 1 epoch over both halves
  assert acts["crossfit_il"]["forward_samples"] == n_warm
  assert acts["crossfit_il"]["backward_samples"] == 0
  assert all(acts[a] == lead_acts[a] for a in lead_acts)  # the rest as without the reference
  picked = outputs.read_jsonl(workdir / "selected.jsonl")
  assert set(picked[0]) == {
      "id", "source_id", "iteration", "cluster", "task", "idu", "reference", "reducible",
      "use_count"
  }
  for r in picked:
    assert r["reducible"] == pytest.approx(r["idu"] - 0.5 * r["reference"], rel=1e-6, abs=1e-6)
  for t in {r["iteration"] for r in picked}:  # ranked by the reducible score
    got = [r["reducible"] for r in picked if r["iteration"] == t]
    assert got == sorted(got, reverse=True)
  assert final["iterations"] == base["iterations"] == 3


def test_a_bad_reference_fails_before_anything_runs(env, tmp_path):
  for flag, field in (("--config.idu.reference=base", "idu.reference='base'"),
                      ("--config.idu.reference_weight=-1.0", "idu.reference_weight=-1.0")):
    proc = run_loop(env, tmp_path / "w", flag)
    assert proc.returncode != 0
    last = [l for l in proc.stderr.splitlines() if l.strip()][-1]
    assert last.startswith(f"ValueError: {field}"), proc.stderr[-2000:]
    assert not os.path.exists(tmp_path / "w")  # nothing loaded, nothing written
