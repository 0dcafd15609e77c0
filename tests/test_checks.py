"""Config errors before compute: one line naming the field, exit status 2."""

import os
import subprocess
import sys

import pytest

from lead_jax import loop
from lead_jax.loop import checks
from loop_config import get_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CASES = [  # (field, value, what the message says)
    ("method", "lead2", "use one of"),
    ("select.sample_rate", 0.0, "rho must lie in (0, 1]"),
    ("select.sample_rate", 1.5, "rho must lie in (0, 1]"),
    ("select.num_clusters", 0, "K must be >= 1"),
    ("select.budget_fraction", 0.0, "must lie in (0, 1]"),
    ("select.t_max", 0, "must be >= 1"),
    ("select.reuse_cap", 300, "must lie in [1, 255]"),
    ("bandit.algo", "ucb", "must be one of ('exp3', 'exp3s', 'thompson', 'uniform')"),
    ("bandit.reward", "gain", "use one of idu_gain, loss, dev_gain"),
    ("bandit.gamma", 0.0, "must be in (0, 1]"),
    ("bandit.eta", -0.5, "must be >= 0"),
    ("bandit.thompson_noise", 0.0, "must be > 0"),
    ("idu.b", 1.5, "must lie in [0, 1]"),
    ("idu.reference", "base", "idu.reference='base'"),
    ("idu.reference_weight", -1.0, "idu.reference_weight=-1.0"),
    ("idu.grad_term", "grad", "use one of update, history, cluster, none"),
    ("offline.cluster_features", "pca", "use one of ifd, grad, hidden"),
    ("offline.warmup_fraction", 0.0, "must lie in (0, 1]"),
    ("loop.static_epochs", 0.0, "must be > 0"),
    ("select.clusters_per_iteration", 4, "must be an integer in [1, 3]"),
    ("loop.replay_fraction", 1.0, "must be in [0, 1)"),
    ("loop.train_step", "fast", "loop.train_step='fast'; use one of"),
    ("eval.benchmarks", "mmlu2", "eval.benchmarks: unknown benchmarks"),
    ("data.train_path", "/no/such/pool.jsonl", "no such file"),
    ("select.replay_from", "/no/such/run", "no such run directory"),
    ("offline.cache_dir", "{file}/cache", "not a writable directory"),  # under a plain file
    ("loop.export_dir", "{dir}", "holds files but no export.json"),  # never replaced
    ("loop.export_dir", "{file}", "exists and is not a directory"),
    ("loop.export_dir", "{file}/export", "not a writable directory"),
]


@pytest.mark.parametrize("field, value, says", CASES, ids=[f"{f}={v}" for f, v, _ in CASES])
def test_each_invalid_field_is_one_line_naming_it(field, value, says, tmp_path):
  (tmp_path / "plain").write_text("")
  value = value.format(file=tmp_path / "plain", dir=tmp_path) if isinstance(value, str) else value
  config = get_config()
  *parents, name = field.split(".")
  node = config
  for p in parents:
    node = node[p]
  with config.unlocked():
    node[name] = value
  with pytest.raises(checks.ConfigError) as e:
    checks.check(config)
  message = str(e.value)
  assert field in message and says in message and "\n" not in message, message


def test_the_default_configs_pass():
  from configs import default
  checks.check(get_config())
  checks.check(default.get_config())


@pytest.mark.parametrize("field, value, says", [
    ("select.num_clusters", 10_000, "more clusters than the"),
    ("select.budget_samples", 10_000, "the budget resolves to 10000 samples"),
])
def test_limits_that_need_the_pool_fail_before_compilation(tmp_path, field, value, says):
  config = get_config()
  with config.unlocked():
    config.select[field.split(".")[1]] = value
  with pytest.raises(checks.DataError, match=says):
    loop.setup(config, str(tmp_path))
  assert not os.path.exists(tmp_path / "config.json")  # nothing written before the checks


def test_the_entry_point_prints_one_line_and_exits_2(tmp_path):
  proc = subprocess.run([
      sys.executable, "-m", "experiments.run", "--config", "tests/loop_config.py", "--workdir",
      str(tmp_path), "--config.select.sample_rate=2.0"
  ], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines()[-1] == (
      "error: select.sample_rate=2.0: rho must lie in (0, 1]")
