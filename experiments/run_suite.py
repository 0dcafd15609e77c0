r"""Runs a named suite (experiments/suites.py): every variant x seed, one
`python -m experiments.run` subprocess each, into a results directory.

  python -m experiments.run_suite --suite=main --results=results
  python -m experiments.run_suite --suite=ablation --results=results --seeds=0,1,2
  python -m experiments.run_suite --suite=main --results=/tmp/r --variants=lead,random \
      --seeds=0,1 --config=tests/loop_config.py          # a tiny smoke suite

Layout of the results directory:
  runs/<variant>/seed<k>/   the run's workdir (final_metrics.json, accounting.json, ...)
  runs/<variant>/seed<k>/suite_run.json   its command, exit status and process seconds
  logs/<variant>-seed<k>.log              its stdout and stderr
  offline_cache/, jax_cache/              shared offline artifacts, compiled programs

Resumable: a run whose final_metrics.json exists is skipped; any other run
is started with the same command, so a killed run resumes from its newest
checkpoint. A run directory made with another command (other overrides, base
config or results path) is an error: use another --results. Seeds run one
after the other, and within a seed a one-shot selector runs after the LEAD run
it is matched to (`suites.matched`: its distinct budget and sample-passes; a
replay: that run's directory as select.replay_from);
that reference is added when --variants leaves it out. Runs are sequential:
each uses every core, and wall times are only comparable without
contention. A failed run is reported and the others go on; the exit status
is 1 if any failed.

Hardware: whatever the runs need (configs/default.py: 2 CPU cores, 1 to 4
minutes per run; iterative_rescore at 4N about 12; the main suite about
1 hour for 3 seeds, ablation 45 minutes, efficiency 30 minutes per seed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from absl import app, flags

from experiments import suites
from lead_jax import preempt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SUITE = flags.DEFINE_string("suite", None, f"one of {', '.join(suites.SUITES)}")
_RESULTS = flags.DEFINE_string("results", None, "results directory")
_SEEDS = flags.DEFINE_list("seeds", [str(s) for s in suites.SEEDS], "seeds (>= 3 for tables)")
_VARIANTS = flags.DEFINE_list("variants", [], "only these variants (default: the whole suite)")
_CONFIG = flags.DEFINE_string("config", suites.BASE_CONFIG, "base config file of every run")
_SET = flags.DEFINE_list("set", [], "more overrides for every run: key=value,...")
_DRY = flags.DEFINE_bool("dry_run", False, "print the commands, run nothing")
flags.mark_flags_as_required(["suite", "results"])


def _flag(key: str, value) -> str:
  return f"--config.{key}={value}"


def command(v: suites.Variant, seed: int, results: str, config: str, extra: dict,
            matched: dict) -> list[str]:
  """The `experiments.run` command line of one run."""
  over = {
      **{k: str(x).format(results=results) for k, x in suites.COMMON.items()}, **v.overrides,
      **matched, **extra
  }
  return [
      sys.executable, "-m", "experiments.run", "--config", config, "--workdir",
      suites.run_dir(results, v.name, seed),
      _flag("seed", seed),
      _flag("method", v.method), *(_flag(k, x) for k, x in sorted(over.items()))
  ]


def ordered(variants, wanted) -> list:
  """The variants to run (with the references of matched ones), references first."""
  by_name = {v.name: v for v in variants}
  unknown = set(wanted) - set(by_name)
  if unknown:
    raise ValueError(f"--variants: {sorted(unknown)} not in the suite ({', '.join(by_name)})")
  names = list(wanted) or list(by_name)
  out = []
  for name in names:
    ref = by_name[name].matched_to
    if ref and ref not in out:
      out.append(ref)
    if name not in out:
      out.append(name)
  return [by_name[n] for n in out]


def _env(results: str) -> dict:
  env = dict(os.environ)
  env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(results, "jax_cache"))
  env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  return env


def _check_same(workdir: str, cmd: list[str]) -> None:
  path = os.path.join(workdir, "suite_run.json")
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      before = json.load(f)["command"]
    if before[1:] != cmd[1:]:  # the interpreter path may differ
      raise ValueError(f"{workdir} was run with another command ({' '.join(before[3:])}); "
                       "use another --results")


def _wait(proc: subprocess.Popen, stop: preempt.Stop) -> int:
  """The child's exit status; a signal the launcher receives is passed on to
  the child once (it runs in its own session, so a terminal's Ctrl-C reaches
  it only this way), which checkpoints and exits."""
  forwarded = False
  while proc.poll() is None:
    if stop.signum and not forwarded:
      proc.send_signal(stop.signum)
      forwarded = True
    time.sleep(0.2)
  return proc.returncode


def run_one(v, seed: int, results: str, config: str, extra: dict,
            stop: preempt.Stop = preempt.Stop()) -> str:
  """Runs (or skips) one run; returns done | skipped | failed | blocked | dry run
  | stopped (by a signal, after the run checkpointed)."""
  workdir = suites.run_dir(results, v.name, seed)
  if suites.read_final(workdir) is not None:
    return "skipped"
  matched = {}
  if v.matched_to:
    ref = suites.read_final(suites.run_dir(results, v.matched_to, seed))
    if ref is None:
      print(f"  {v.name} seed {seed}: its reference {v.matched_to} has not finished", flush=True)
      return "dry run" if _DRY.value else "blocked"
    matched = suites.matched(v.method, ref, suites.run_dir(results, v.matched_to, seed))
  cmd = command(v, seed, results, config, extra, matched)
  _check_same(workdir, cmd)
  if _DRY.value:
    print(" ".join(cmd[1:]))
    return "dry run"
  os.makedirs(workdir, exist_ok=True)
  os.makedirs(os.path.join(results, "logs"), exist_ok=True)
  record = {"variant": v.name, "method": v.method, "seed": seed, "command": cmd}
  with open(os.path.join(workdir, "suite_run.json"), "w", encoding="utf-8") as f:
    json.dump(record, f, indent=1)
  t0 = time.monotonic()
  with open(os.path.join(results, "logs", f"{v.name}-seed{seed}.log"), "a",
            encoding="utf-8") as log:
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(results), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    rc = _wait(proc, stop)
  record.update(returncode=rc, process_seconds=round(time.monotonic() - t0, 2))
  with open(os.path.join(workdir, "suite_run.json"), "w", encoding="utf-8") as f:
    json.dump(record, f, indent=1)
  if stop.signum and rc != 0:
    return "stopped"
  return "done" if rc == 0 and suites.read_final(workdir) is not None else "failed"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  results = os.path.abspath(_RESULTS.value)
  variants = ordered(suites.get(_SUITE.value), _VARIANTS.value)
  extra = dict(kv.split("=", 1) for kv in _SET.value)
  seeds = [int(s) for s in _SEEDS.value]
  todo = [(seed, v) for seed in seeds for v in variants]
  failed, start = [], time.monotonic()
  with preempt.watch() as stop:
    for n, (seed, v) in enumerate(todo, 1):
      t0 = time.monotonic()
      status = run_one(v, seed, results, _CONFIG.value, extra, stop)
      print(
          f"[{n}/{len(todo)}] {v.name} seed {seed}: {status} ({time.monotonic() - t0:.0f} s, "
          f"{(time.monotonic() - start) / 60:.1f} min in all)", flush=True)
      if status in ("failed", "blocked"):
        failed.append(f"{v.name}/seed{seed}")
      if stop.signum:
        print(
            f"stopped by {stop.name} at {v.name} seed {seed} ({n}/{len(todo)}); rerun the "
            "same command to resume", file=sys.stderr, flush=True)
        sys.exit(128 + stop.signum)
  if failed:
    print(f"failed: {', '.join(failed)} (logs in {results}/logs)", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
