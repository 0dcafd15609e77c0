"""Config checks of a run, before anything is loaded or compiled.

`check(config)` raises `ConfigError` with one line, `field=value: what is
wrong; what to do`, for the first invalid field it finds. It covers the
loop's own choices (method, modes, ranges, files, the cache directory, the
export directory).
Limits that need the pool (the budget above N, K above the number of samples)
are checked as soon as the pool is read (`lead_jax.loop.setup`). Still before
any compilation. `ConfigError` is a `DataError`, so every entry point prints
it without a traceback and exits with status 2. README's table "Errors
before compute" lists each case.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from lead_jax import bandit, idu, selection
from lead_jax.data import DataError
from lead_jax.selection.state import MAX_USES
from lead_jax.evals import runner
from lead_jax.loop import schedule
from lead_jax.data import cache
from lead_jax.train import export

GRAD_TERMS = ("update", "history", "cluster", "none")
REWARDS = ("idu_gain", "loss", "dev_gain")
CLUSTER_FEATURES = ("ifd", "grad", "hidden")


class ConfigError(DataError):
  """An invalid config field; the message is one line for the user."""


def _field(name: str, value: Any, ok: bool, what: str) -> None:
  if not ok:
    raise ConfigError(f"{name}={value!r}: {what}")


def _one_of(name: str, value: Any, choices) -> None:
  _field(name, value, value in choices, f"use one of {', '.join(map(str, choices))}")


def _get(config, path: str, default=None):
  node = config
  for part in path.split("."):
    if part not in node:
      return default
    node = node[part]
  return node


def _ranges(config) -> None:
  s, b, i = config.select, config.bandit, config.idu
  _field("select.sample_rate", s.sample_rate, 0.0 < s.sample_rate <= 1.0, "rho must lie in (0, 1]")
  _field("select.num_clusters", s.num_clusters, int(s.num_clusters) >= 1, "K must be >= 1")
  _field("select.budget_fraction", s.budget_fraction, s.budget_samples > 0 or
         0.0 < s.budget_fraction <= 1.0, "must lie in (0, 1] (or set select.budget_samples > 0)")
  _field("select.budget_samples", s.budget_samples, s.budget_samples >= 0, "must be >= 0")
  _field("select.t_max", s.t_max, s.t_max >= 1, "must be >= 1")
  _field("select.reuse_cap", s.reuse_cap, 1 <= s.reuse_cap <= MAX_USES,
         f"must lie in [1, {MAX_USES}]")
  _as_config_error(lambda: bandit.check_config(b))
  _one_of("bandit.reward", b.reward, REWARDS)
  _field("idu.b", i.b, 0.0 <= i.b <= 1.0, "the smoothing must lie in [0, 1]")
  _one_of("idu.grad_term", i.grad_term, GRAD_TERMS)
  _one_of("offline.cluster_features", config.offline.cluster_features, CLUSTER_FEATURES)
  _field("offline.warmup_fraction", config.offline.warmup_fraction,
         0.0 < config.offline.warmup_fraction <= 1.0, "must lie in (0, 1]")
  _field("loop.static_epochs", config.loop.static_epochs, config.loop.static_epochs > 0,
         "must be > 0")


def _files(config) -> None:
  for key in ("train_path", "test_path", "dev_path"):
    path = config.data[key]
    if path and "://" not in path and not path.startswith("tfds:") and not os.path.exists(path):
      raise ConfigError(f"data.{key}={path!r}: no such file; give an existing pool file "
                        "(or leave data.train_path empty for the synthetic lake)")
  if config.select.replay_from and not os.path.isdir(config.select.replay_from):
    raise ConfigError(f"select.replay_from={config.select.replay_from!r}: no such run "
                      "directory; give the workdir of a finished run")


def _writable(name: str, directory: str) -> None:
  """`directory` (or its nearest existing parent) can be written."""
  probe = os.path.abspath(directory)
  while not os.path.exists(probe) and os.path.dirname(probe) != probe:
    probe = os.path.dirname(probe)
  if not (os.path.isdir(probe) and os.access(probe, os.W_OK | os.X_OK)):
    raise ConfigError(f"{name}={directory!r}: not a writable directory ({probe}); "
                      "choose one you can write to")


def _chosen(config) -> None:
  _one_of("method", config.method, selection.NAMES)
  _as_config_error(
      lambda: selection.train_step(config.method, config.select, config.loop.train_step))
  benchmarks = _as_config_error(lambda: runner.parse_benchmarks(config.eval.benchmarks),
                                "eval.benchmarks")
  if set(benchmarks) - {"synthetic"} and not config.eval.data_dir:
    raise ConfigError(f"eval.benchmarks={config.eval.benchmarks!r}: needs eval.data_dir (the "
                      "folder with one sub-folder per benchmark; configs/base_eval.py)")
  if config.idu.grad_term in ("history", "cluster") and not config.train.projection_dim:
    raise ConfigError(f"idu.grad_term={config.idu.grad_term!r}: needs the projected gradients; "
                      "set train.projection_dim > 0")


def _as_config_error(fn: Callable[[], Any], name: str = "") -> Any:
  try:
    return fn()
  except ValueError as e:
    raise ConfigError(f"{name}: {e}" if name else str(e)) from None


def check(config) -> None:
  """Raises `ConfigError` for the first invalid field of a LEAD-loop config."""
  _chosen(config)
  _as_config_error(lambda: idu.check_config(config.idu))  # idu.reference, idu.reference_weight
  _ranges(config)
  _as_config_error(lambda: schedule.check(config, config.select.num_clusters))
  _files(config)
  if config.offline.cache_dir:
    _writable("offline.cache_dir", config.offline.cache_dir)
  _writable("LEAD_JAX_CACHE", cache.cache_root())
  if config.loop.export_dir:
    why = export.problem(config.loop.export_dir)
    if why:
      raise ConfigError(f"loop.export_dir={config.loop.export_dir!r}: {why}; choose a new or "
                        "empty directory (or an earlier export, which is replaced)")
    _writable("loop.export_dir", config.loop.export_dir)
