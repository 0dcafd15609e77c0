"""The LEAD loop end to end on a very small config (tests/loop_config.py), run
as the command line runs it: outputs, accounting, kill -9 and resume, bad input.

Every run is a subprocess (as a user runs it, and so that kill -9 is real);
they share a persistent JAX compilation cache so that only the first compiles.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from lead_jax import accounting, lock, outputs
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


def run_loop(env, workdir, *flags, pause="", timeout=300, signal_at=("", "")):
  """Runs the loop in a subprocess; with `pause`, kills it -9 once paused there;
  with `signal_at=(point, "TERM" | "INT")`, the process signals itself there."""
  marker = f"{workdir}.paused"
  e = dict(env, LOOP_PAUSE=pause or signal_at[0], LOOP_PAUSE_FILE=marker, LOOP_SIGNAL=signal_at[1])
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
  """The LEAD run the other tests compare with; it also exports its final model
  into `<workdir>/../export` (loop.export_dir)."""
  workdir = tmp_path_factory.mktemp("lead") / "run"
  _ok(run_loop(env, workdir, f"--config.loop.export_dir={workdir.parent / 'export'}"))
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


def test_lead_run_exports_its_final_model_and_its_selection(lead, tmp_path):
  """loop.export_dir holds the final checkpoint's model (what export_model
  writes from the workdir, byte for byte, but for the base's path in
  adapter_config.json); the selection export gives the
  lake's own records of the selected samples."""
  from experiments import export_model
  from lead_jax.selection import export as selection_export
  out = lead.parent / "export"
  manifest = json.loads((out / "export.json").read_text())
  assert manifest["iteration"] == 3 and manifest["method"] == "lead" and manifest["base_written"]
  assert sorted(os.listdir(out)) == ["adapter", "base", "export.json", "merged"]
  again = export_model.export_workdir(str(lead), str(tmp_path / "again"))
  for d in ("merged", "adapter", "base"):  # adapter_config.json names its own base/
    mine, loops = ({k: v
                    for k, v in m["files"][d].items()
                    if k != "adapter_config.json"}
                   for m in (again, manifest))
    assert mine == loops, d
  # the command, on one device (the run had 8): the checkpoint restores onto any topology
  proc = subprocess.run([
      sys.executable, "-m", "experiments.export_model", "--workdir",
      str(lead), "--out",
      str(tmp_path / "cli")
  ], cwd=ROOT, env=dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1"),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip().splitlines()[-1].startswith(f"wrote {tmp_path / 'cli'}: merged/")
  cli = json.loads((tmp_path / "cli" / "export.json").read_text())
  assert cli["files"]["merged"] == again["files"]["merged"]
  final = json.loads((lead / "final_metrics.json").read_text())
  picked = outputs.read_jsonl(lead / "selected.jsonl")
  n, _ = selection_export.write(str(lead), str(tmp_path / "sel.jsonl"))
  records = outputs.read_jsonl(tmp_path / "sel.jsonl")
  assert n == len(records) == final["samples_selected"]
  assert [r["id"] for r in records] == list(dict.fromkeys(p["source_id"] for p in picked))
  assert all({"dataset", "id", "tier", "messages"} <= set(r) for r in records)
  n, _ = selection_export.write(str(lead), str(tmp_path / "rep.jsonl"), repeats=True)
  assert n == final["train_sample_passes"] == len(picked)


def test_a_checkpoint_resumes_only_under_the_settings_it_was_made_with(env, lead, tmp_path):
  """A finished run's workdir rerun with another bandit.gamma and select.t_max:
  one line naming the first changed field, status 2, before anything is
  built (its config.json is not rewritten)."""
  workdir = tmp_path / "run"
  shutil.copytree(lead, workdir, ignore=shutil.ignore_patterns("export"))
  config_before = (workdir / "config.json").read_text()
  proc = run_loop(env, workdir, "--config.bandit.gamma=0.2", "--config.select.t_max=5")
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert proc.stderr.strip().splitlines()[-1] == (
      f"error: {workdir}: its checkpoints were made with bandit.gamma=0.1 (this run: 0.2) and 1 "
      "more; rerun with the checkpoint's settings to resume, or use a fresh --workdir")
  assert (workdir / "config.json").read_text() == config_before
  host = _host(workdir)
  assert host["settings"]["select.t_max"] == 3 and host["settings"]["seed"] == 0


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
  one = jax.sharding.SingleDeviceSharding(jax.devices()[0])  # whatever mesh saved it
  abstract = checkpoint.abstract(abstract, jax.tree.map(lambda _: one, abstract))
  manager = checkpoint.Manager(os.path.join(workdir, "checkpoints"), config.checkpoint)
  try:
    return manager.restore(abstract)[1]
  finally:
    manager.close()


KILLS_PER_PHASE = int(os.environ.get("LEAD_KILLS_PER_PHASE", "2"))  # 1 to 3 (3 iterations)
ARTIFACT_PHASES = ("offline:warmup", "offline:ifd", "offline:base_loss", "offline:clusters")


def _same_as_uninterrupted(workdir, lead, logged_rel: float = 0.0) -> None:
  """The uninterrupted run's selections, bandit file, IDU tables, host state
  (bandit, IDU table, use counts, Generator, history) and final metrics. With
  `logged_rel`, the floats of the logged records (history, metrics.jsonl) to
  that relative tolerance, the rest still exactly."""
  for name in ("selected.jsonl", "bandit.jsonl"):
    assert open(workdir / name).read() == open(lead / name).read(), name
  assert _final(workdir) == _final(lead)
  for name in os.listdir(lead / "idu"):
    np.testing.assert_array_equal(
        np.load(workdir / "idu" / name)["idu_N"],
        np.load(lead / "idu" / name)["idu_N"])
  host_a, host_b = _host(workdir), _host(lead)

  def logged(records, rel=0.0):  # wall time aside
    near = lambda v: pytest.approx(v, rel=rel) if rel and isinstance(v, float) else v
    return [{k: near(v) for k, v in r.items() if k != "wall_seconds"} for r in records]

  assert host_a["rng_state"] == host_b["rng_state"]
  assert logged(host_a["history"]) == logged(host_b["history"], logged_rel)
  for key in ("arms", "table", "sel"):
    for name in host_b[key]:
      np.testing.assert_array_equal(host_a[key][name], host_b[key][name])
  np.testing.assert_array_equal(host_a["trained_N"], host_b["trained_N"])
  assert logged(outputs.read_jsonl(workdir / "metrics.jsonl")) == logged(
      outputs.read_jsonl(lead / "metrics.jsonl"), logged_rel)


def test_kill_9_in_every_phase_then_the_same_command(env, lead, tmp_path):
  """kill -9 inside each phase in turn, at a seeded random moment of it
  (`LOOP_KILL`: 0-2 s after it began, or as it returns if sooner): each offline
  artifact's computation, an iteration, a checkpoint save, the final evaluation
  and the report; and once at a fixed point, inside checkpoint 1's save with
  every item written and orbax's commit rename about to run. Every run is the
  same command on the same workdir; the last one ends with the uninterrupted
  run's outputs and state. LEAD_KILLS_PER_PHASE=N kills N times per phase."""
  workdir = tmp_path / "run"
  rng = np.random.default_rng(20261202)
  n = KILLS_PER_PHASE
  phases = [p for p in ARTIFACT_PHASES for _ in range(n)] + ["pause"]
  phases += ["iteration", "checkpoint"] * n  # iteration t, save t (or t - 1), iteration t + 1, ...
  phases += ["evaluation"] * n + ["report"] * n
  kills = [(phase, rng.uniform(0.0, 2.0)) for phase in phases]
  cmd = [sys.executable, DRIVER, "--config", CONFIG, "--workdir", str(workdir)]
  for phase, delay in kills:
    if phase == "pause":  # every item of checkpoint 1 written, not committed
      run_loop(env, workdir, pause="checkpoint:1")
      continue
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(env, LOOP_KILL=f"{phase}:0:{delay:.3f}"),
                          capture_output=True, text=True, timeout=300)
    # killed in the phase (the previous run's stale lock was taken over, or it would exit 2)
    assert proc.returncode == -signal.SIGKILL, (phase, proc.stderr[-3000:])
  assert not os.path.exists(workdir / "final_metrics.json")
  _ok(run_loop(env, workdir))
  _same_as_uninterrupted(workdir, lead)


def test_a_signal_checkpoints_the_iteration_and_the_rerun_resumes(env, lead, tmp_path, sig="TERM"):
  """SIGTERM inside iteration 1: the iteration finishes, checkpoint 2 is
  written, one line says where and how to resume, exit status 143; the rerun
  ends with the uninterrupted run's selections and final metrics. (SIGINT
  takes the same path: tests/test_preempt.py, tests/test_pretrain.py.)"""
  workdir = tmp_path / "run"
  proc = run_loop(env, workdir, signal_at=("iteration:1", sig))
  assert proc.returncode == 128 + getattr(signal, "SIG" + sig), proc.stderr[-3000:]
  assert proc.stderr.strip().splitlines()[-1] == (
      f"stopped by SIG{sig} after iteration 1; checkpoint in {workdir / 'checkpoints'}; "
      "rerun the same command to resume")
  assert "Traceback" not in proc.stderr
  assert sorted(os.listdir(workdir / "checkpoints")) == ["1", "2"]
  assert not os.path.exists(workdir / "final_metrics.json")
  assert not os.path.exists(workdir / lock.LOCK)  # released on the way out
  _ok(run_loop(env, workdir))
  for name in ("selected.jsonl", "bandit.jsonl"):
    assert open(workdir / name).read() == open(lead / name).read(), name
  assert _final(workdir) == _final(lead)


def test_a_full_disk_during_a_save_is_one_line_and_the_rerun_resumes(env, lead, tmp_path):
  """From the save of checkpoint 2 on, no file may grow past 2 KB (the disk is
  full): the run ends with one line and status 1, checkpoint 1 and the outputs
  are intact; the rerun (disk freed) ends as the uninterrupted run."""
  workdir = tmp_path / "run"
  proc = run_loop(dict(env, LOOP_FSIZE="2:2048"), workdir)
  assert proc.returncode == 1, proc.stderr[-3000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith(f"error: writing checkpoint 2 in {workdir / 'checkpoints'} failed (File "
                         "too large); free disk space")  # (orbax's writer threads log before it)
  manager_dir = workdir / "checkpoints"
  assert "1" in os.listdir(manager_dir) and "2" not in os.listdir(manager_dir)
  assert not os.path.exists(workdir / "final_metrics.json")
  _ok(run_loop(env, workdir))
  for name in ("selected.jsonl", "bandit.jsonl"):
    assert open(workdir / name).read() == open(lead / name).read(), name
  assert _final(workdir) == _final(lead)


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


def _free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


def _two_processes(env, workdir, signal_process_1=False):
  """The loop as two `jax.distributed` CPU processes of 4 devices each (gloo
  collectives) on one workdir; `[(returncode, stderr, trace records)]`."""
  port, procs = _free_port(), []
  for i in range(2):
    trace = f"{workdir}.trace{i}"
    if os.path.exists(trace):
      os.remove(trace)
    e = dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=4", LOOP_TRACE=trace,
             LOOP_PAUSE="iteration:1" if signal_process_1 and i == 1 else "",
             LOOP_SIGNAL="TERM" if signal_process_1 and i == 1 else "")
    cmd = [
        sys.executable, DRIVER, "--config", CONFIG, "--workdir",
        str(workdir), "--config.mesh.distributed=True",
        f"--config.mesh.coordinator_address=127.0.0.1:{port}", "--config.mesh.num_processes=2",
        f"--config.mesh.process_id={i}"
    ]
    procs.append((subprocess.Popen(cmd, cwd=ROOT, env=e, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True), trace))
  out = []
  for proc, trace in procs:
    try:
      _, err = proc.communicate(timeout=400)
    except subprocess.TimeoutExpired:
      for p, _ in procs:
        p.kill()
      raise
    records = outputs.read_jsonl(trace) if os.path.exists(trace) else []
    out.append((proc.returncode, err, records))
  return out


def test_two_distributed_processes_match_one_process_of_8_devices(env, lead, tmp_path):
  """Two processes with `jax.distributed` (4 fake CPU devices each) against the
  one-process run on 8: SIGTERM reaches process 1 alone inside iteration 1, both
  stop after that iteration with the same checkpoint; the rerun of both restores
  it (the same step and state in each) and ends with the one-process run's
  selections, bandit file, IDU tables, host state and final metrics. Process 1
  writes nothing in the workdir but its part of orbax's checkpoints."""
  workdir = tmp_path / "run"
  stopped = _two_processes(env, workdir, signal_process_1=True)
  line = (f"stopped by SIGTERM after iteration 1; checkpoint in {workdir / 'checkpoints'}; "
          "rerun the same command to resume")
  for code, err, _ in stopped:
    assert code == 143 and err.strip().splitlines()[-1] == line, err[-3000:]
  assert sorted(os.listdir(workdir / "checkpoints")) == ["1", "2"]
  resumed = _two_processes(env, workdir)
  for code, err, _ in resumed:
    assert code == 0, err[-3000:]
  restores = [[r for r in records if "restore" in r] for _, _, records in resumed]
  assert restores[0] == restores[1] and [r["restore"] for r in restores[0]] == [2]
  # process 1 writes only its own shards' metadata in orbax's multi-process checkpoint protocol
  own = lambda path: path.startswith("checkpoints/") and "/process_1" in path
  assert [r for r in stopped[1][2] + resumed[1][2] if "write" in r and not own(r["write"])] == []
  assert {r["write"].split("/")[0] for r in stopped[0][2] if "write" in r
         } >= {"offline", "data", "checkpoints", "selected.jsonl", "bandit.jsonl", lock.LOCK}
  # a logged mean loss may differ in float32's last digit: the reduction over
  # two processes adds in another order than the one over 8 local devices
  _same_as_uninterrupted(workdir, lead, logged_rel=1e-6)


SCHEDULES = ("--config.select.clusters_per_iteration=2", "--config.loop.replay_fraction=0.25")


@pytest.fixture(scope="module")
def schedules(env, tmp_path_factory):
  """LEAD with both schedules against forgetting on: 2 of the 3 clusters per
  iteration, a quarter of every pass replayed from earlier selections."""
  workdir = tmp_path_factory.mktemp("schedules") / "run"
  _ok(run_loop(env, workdir, *SCHEDULES))
  return workdir


def test_two_clusters_per_iteration_are_drawn_rewarded_and_recorded(schedules):
  final = json.load(open(schedules / "final_metrics.json"))
  lines = outputs.read_jsonl(schedules / "bandit.jsonl")
  picked = outputs.read_jsonl(schedules / "selected.jsonl")
  assert [(r["iteration"], r["draw"]) for r in lines] == [(t, j) for t in range(3) for j in (0, 1)]
  host = _host(schedules)
  assert host["arms"]["pulls_C"].sum() == 6 and len(host["arms"]["rewards_H"]) == 6
  idu_before = np.load(schedules / "idu" / "idu_init.npz")["idu_N"]
  for t in range(3):
    first, second = (r for r in lines if r["iteration"] == t)
    assert first["arm"] != second["arm"]
    np.testing.assert_allclose(first["drawn_with"], first["probabilities"])
    q = np.array(first["probabilities"])
    q[first["arm"]] = 0.0
    np.testing.assert_allclose(second["drawn_with"], q / q.sum())
    # selected.jsonl: the union of the two clusters, each selected alone
    assert {p["cluster"] for p in picked if p["iteration"] == t} == {first["arm"], second["arm"]}
    # each arm's reward is the IDU drop over its own samples (idu_gain), and
    # only S_t moved in the table (replayed rows leave it alone)
    idu_after = np.load(schedules / "idu" / f"idu_{t:04d}.npz")["idu_N"]
    ids_t = {p["id"] for p in picked if p["iteration"] == t}
    assert set(np.flatnonzero(idu_before != idu_after).tolist()) <= ids_t
    for line in (first, second):
      ids = [p["id"] for p in picked if p["iteration"] == t and p["cluster"] == line["arm"]]
      gain = (idu_before[ids].astype(np.float64) - idu_after[ids]).mean()
      assert line["reward"] == pytest.approx(gain, rel=1e-9, abs=1e-12)
    idu_before = idu_after
  np.testing.assert_allclose(host["arms"]["rewards_H"], [r["reward"] for r in lines])
  np.testing.assert_allclose(host["arms"]["log_w_C"], lines[-1]["log_weights"])
  assert final["samples_selected"] == len({p["id"] for p in picked}) <= final["budget"]


def test_replay_mixes_earlier_samples_and_books_them(schedules):
  final = json.load(open(schedules / "final_metrics.json"))
  rows = [r for r in outputs.read_jsonl(schedules / "metrics.jsonl") if r["split"] == "iteration"]
  picked = outputs.read_jsonl(schedules / "selected.jsonl")
  assert "replayed" not in rows[0]  # iteration 0: nothing selected before
  want = [0] + [round(0.25 * r["selected"] / 0.75) for r in rows[1:]]
  assert [r.get("replayed", 0) for r in rows] == want and sum(want) > 0
  acct = json.load(open(schedules / "accounting.json"))
  accounting.check(acct)
  training = acct["phases"]["training"]["activities"]
  assert training["replay_train"]["backward_samples"] == sum(want)
  assert training["train"]["backward_samples"] == sum(r["selected"] for r in rows) == len(picked)
  assert final["replay_sample_passes"] == sum(want)
  assert final["train_sample_passes"] == len(picked) + sum(want)
  assert final["train_sample_passes"] == acct["phases"]["training"]["totals"]["backward_samples"]
  # replay counts no use: the use counts are the selections
  assert int(_host(schedules)["sel"]["use_count_N"].sum()) == len(picked)


def test_killed_runs_with_both_schedules_resume_to_the_uninterrupted_result(
    env, schedules, tmp_path):
  """As test_killed_runs_resume_to_the_uninterrupted_result, with two arms per
  iteration (idu.update runs twice per iteration: call 2 is iteration 1's
  first arm) and replay on."""
  workdir = tmp_path / "run"
  run_loop(env, workdir, *SCHEDULES, pause="iteration:2")
  assert sorted(os.listdir(workdir / "checkpoints")) == ["1"]
  run_loop(env, workdir, *SCHEDULES, pause="checkpoint:2")
  _ok(run_loop(env, workdir, *SCHEDULES))
  _same_as_uninterrupted(workdir, schedules)
  a, b = (
      json.load(open(w / "accounting.json"))["phases"]["training"] for w in (workdir, schedules))
  assert a == b


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
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = [l for l in proc.stderr.splitlines() if l.strip()][-1]
    assert last.startswith(f"error: {field}"), proc.stderr[-2000:]
    assert not os.path.exists(tmp_path / "w")  # nothing loaded, nothing written
