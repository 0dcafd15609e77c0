"""Suites: the aggregation's mean and sd on a fixture, the accounting check,
and a tiny two-method, two-seed suite run end to end by the launcher (one
subprocess per run) plus iterative re-scoring's N passes per iteration and
the two diagnostics (oracle, lead_replay) after their LEAD run."""

import collections
import csv
import json
import os
import subprocess
import signal
import sys
import time

import numpy as np
import pytest

from experiments import aggregate, suites
from lead_jax import accounting, artifacts, outputs

pytestmark = pytest.mark.slow  # subprocess end-to-end runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join("tests", "loop_config.py")


def _fake_run(results, variant, seed, loss, wall_parts, scoring=12):
  workdir = suites.run_dir(str(results), variant, seed)
  os.makedirs(workdir)
  ledger = accounting.add(accounting.empty(), "offline", "ifd",
                          {"forward_samples": scoring, "forward_tokens": 100})
  ledger = accounting.add(ledger, "training", "train",
                          {"forward_samples": 5, "backward_samples": 5})
  for phase, s in wall_parts.items():
    ledger = accounting.add_seconds(ledger, phase, s)
  acct = accounting.to_dict(ledger)
  final = {
      "pool_size": 100, "budget": 10, "exact_match": loss / 10, "test_loss": loss,
      "samples_selected": 10, "iterations": 2, "train_sample_passes": 5,
      "forward_sample_passes": scoring, "wall_seconds": accounting.wall_seconds(ledger)
  }
  artifacts.write_json(os.path.join(workdir, "accounting.json"), acct)
  artifacts.write_json(os.path.join(workdir, "final_metrics.json"), final)
  return workdir


def _fake_lake(workdir, picked):
  """A 4-record lake (2 tasks, tiers clean/clean/noisy/trivial) and a
  selected.jsonl that picks `picked` (ids, one of them twice)."""
  lake = os.path.join(workdir, "lake", "train.jsonl")
  os.makedirs(os.path.dirname(lake))
  tiers = {"a": ("t1", "clean"), "b": ("t1", "clean"), "c": ("t2", "noisy"), "d": ("t2", "trivial")}
  with open(lake, "w") as f:
    for i, (task, tier) in tiers.items():
      f.write(json.dumps({"dataset": task, "id": i, "tier": tier, "messages": []}) + "\n")
  with open(os.path.join(workdir, "selected.jsonl"), "w") as f:
    for i in picked + picked[:1]:
      f.write(json.dumps({"source_id": i, "task": tiers[i][0]}) + "\n")
  artifacts.write_json(os.path.join(workdir, "config.json"), {"data": {"train_path": ""}})


def test_suites_without_random_are_compared_with_lead(tmp_path):
  for seed, (a, b) in enumerate([(2.0, 3.0), (2.2, 3.4), (1.8, 3.2)]):
    _fake_run(tmp_path, "lead", seed, a, {"training": 1.0})
    _fake_run(tmp_path, "lead_no_idu", seed, b, {"training": 1.0})
  text = aggregate.aggregate("ablation", str(tmp_path), str(tmp_path / "out"))
  # held-out loss +1.2 over lead, se sqrt(0.04/3 + 0.04/3) = 0.163: +7.3 se
  assert "Against lead" in text and "| lead_no_idu | 3 | - | - | +1.200 | +7.3 |" in text


def test_aggregation_mean_sd_and_accounting_check(tmp_path):
  for seed, loss in enumerate([1.0, 2.0, 4.0]):
    wd = _fake_run(tmp_path, "lead", seed, loss, {"offline": 1.0 + seed, "training": 2.0})
    _fake_lake(wd, ["a", "c"] if seed < 2 else ["a", "b", "c", "d"])
  _fake_run(tmp_path, "random", 0, 3.0, {"training": 1.5})
  bad = _fake_run(tmp_path, "random", 1, 5.0, {"training": 1.5})
  acct = json.load(open(os.path.join(bad, "accounting.json")))
  acct["wall_seconds"]["total"] += 1.0  # a ledger whose phases do not add up
  artifacts.write_json(os.path.join(bad, "accounting.json"), acct)
  text = aggregate.aggregate("main", str(tmp_path), str(tmp_path / "out"))
  rows = {r["variant"]: r for r in csv.DictReader(open(tmp_path / "out" / "main.csv"))}
  assert rows["lead"]["n"] == "3"
  assert float(rows["lead"]["test_loss_mean"]) == pytest.approx(7 / 3)
  assert float(rows["lead"]["test_loss_sd"]) == pytest.approx(np.sqrt(7 / 3))  # ddof = 1
  assert float(rows["lead"]["wall_seconds_sd"]) == pytest.approx(1.0)
  assert float(rows["random"]["test_loss_mean"]) == pytest.approx(4.0)
  assert "2.333 ± 1.528" in text and "| lead | LEAD (all components) | 3 |" in text
  assert "1 failed" in text and "random/seed1: accounting: wall seconds" in text
  assert "Against random" in text and "| lead | 3 | - | - | -1.667 |" in text  # 7/3 - 4
  assert aggregate.mean_sd([2.0])[1] != aggregate.mean_sd([2.0])[1]  # n = 1: sd is nan
  assert len(list(csv.DictReader(open(tmp_path / "out" / "main_runs.csv")))) == 5
  assert os.path.exists(tmp_path / "out" / "plots" / "main_bars.png")
  # selected by tier: seeds 0, 1 pick {a: clean, c: noisy}, seed 2 the whole lake
  assert float(rows["lead"]["tier_clean_mean"]) == pytest.approx((0.5 + 0.5 + 0.5) / 3)
  assert float(rows["lead"]["tier_noisy_mean"]) == pytest.approx((0.5 + 0.5 + 0.25) / 3)
  assert float(rows["lead"]["top_task_share_mean"]) == pytest.approx(0.5)
  # tiers in synthetic.TIERS order: clean, noisy, trivial, overlong, duplicate, verbose,
  # off_format, refusal; then the largest task's share
  assert ("| (the pool) | | 50.0% | 25.0% | 25.0% | 0.0% | 0.0% | 0.0% | 0.0% | 0.0% | 50.0% |"
          in text)
  assert "| lead | 3 | 50.0% | 41.7% | 8.3% | 0.0% | 0.0% | 0.0% | 0.0% | 0.0% | 50.0% |" in text
  assert rows["random"]["tier_clean_mean"] == "nan"  # no lake: no mix, no error
  assert "| random | 2 | - | - |" in text


def _suite(results, env, *flags):
  return subprocess.run([
      sys.executable, "-m", "experiments.run_suite", "--suite=main", f"--results={results}",
      f"--config={CONFIG}", "--set=loop.plots=False", *flags
  ], cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
  results = tmp_path_factory.mktemp("suite")
  env = dict(os.environ,
             JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.getbasetemp() / "jax_cache"))
  proc = _suite(results, env, "--variants=random", "--seeds=0,1")
  assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
  return results, env, proc


def test_tiny_suite_runs_end_to_end_and_resumes(suite):
  results, env, proc = suite
  assert proc.stdout.count(": done") == 4  # the random runs pulled in their LEAD reference
  for seed in (0, 1):
    lead = suites.read_final(suites.run_dir(str(results), "lead", seed))
    rand = suites.read_final(suites.run_dir(str(results), "random", seed))
    assert rand["samples_selected"] == lead["samples_selected"]  # equal distinct budget
    assert rand["train_sample_passes"] == lead["train_sample_passes"]  # equal compute
    log = open(os.path.join(results, "logs", f"lead-seed{seed}.log")).read()
    assert "\r" not in log  # no progress bars in a log file
  acct = json.load(open(os.path.join(suites.run_dir(str(results), "lead", 0), "accounting.json")))
  decode = acct["phases"]["evaluation"]["activities"]["test_decode"]
  assert 0 < decode["forward_tokens"] <= 24 * 8  # test records x max_new_tokens
  again = _suite(results, env, "--variants=random", "--seeds=0,1")
  assert again.returncode == 0 and again.stdout.count(": skipped") == 4
  text = aggregate.aggregate("main", str(results), str(results / "tables"))
  assert "| lead |" in text and "| random |" in text and "every run adds up" in text


def test_iterative_rescore_scores_the_pool_every_iteration(suite):
  results, env, _ = suite
  proc = _suite(results, env, "--variants=iterative_rescore", "--seeds=0")
  assert proc.returncode == 0, proc.stderr[-3000:]
  workdir = suites.run_dir(str(results), "iterative_rescore", 0)
  final = suites.read_final(workdir)
  acct = json.load(open(os.path.join(workdir, "accounting.json")))
  accounting.check(acct)
  n, t = final["pool_size"], final["iterations"]
  assert t == 3  # T_max of the tiny config
  rescore = acct["phases"]["selection"]["activities"]["rescore"]
  assert rescore["forward_samples"] == n * t and rescore["backward_samples"] == 0
  assert final["forward_sample_passes"] == final["declared_scoring_passes"] == n * t
  assert "offline" not in {p for p, v in acct["phases"].items() if v["activities"]}
  per_iter = [
      r for r in outputs.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
      if r.get("split") == "iteration"
  ]
  assert len(per_iter) == t and all(r["selected"] > 0 for r in per_iter)


def test_main_suite_has_the_diagnostics_matched_to_lead():
  main = {v.name: v for v in suites.get("main")}
  oracle, replay = main["oracle"], main["lead_replay"]
  assert (oracle.method, oracle.matched_to) == ("oracle", "lead")
  assert (replay.method, replay.matched_to) == ("replay", "lead")
  assert "diagnostic" in oracle.label and "diagnostic" in replay.label
  lead = {"samples_selected": 40, "train_sample_passes": 100}
  assert suites.matched("oracle", lead) == suites.matched("random", lead)
  assert suites.matched("replay", lead, "/r/runs/lead/seed1") == {
      "select.budget_samples": 40, "select.replay_from": "/r/runs/lead/seed1"
  }
  with pytest.raises(ValueError, match="directory"):
    suites.matched("replay", lead)


def test_every_method_trains_with_its_natural_step(suite):
  """No suite forces one step on every method: `loop.train_step=auto` (the LEAD
  step for IDU methods, the plain step otherwise), in every run's command."""
  results, _, _ = suite
  for name in ("lead", "random"):
    run = json.load(open(os.path.join(suites.run_dir(str(results), name, 0), "suite_run.json")))
    assert "--config.loop.train_step=auto" in run["command"], name
  for variants in suites.SUITES.values():
    assert not any("loop.train_step" in v.overrides for v in variants)


def test_diagnostics_run_after_their_lead_run(suite):
  results, env, _ = suite
  proc = _suite(results, env, "--variants=oracle,lead_replay", "--seeds=0")
  assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
  assert proc.stdout.count(": done") == 2 and proc.stdout.count(": skipped") == 1  # lead reused
  lead_dir = suites.run_dir(str(results), "lead", 0)
  lead = suites.read_final(lead_dir)
  dirs = {n: suites.run_dir(str(results), n, 0) for n in ("oracle", "lead_replay")}
  runs = {n: suites.read_final(d) for n, d in dirs.items()}
  for final in runs.values():  # equal distinct budget and sample-passes
    assert final["samples_selected"] == lead["samples_selected"] == final["budget"]
    assert final["train_sample_passes"] == lead["train_sample_passes"]
  assert aggregate.selection_mix(dirs["oracle"])["tier_clean"] == 1.0
  # the replay trained LEAD's very multiset (so the same token-passes too)
  assert runs["lead_replay"]["train_token_passes"] == lead["train_token_passes"]
  assert runs["lead_replay"]["iterations"] == 1
  replayed = collections.Counter()
  for r in outputs.read_jsonl(os.path.join(dirs["lead_replay"], "selected.jsonl")):
    replayed[r["source_id"]] += r["passes"]
  assert replayed == collections.Counter(
      r["source_id"] for r in outputs.read_jsonl(os.path.join(lead_dir, "selected.jsonl")))
  command = json.load(open(os.path.join(dirs["lead_replay"], "suite_run.json")))["command"]
  assert f"--config.select.replay_from={lead_dir}" in command


def test_aggregation_against_random_and_per_task(tmp_path):
  for seed, (em_lead, em_rand) in enumerate([(0.2, 0.1), (0.3, 0.1), (0.4, 0.2)]):
    for variant, em in (("lead", em_lead), ("random", em_rand)):
      wd = _fake_run(tmp_path, variant, seed, 2.0 + seed, {"training": 1.0})
      final = json.load(open(os.path.join(wd, "final_metrics.json")))
      final.update(exact_match_macro=em, per_task_exact_match={"t1": em, "t2": 2 * em})
      artifacts.write_json(os.path.join(wd, "final_metrics.json"), final)
  text = aggregate.aggregate("main", str(tmp_path), str(tmp_path / "out"))
  # lead - random: mean 0.3 - 0.1333; se = sqrt(0.1^2/3 + 0.05774^2/3) = 0.06667
  diff = 0.3 - 0.4 / 3
  assert f"| lead | 3 | {diff:+.3f} | {diff / np.sqrt(0.01 / 3 + 0.01 / 9):+.1f} |" in text
  assert "| lead | 3 | +0.167 | +2.5 | +0.000 | +0.0 |" in text  # same losses: no difference
  assert "| variant | n | t1 | t2 |" in text and "| lead | 3 | 0.30 | 0.60 |" in text
  assert "| random | 3 | 0.13 | 0.27 |" in text


def test_efficiency_grows_the_default_lake_at_the_default_budget():
  from configs import default
  c = default.get_config()
  n, budget = c.data.synthetic.size, int(c.select.budget_fraction * c.data.synthetic.size)
  by_name = {v.name: v for v in suites.get("efficiency")}
  for m in (2, 4):
    for name in (f"lead_{m}N", f"iterative_rescore_{m}N"):
      over = by_name[name].overrides
      assert over["data.synthetic.size"] == m * n and over["select.budget_samples"] == budget
      assert over["select.sample_rate"] == pytest.approx(c.select.sample_rate / m)


def test_extensions_compare_each_lake_with_its_own_random(tmp_path):
  names = {v.name: v for v in suites.get("extensions")}
  assert names["random_lake2"].matched_to == "lead_lake2" and names["random"].matched_to == "lead"
  for name, v in names.items():  # every lake-2 run reads the second lake, no other run does
    assert (v.overrides.get("data.synthetic.seed") == 1) == name.endswith("_lake2"), name
  assert names["lead_all"].overrides["bandit.algo"] == "thompson"
  for seed, (lead, rand, lead2, rand2) in enumerate([(2.0, 3.0, 1.0, 1.5), (2.2, 3.2, 1.2, 1.4)]):
    for variant, loss in (("lead", lead), ("random", rand), ("lead_lake2", lead2), ("random_lake2",
                                                                                    rand2)):
      _fake_run(tmp_path, variant, seed, loss, {"training": 1.0})
  text = aggregate.aggregate("extensions", str(tmp_path), str(tmp_path / "out"))
  default, lake2 = text.split("**On lake 'lake2'.**")
  assert "Against random:" in default and "| lead | 2 | - | - | -1.000 |" in default
  # lake 2: lead_lake2 against random_lake2: 1.1 - 1.45 = -0.35, sd^2 0.02 and 0.005,
  # se sqrt(0.02/2 + 0.005/2) = 0.112: -3.1 se
  assert "Against random_lake2:" in lake2 and "| lead_lake2 | 2 | - | - | -0.350 | -3.1 |" in lake2
  assert "lead_lake2" not in default.split("Against random:")[1]


def test_sigterm_to_the_launcher_checkpoints_the_run_and_the_rerun_finishes(tmp_path):
  """SIGTERM to run_suite while a LEAD run is past its first checkpoint: the
  launcher passes it on, the run checkpoints and exits 143, the launcher says
  how to resume and exits 143; the same command then finishes the suite."""
  results = tmp_path / "r"
  cmd = [
      sys.executable, "-m", "experiments.run_suite", "--suite=main", f"--results={results}",
      f"--config={CONFIG}", "--set=loop.plots=False", "--variants=lead", "--seeds=0"
  ]
  proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  ckpt = os.path.join(suites.run_dir(str(results), "lead", 0), "checkpoints", "1")
  deadline = time.monotonic() + 400
  while not os.path.exists(os.path.join(ckpt, "checksums.json")):
    assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
    time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=300)
  if "lead seed 0: done" in out:  # the signal came after the last iteration: nothing to stop
    pytest.skip("the run finished before the signal arrived")
  assert proc.returncode == 143, err[-3000:]
  assert "lead seed 0: stopped" in out
  assert err.strip().splitlines()[-1] == (
      "stopped by SIGTERM at lead seed 0 (1/1); rerun the same command to resume")
  log = open(os.path.join(results, "logs", "lead-seed0.log")).read()
  assert "stopped by SIGTERM after iteration" in log and "rerun the same command" in log
  again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=400)
  assert again.returncode == 0 and "lead seed 0: done" in again.stdout, again.stderr[-3000:]
