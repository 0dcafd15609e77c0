"""Everything fixed for a run: data, model, jitted steps, offline stage, selector."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional

import jax
import numpy as np

from lead_jax import (accounting, build, data, metrics, offline, optim, selection, sharding,
                      tokenizer, train)
from lead_jax.evals import runner
from lead_jax.loop import final

# Named purposes of the root key, one fold each (0 is the base: build.base_key).
_LORA, _STEP, _WARMUP_LORA, _WARMUP_STEP = 1, 2, 3, 4
# Score arrays of the top-k selectors, by offline artifact (superfilter and
# less need scores the offline stage does not compute yet).
TOP_K_SCORES = {"ppl": "idu0_N", "ifd": "ifd_N"}


@dataclasses.dataclass(frozen=True)
class Run:
  """Everything fixed for the whole run (built once by `setup`)."""
  config: Any
  workdir: str
  mesh: Any
  tok: Any
  pool: data.Pool
  test_path: str
  dev_pool: Optional[data.Pool]
  model_config: Any
  steps: train.Steps
  selector: Any
  layout: selection.Layout
  offline: offline.Result
  step_key: jax.Array
  proj_dim: int
  fingerprint: str

  @property
  def needs(self):
    return self.selector.needs

  @property
  def clusters(self) -> Optional[np.ndarray]:
    return self.offline.cluster_N


def _needs_of(method: str, select_cfg, pool: data.Pool):
  """A selector's declared needs, before the offline stage built its layout."""
  layout = selection.build_layout(np.zeros(len(pool), np.int64), np.zeros(len(pool), np.int64),
                                  1, 1)
  return selection.make(method, select_cfg, layout,
                        scores_N=np.zeros(len(pool), np.float32)).needs


def _load_data(config, workdir: str, tok):
  paths = data.resolve_paths(config.data, workdir)
  pool = data.load_pool(config.data, tok, workdir)
  try:
    selection.resolve_limits(config.select, len(pool))
  except ValueError as e:
    raise data.DataError(f"{paths['train']}: a pool of {len(pool)} samples: {e}") from None
  if paths["test"]:
    final.check_test_set(config.data, paths["test"])
  dev_pool = None
  if paths["dev"] and (config.bandit.reward == "dev_gain" or config.loop.dev_every > 0):
    dev_pool = data.load_pool(config.data, tok, workdir, path=paths["dev"])
  elif config.bandit.reward == "dev_gain":
    raise data.DataError("bandit.reward='dev_gain' needs a dev set: set data.dev_path")
  return pool, paths["test"], dev_pool


def _model_key(config) -> str:
  return repr((config.model.to_dict(), config.seed if not config.model.checkpoint else None))


def setup(config, workdir: str):
  """`(Run, TrainState, shardings, ledger)`: data, offline stage, selector,
  state; the ledger holds the offline artifacts' cost and this call's set-up
  seconds (the rest of its time)."""
  start = time.monotonic()
  if config.method not in selection.NAMES:
    raise ValueError(f"method={config.method!r}; the LEAD loop runs {selection.NAMES}")
  if config.method in ("superfilter", "less"):
    raise ValueError(f"method={config.method!r}: its scores are not computed by the offline "
                     "stage yet; use lead, odm, full, random, random_balanced, ppl or ifd")
  benchmarks = runner.parse_benchmarks(config.eval.benchmarks)
  if set(benchmarks) - {"synthetic"} and not config.eval.data_dir:
    raise ValueError(f"eval.benchmarks={config.eval.benchmarks!r} needs eval.data_dir (the "
                     "folder with one sub-folder per benchmark; configs/base_eval.py)")
  if config.idu.grad_term in ("history", "cluster") and not config.train.projection_dim:
    raise ValueError(f"idu.grad_term={config.idu.grad_term!r} needs the projected gradients: "
                     "set train.projection_dim > 0")
  sharding.initialize(config.mesh)
  mesh = sharding.make_mesh(config.mesh)
  tok = tokenizer.load(config.data.tokenizer)
  pool, test_path, dev_pool = _load_data(config, workdir, tok)
  metrics.write_config(workdir, config)  # after the data checks: bad input writes nothing
  root = jax.random.key(config.seed)
  model_config, base = build.load_base(config.model, config.lora, build.base_key(config.seed))
  tx, lr_fn = optim.make(config.optim)
  _, shardings = build.abstract_state(model_config, tx, mesh, config.mesh.rules)
  base = sharding.place(base, shardings.base)
  spec = train.spec_from_config(model_config, config.train, config.optim, config.seed)
  steps = train.compile(spec, tx, lr_fn, mesh, shardings)
  needs = _needs_of(config.method, config.select, pool)
  env = offline.Env(model_config, _model_key(config), config.optim, config.train, config.seed,
                    mesh, tuple(config.mesh.rules), steps.score,
                    jax.random.fold_in(root, _WARMUP_LORA), jax.random.fold_in(root, _WARMUP_STEP))
  wants = offline.wants_for(needs, config.offline.cluster_features)
  t_off = time.monotonic()
  off, base = offline.run(config.offline, env, pool, workdir, wants,
                          config.select.num_clusters, base)
  t_off = time.monotonic() - t_off
  cluster_N = off.cluster_N if off.cluster_N is not None else np.zeros(len(pool), np.int64)
  layout = selection.build_layout(cluster_N, pool.task_N, off.num_clusters,
                                  len(pool.task_names))
  scores = getattr(off, TOP_K_SCORES[config.method]) if config.method in TOP_K_SCORES else None
  selector = selection.make(config.method, config.select, layout, scores_N=scores)
  state, shardings = build.init_state(model_config, base, tx, jax.random.fold_in(root, _LORA),
                                      mesh, config.mesh.rules)
  fingerprint = offline.fingerprint({"pool": pool.fingerprint, "model": env.model_key,
                                     "method": config.method,
                                     "clusters": layout.counts_CxT.tolist()})
  run = Run(config, workdir, mesh, tok, pool, test_path, dev_pool, model_config, steps,
            selector, layout, off, jax.random.fold_in(root, _STEP),
            spec.projection.dim if spec.projection else 0, fingerprint)
  ledger = accounting.add_seconds(off.ledger, "setup", time.monotonic() - start - t_off)
  return run, state, shardings, ledger

