"""Everything fixed for a run: data, model, jitted steps, offline stage, selector."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional

import jax
import numpy as np

from lead_jax import accounting, data, metrics, selection
from lead_jax.train import base_cache
from lead_jax.offline import baseline_scores
from lead_jax.train import build
from lead_jax.offline import stage as offline
from lead_jax.train import optim
from lead_jax.train import sharding
from lead_jax.model import tokenizer
from lead_jax.train import step as train
from lead_jax.loop import checks, final, schedule

# Named purposes of the root key, one fold each (0 is the base: build.base_key).
_LORA, _STEP, _WARMUP_LORA, _WARMUP_STEP, _PROXY_BASE = 1, 2, 3, 4, 5


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
  base: Any  # the frozen base weights, placed on the mesh (the steps' `base` argument)
  steps: train.Steps
  selector: Any
  layout: selection.Layout
  offline: offline.Result
  step_key: jax.Array
  proj_dim: int
  fingerprint: str
  base_checkpoint: str = ""  # where the base came from (resolved model.checkpoint; "" = random init)

  @property
  def needs(self):
    return self.selector.needs

  @property
  def clusters(self) -> Optional[np.ndarray]:
    return self.offline.cluster_N

  def params(self, state) -> dict:
    """The model's variables: the run's frozen base and `state`'s adapters."""
    return train.params(self.base, state.lora)


def _load_data(config, workdir: str, tok, needs):
  paths = data.resolve_paths(config.data, workdir)
  pool = data.load_pool(config.data, tok, workdir)
  try:
    selection.resolve_limits(config.select, len(pool))
  except ValueError as e:
    raise data.DataError(f"{paths['train']}: a pool of {len(pool)} samples: {e}") from None
  if config.select.num_clusters > len(pool):
    raise data.DataError(f"select.num_clusters={config.select.num_clusters}: more clusters than "
                         f"the {len(pool)} samples of {paths['train']}; lower K")
  if paths["test"]:
    final.check_test_set(config.data, paths["test"])
  dev_pool = None
  wants_dev = {
      "dev_gain": config.bandit.reward == "dev_gain" and needs.idu,
      f"method={config.method!r}": needs.dev_set
  }
  if paths["dev"] and (any(wants_dev.values()) or config.loop.dev_every > 0):
    dev_pool = data.load_pool(config.data, tok, workdir, path=paths["dev"])
  elif any(wants_dev.values()):
    who = [k for k, v in wants_dev.items() if v][0]
    raise data.DataError(f"{who} needs a dev set: set data.dev_path")
  return pool, paths["test"], dev_pool, paths["train"]


def _diagnostic_inputs(config, pool: data.Pool, train_path: str, needs) -> dict:
  """The diagnostic selectors' inputs, read from files before anything trains:
  the pool file's tiers (oracle), the replayed run's sample-passes (replay)."""
  out = {}
  if needs.tiers:
    out["tier_N"] = selection.read_tiers(train_path, pool.source_ids, config.data.max_record_bytes)
  if needs.replay:
    out["passes_M"] = selection.read_replay(config.select.replay_from, pool, train_path)
  return out


def _model_key(config, model_cfg=None) -> str:
  m = model_cfg or config.model
  return repr((m.to_dict(), config.seed if not m.checkpoint else None))


def _proxy(config, model_config, needs):
  """superfilter's proxy model (`config.proxy`), or None when not needed."""
  if "proxy_ifd" not in needs.offline_scores:
    return None
  cfg = config.proxy.copy_and_resolve_references()
  if not cfg.checkpoint and cfg.vocab_size == 0:
    cfg.vocab_size = model_config.vocab_size
  root = jax.random.fold_in(jax.random.key(config.seed), _PROXY_BASE)
  mc, base = build.load_base(cfg, config.lora, root)
  if mc.vocab_size != model_config.vocab_size:
    raise ValueError(f"proxy: vocabulary of {mc.vocab_size} tokens, the run model's has "
                     f"{model_config.vocab_size}; the proxy must share the run's tokenizer")
  return baseline_scores.Proxy(mc, base, _model_key(config, cfg))


def setup(config, workdir: str):
  """`(Run, TrainState, shardings, ledger)`: data, offline stage, selector,
  state; the ledger holds the offline artifacts' cost and this call's set-up
  seconds (the rest of its time)."""
  start = time.monotonic()
  checks.check(config)
  needs = selection.needs(config.method, config.select, config.idu.reference)
  sharding.initialize(config.mesh)
  mesh = sharding.make_mesh(config.mesh)
  tok = tokenizer.load(config.data.tokenizer)
  pool, test_path, dev_pool, train_path = _load_data(config, workdir, tok, needs)
  diagnostic = _diagnostic_inputs(config, pool, train_path, needs)
  metrics.write_config(workdir, config)  # after the data checks: bad input writes nothing
  root = jax.random.key(config.seed)
  model_cfg = base_cache.resolve_model(config)  # "pretrain": the cached pretrained base
  model_config, base = build.load_base(model_cfg, config.lora, build.base_key(config.seed))
  tx, lr_fn = optim.make(config.optim)
  state_shardings, base_shardings = build.shardings(model_config, tx, mesh, config.mesh.rules)
  base = sharding.place(base, base_shardings)
  spec = train.spec_from_config(model_config, config.train, config.optim, config.seed)
  steps = train.compile(spec, tx, lr_fn, mesh, state_shardings)
  env = offline.Env(model_config, _model_key(config, model_cfg), config.optim, config.train,
                    config.seed, mesh, tuple(config.mesh.rules), steps.score,
                    jax.random.fold_in(root, _WARMUP_LORA), jax.random.fold_in(root, _WARMUP_STEP),
                    proxy=_proxy(config, model_config, needs), dev_pool=dev_pool)
  wants = offline.wants_for(needs, config.offline.cluster_features)
  t_off = time.monotonic()
  off = offline.run(config.offline, env, pool, workdir, wants, config.select.num_clusters, base)
  t_off = time.monotonic() - t_off
  if needs.bandit:  # the offline stage may have found fewer clusters than select.num_clusters
    try:
      schedule.check(config, off.num_clusters)
    except ValueError as e:
      raise checks.ConfigError(str(e)) from None
  cluster_N = off.cluster_N if off.cluster_N is not None else np.zeros(len(pool), np.int64)
  layout = selection.build_layout(cluster_N, pool.task_N, off.num_clusters, len(pool.task_names))
  scores = selection.offline_scores_N(config.method, off)  # the top-k methods' score
  selector = selection.make(config.method, config.select, layout, scores_N=scores,
                            reference=config.idu.reference, **diagnostic)
  state, shardings = build.init_state(model_config, base, tx, jax.random.fold_in(root, _LORA), mesh,
                                      config.mesh.rules)
  parts = {
      "pool": pool.fingerprint, "model": env.model_key, "method": config.method,
      "clusters": layout.counts_CxT.tolist()
  }
  if off.reference_N is not None:  # its checkpoints belong to one ranking (none: as before)
    parts["reference"] = [config.idu.reference, float(config.idu.reference_weight)]
  if needs.replay:  # its checkpoints belong to one replayed multiset
    parts["replay"] = np.sort(selector.passes_M).tolist()
  fingerprint = offline.fingerprint(parts)
  run = Run(config, workdir, mesh, tok, pool, test_path,
            dev_pool, model_config, base, steps, selector, layout, off,
            jax.random.fold_in(root, _STEP), spec.projection.dim if spec.projection else 0,
            fingerprint, model_cfg.checkpoint)
  ledger = accounting.add_seconds(off.ledger, "setup", time.monotonic() - start - t_off)
  return run, state, shardings, ledger
