r"""The main job: LEAD and random selection at the same budget, side by side.

  python -m experiments.main --workdir workdir/default          # = make run
  python -m experiments.main --workdir workdir/default --extra=full

Runs the LEAD loop on the config (default: configs/default.py, the synthetic
lake and the tiny byte-level model) in <workdir>/lead, then random selection in
<workdir>/random with the same distinct budget (LEAD's samples_selected) and
the same training sample-passes (loop.static_epochs = LEAD's training
sample-passes / its distinct samples), then prints a Markdown table (held-out
exact match overall and per task, held-out loss, samples used, iterations,
training steps and sample-passes, wall seconds, forward passes over the pool)
and writes it to <workdir>/summary.md (with summary.json). `--extra=full`
adds training on the whole pool for one epoch (more compute, shown in the
table). Each run resumes from its checkpoints; a finished run (its
final_metrics.json present, same config) is not run again.

Hardware: 2 CPU cores. Expected: under 10 minutes from a fresh clone
(README has the measured table and time).
"""

from __future__ import annotations

import json
import os
import time

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import cli, suites
from lead_jax import loop, report

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(__file__), "..", "configs", "default.py"),
    "experiment config of the LEAD run (configs/default.py)", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "directory of the runs and the summary")
_EXTRA = flags.DEFINE_list("extra", [], "more methods at the same budget, e.g. full")
flags.mark_flags_as_required(["workdir"])


def _config_json(config) -> str:
  return config.to_json_best_effort(indent=2, sort_keys=True) + "\n"


def _finished(workdir: str, config):
  """The run's final metrics when it finished with this very config, else None."""
  final, saved = os.path.join(workdir, "final_metrics.json"), os.path.join(workdir, "config.json")
  if not (os.path.exists(final) and os.path.exists(saved)):
    return None
  with open(saved, encoding="utf-8") as f:
    if f.read() != _config_json(config):
      return None
  with open(final, encoding="utf-8") as f:
    return json.load(f)


def _run(name: str, config, workdir: str) -> dict:
  sub = os.path.join(workdir, name)
  done = _finished(sub, config)
  if done is not None:
    print(f"{name}: finished before, reusing {sub}/final_metrics.json", flush=True)
    return done
  print(f"{name}: running in {sub}", flush=True)
  return loop.run(config, sub, say=lambda line: print(f"{name}: {line}", flush=True))


def _matched(config, method: str, lead: dict):
  """`config` for `method` at LEAD's distinct budget and training sample-passes
  (the suites' rule, `experiments.suites.matched`)."""
  c = config.copy_and_resolve_references()
  c.method = method
  for path, value in suites.matched(method, lead).items():
    *parents, field = path.split(".")
    node = c
    for name in parents:
      node = node[name]
    node[field] = value
  c.lock()
  return c


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  start, workdir = time.monotonic(), _WORKDIR.value
  config = _CONFIG.value

  def both():
    runs = {config.method: _run(config.method, config, workdir)}
    for method in ["random"] + [m for m in _EXTRA.value if m != "random"]:
      runs[method] = _run(method, _matched(config, method, runs[config.method]), workdir)
    return runs

  runs = cli.guarded(both)
  text = report.table(runs)
  seconds = time.monotonic() - start
  print("\n" + text + f"\n\nmain job: {seconds:.0f} s in this process", flush=True)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "summary.md"), "w", encoding="utf-8") as f:
    f.write(text + "\n")
  with open(os.path.join(workdir, "summary.json"), "w", encoding="utf-8") as f:
    json.dump({"runs": runs, "seconds": seconds}, f, indent=1, sort_keys=True)


if __name__ == "__main__":
  app.run(main)
