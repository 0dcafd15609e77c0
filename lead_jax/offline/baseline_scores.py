"""Offline scores of two baselines, computed and cached by the offline stage.

  proxy_ifd  Superfiltering: IFD under a small proxy model instead of the
             trained model. The paper's proxy is a small *pretrained* model
             (GPT-2) whose IFD ranks samples like a large model's. The project's
             tiny bases are randomly initialised, and a random proxy's IFD is
             noise (close to 1 everywhere), so the proxy (the `proxy` sub-config:
             a smaller architecture, or a local checkpoint sharing the run's
             tokenizer) is first warmed up exactly like LEAD's warmup model:
             the warmup LoRA on the same seeded subset for the same epochs.
             Cost: the proxy's warmup training steps (`proxy_warmup_train`) and
             two forward passes per pool sample (`proxy_ifd`), on the proxy.
  less       LESS (Xia et al. 2024): under the warmup model, the projected
             per-example LoRA gradient of every pool sample and of every dev
             sample (`train.project_step`, one forward and one backward each:
             `less_grads`, `less_dev_grads`), L2-normalised; a pool sample's
             score aggregates its cosines with the dev gradients:
               task_max  mean over each dev task's samples, max over tasks (LESS)
               max       max over all dev samples
               mean      mean over all dev samples
             LESS proper sums over several warmup checkpoints weighted by their
             learning rate and uses Adam-preconditioned training gradients; this
             uses the one warmup model and plain gradients (one checkpoint).

Both take the offline stage (`lead_jax.offline.stage` builds it and calls them) as
an argument described by the `Stage` protocol; this module does not import
the offline stage. Their artifacts are cached by the stage
(`Stage.artifact`) under `lead_jax.artifacts.fingerprint` keys that include
the warmup's key (and so the offline stage's VERSION) and this module's VERSION.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Protocol

import numpy as np

from lead_jax import artifacts
from lead_jax.offline import clustering
from lead_jax.train import scoring

VERSION = 1  # bump when a baseline score's computation changes
LESS_AGGREGATES = ("task_max", "max", "mean")
_CHUNK = 65536  # pool rows per cosine block (bounds memory at N x dev)


@dataclasses.dataclass(frozen=True)
class Proxy:
  """The proxy model of `proxy_ifd`, built by the loop from `config.proxy`."""
  model_config: Any  # its ModelConfig (the run's LoRA; the warmup replaces it)
  base: Any  # its base parameters
  model_key: str  # fingerprint of those weights (config and seed, or checkpoint)


class Stage(Protocol):
  """What the baselines use of the offline stage (`lead_jax.offline.stage`)."""
  cfg: Any  # the `offline` sub-config (score_batch_size, less_aggregate)
  env: Any  # the stage's `offline.Env` (proxy, dev_pool, train_cfg, mesh)
  pool: Any  # the pool (`data.Pool`)

  def warmup_config(self, model_config=None) -> Any:
    """`model_config` (default the run's) with the warmup LoRA."""

  def warmup_fp(self, base_fp: Optional[str] = None) -> str:
    """The key of the warmup on the base keyed `base_fp` (default the run's)."""

  def warmup(self, base) -> tuple:
    """`(steps, params)` of the run's warmup model, trained unless cached."""

  def warmed(self, name: str, model_config, base, fp: str) -> tuple:
    """`(steps, params)` of `model_config` after the warmup (artifact `name`, key `fp`)."""

  def artifact(self, name: str, fp: str, compute: Callable) -> tuple[dict, dict]:
    """(arrays, meta) of artifact `name` with key `fp`, cached, else `compute()`."""


def proxy_ifd(stage: Stage) -> np.ndarray:
  """Raw IFD (before the > 1 mapping) of every pool sample under the warmed-up
  proxy."""
  proxy = stage.env.proxy
  if proxy is None:
    raise ValueError("proxy_ifd needs the proxy model (config.proxy); the loop builds it "
                     "for method='superfilter'")
  base_fp = artifacts.fingerprint({"pool": stage.pool.fingerprint, "model": proxy.model_key})
  warm_fp = stage.warmup_fp(base_fp)
  steps, params = stage.warmed("proxy_warmup", stage.warmup_config(proxy.model_config), proxy.base,
                               warm_fp)
  fp = artifacts.fingerprint({
      "version": VERSION, "warmup": warm_fp, "batch": stage.cfg.score_batch_size
  })

  def compute():
    out, counts = scoring.losses(steps.score, params, stage.pool, np.arange(len(stage.pool)),
                                 stage.cfg.score_batch_size, stage.env.mesh, response=True,
                                 desc="IFD (proxy model)")
    raw = clustering.ifd_from_losses(out["loss"], out["response_loss"], False)
    return dict(out, ifd_raw=raw), {"proxy_ifd": counts}, {}

  return stage.artifact("proxy_ifd", fp, compute)[0]["ifd_raw"]


def _unit(g_NxK: np.ndarray) -> np.ndarray:
  norm = np.linalg.norm(g_NxK, axis=1, keepdims=True)
  return g_NxK / np.maximum(norm, 1e-12)  # zero gradients (no targets) stay zero


def aggregate(pool_NxK: np.ndarray, dev_DxK: np.ndarray, dev_task_D: np.ndarray,
              how: str) -> np.ndarray:
  """Per pool sample, its cosines with the dev gradients aggregated by `how`."""
  if how not in LESS_AGGREGATES:
    raise ValueError(f"offline.less_aggregate={how!r}; use one of {LESS_AGGREGATES}")
  if dev_DxK.shape[0] == 0:
    raise ValueError("less: the dev set is empty; set data.dev_path to a non-empty file")
  p, d = _unit(np.asarray(pool_NxK, np.float64)), _unit(np.asarray(dev_DxK, np.float64))
  if how == "mean":  # mean of cosines = cosine-sum with the mean dev direction
    return (p @ d.mean(axis=0)).astype(np.float32)
  if how == "task_max":
    tasks = np.unique(dev_task_D)
    d = np.stack([d[dev_task_D == t].mean(axis=0) for t in tasks])
  out = np.empty(p.shape[0], np.float32)
  for start in range(0, p.shape[0], _CHUNK):  # a loop over blocks, not samples
    out[start:start + _CHUNK] = (p[start:start + _CHUNK] @ d.T).max(axis=1)
  return out


def less(stage: Stage, base):
  """LESS scores of the pool against the dev set (see module doc), under the
  warmup model on top of `base`."""
  dev, t = stage.env.dev_pool, stage.env.train_cfg
  if dev is None:
    raise ValueError("method='less' needs a dev set: set data.dev_path (the synthetic lake "
                     "writes one)")
  if not t.projection_dim:
    raise ValueError("method='less' needs projected gradients: set train.projection_dim > 0")
  steps, params = stage.warmup(base)
  how = stage.cfg.less_aggregate
  fp = artifacts.fingerprint({
      "version": VERSION, "warmup": stage.warmup_fp(), "dev": dev.fingerprint, "how": how,
      "batch": stage.cfg.score_batch_size,
      "projection": [t.projection_dim, list(t.projection_targets)]
  })

  def compute():
    bs, mesh = stage.cfg.score_batch_size, stage.env.mesh
    g_pool, c_pool = scoring.projected_grads(steps.project, params, stage.pool,
                                             np.arange(len(stage.pool)), bs, mesh,
                                             desc="LESS gradients (pool)")
    g_dev, c_dev = scoring.projected_grads(steps.project, params, dev, np.arange(len(dev)), bs,
                                           mesh, desc="LESS gradients (dev)")
    scores = aggregate(g_pool, g_dev, dev.task_N, how)
    return {"scores": scores}, {"less_grads": c_pool, "less_dev_grads": c_dev}, {}

  return stage.artifact("less", fp, compute)[0]["scores"]
