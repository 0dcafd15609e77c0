"""LEAD's offline stage: warmup LoRA, IFD, IDU_0 and the clusters, each cached.

  warmup     LoRA (offline.warmup_rank / warmup_alpha) trained for
             offline.warmup_epochs on a seeded random offline.warmup_fraction
             of the pool, with the run's optimiser, batch size and plain step
  ifd        under the warmup model, the response loss with and without the
             prompt for every sample (two forward passes each) -> IFD
  base_loss  IDU_0 = the base model's response loss (one forward pass each)
  features   for offline.cluster_features = hidden | grad: the mean final hidden
             state (forward) or the projected LoRA gradient (forward +
             backward) of every sample under the warmup model
  clusters   seeded k-means (scikit-learn) with K = select.num_clusters on the
             1-D IFD (default) or on the L2-normalised features

Each artifact is an .npz in `<workdir>/offline/` named by a fingerprint of
everything it depends on (pool fingerprint, model, seed and the config fields
it reads), written atomically, and loaded instead of recomputed when present.
It stores the passes and seconds it cost, so a run's accounting books the same
offline cost whether the artifact was computed now or by an earlier, killed
process; `Result.computed` lists what this call actually computed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from typing import Any, Optional

import jax
import numpy as np
import tqdm

from lead_jax import accounting, build, clustering, data, optim, paths, scoring, sharding, train
from lead_jax import lora as lora_lib

log = logging.getLogger(__name__)
FEATURES = ("ifd", "grad", "hidden")
VERSION = 1  # bump when an artifact's content or meaning changes


@dataclasses.dataclass(frozen=True)
class Env:
  """What the offline stage needs from the run (built by the loop)."""
  model_config: Any  # the run's ModelConfig (its LoRA is the run's adapters)
  model_key: str  # fingerprint of the base weights (checkpoint or seeded init)
  optim_cfg: Any  # optim sub-config (the warmup trains with it)
  train_cfg: Any  # train sub-config (batch size, micro batch, projection)
  seed: int
  mesh: Any
  rules: tuple
  score: Any  # the run's jitted score step (base-model loss)
  lora_key: jax.Array  # warmup adapters' init key
  step_key: jax.Array  # warmup steps' dropout key (fold_in per step)


@dataclasses.dataclass(frozen=True)
class Result:
  ifd_raw_N: Optional[np.ndarray]  # loss ratio before the IFD > 1 mapping
  ifd_N: Optional[np.ndarray]  # IFD after the mapping (the clustering feature)
  idu0_N: Optional[np.ndarray]  # base-model response loss
  cluster_N: Optional[np.ndarray]  # k-means labels
  num_clusters: int  # K' (<= select.num_clusters; 1 without clusters)
  ledger: accounting.Ledger  # recorded cost of every artifact used
  computed: tuple[str, ...]  # artifacts computed by this call (the rest loaded)
  warmup_loss: Optional[list] = None  # mean warmup loss per epoch


def wants_for(needs, cluster_features: str) -> set[str]:
  """Artifacts a selector's `needs` imply."""
  want = set()
  scores = set(needs.offline_scores)
  if "base_loss" in scores:
    want.add("base_loss")
  if "ifd" in scores or (needs.bandit and cluster_features == "ifd"):
    want.add("ifd")
  if needs.bandit:
    want.add("clusters")
  return want


def fingerprint(parts: dict) -> str:
  """A short stable hash of a JSON-able dict (artifact names, checkpoint checks)."""
  blob = json.dumps({"version": VERSION, **parts}, sort_keys=True, default=str)
  return hashlib.sha256(blob.encode()).hexdigest()[:20]


class _Cache:
  """Artifacts in `<workdir>/offline`, each `<name>-<fingerprint>.npz`."""

  def __init__(self, workdir: str, enabled: bool):
    self.dir, self.enabled = os.path.join(workdir, "offline"), enabled

  def path(self, name: str, fp: str) -> str:
    return os.path.join(self.dir, f"{name}-{fp}.npz")

  def load(self, name: str, fp: str):
    path = self.path(name, fp)
    if not (self.enabled and os.path.exists(path)):
      return None
    try:
      with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["__meta__"]))
        return {k: z[k] for k in z.files if k != "__meta__"}, meta
    except (OSError, ValueError, KeyError):
      log.warning("unreadable offline artifact %s: recomputing", path)
      return None

  def save(self, name: str, fp: str, arrays: dict, meta: dict) -> None:
    os.makedirs(self.dir, exist_ok=True)
    path = self.path(name, fp)
    tmp = f"{path}.tmp{os.getpid()}.npz"
    np.savez(tmp, __meta__=np.array(json.dumps(meta)), **arrays)
    os.replace(tmp, path)


class _Stage:
  """One offline pass: loads or computes artifacts, books their recorded cost."""

  def __init__(self, cfg, env: Env, pool: data.Pool, workdir: str, num_clusters: int):
    self.cfg, self.env, self.pool, self.k = cfg, env, pool, num_clusters
    self.cache = _Cache(workdir, cfg.cache)
    self.ledger, self.computed = accounting.empty(), []
    self.base_fp = fingerprint({"pool": pool.fingerprint, "model": env.model_key})
    self._warmup = None

  def _artifact(self, name: str, fp: str, compute):
    """(arrays, meta) from the cache, else from `compute() -> (arrays, counts, extra)`."""
    got = self.cache.load(name, fp)
    if got is None:
      start = time.monotonic()
      arrays, counts, extra = compute()
      meta = {"cost": counts, "seconds": time.monotonic() - start, **extra}
      self.cache.save(name, fp, arrays, meta)
      self.computed.append(name)
      got = (arrays, meta)
      log.info("offline %s: computed in %.1fs", name, meta["seconds"])
    arrays, meta = got
    for activity, counts in meta["cost"].items():
      self.ledger = accounting.add(self.ledger, "offline", activity, counts)
    self.ledger = accounting.add_seconds(self.ledger, "offline", meta["seconds"])
    return arrays, meta

  # ------------------------------------------------------------------ warmup model
  def warmup_config(self):
    c, mc = self.cfg, self.env.model_config
    lora = lora_lib.LoraConfig(rank=c.warmup_rank, alpha=float(c.warmup_alpha),
                               dropout=mc.lora.dropout, targets=mc.lora.targets)
    return dataclasses.replace(mc, lora=lora)

  def warmup_fp(self) -> str:
    c, t = self.cfg, self.env.train_cfg
    return fingerprint({
        "base": self.base_fp, "fraction": c.warmup_fraction, "epochs": c.warmup_epochs,
        "rank": c.warmup_rank, "alpha": c.warmup_alpha, "seed": self.env.seed,
        "optim": self.env.optim_cfg.to_dict(), "batch": t.batch_size, "micro": t.micro_batch,
        "lora": repr(self.env.model_config.lora)})

  def warmup(self, base):
    """`(warmup steps, warmup params, base)`; trains unless cached."""
    if self._warmup is not None:
      return self._warmup
    mc_w = self.warmup_config()
    tx, lr_fn = optim.make(self.env.optim_cfg)
    spec = train.spec_from_config(mc_w, self.env.train_cfg, self.env.optim_cfg, self.env.seed)
    _, shardings = build.abstract_state(mc_w, tx, self.env.mesh, self.env.rules)
    steps = train.compile(spec, tx, lr_fn, self.env.mesh, shardings)
    box = {"base": base}
    arrays, meta = self._artifact("warmup", self.warmup_fp(),
                                  lambda: self._train_warmup(box, mc_w, tx, steps))
    lora = paths.unflatten({k[len("lora/"):]: v for k, v in arrays.items()
                            if k.startswith("lora/")})
    self.warmup_loss = meta.get("loss_per_epoch")
    self._warmup = (steps, {"params": box["base"], "lora": lora}, box["base"])
    return self._warmup

  def _train_warmup(self, box, mc_w, tx, steps):
    pool, c, b = self.pool, self.cfg, self.env.train_cfg.batch_size
    n = min(len(pool), max(1, int(round(c.warmup_fraction * len(pool)))))
    rng = np.random.default_rng([self.env.seed, 0x3A7])
    ids = np.sort(rng.choice(len(pool), n, replace=False))
    state, _ = build.init_state(mc_w, box["base"], tx, self.env.lora_key, self.env.mesh,
                                self.env.rules)
    counts, losses, k = {}, [], 0
    for _ in tqdm.trange(c.warmup_epochs, desc="warmup epochs", leave=False):
      order, epoch = rng.permutation(ids), []
      for start in range(0, n, b):
        batch = data.gather(pool, order[start:start + b], b)
        state, out = steps.plain(state, sharding.shard_batch(self.env.mesh, batch),
                                 jax.random.fold_in(self.env.step_key, k))
        epoch.append(float(train.fetch(out["metrics"])["loss"]))
        for name, v in accounting.passes_of_batch(batch, backward=True).items():
          counts[name] = counts.get(name, 0) + v
        k += 1
      losses.append(float(np.mean(epoch)))
    box["base"] = state.base  # the steps donated the state: the live base is its copy
    flat = {f"lora/{p}": np.asarray(x) for p, x in paths.flatten(
        jax.device_get(state.lora)).items()}
    log.info("warmup: %d samples x %d epochs (%d steps), loss per epoch %s", n,
             c.warmup_epochs, k, [round(x, 3) for x in losses])
    return dict(flat, ids=ids), {"warmup_train": counts}, {"loss_per_epoch": losses}

  # ------------------------------------------------------------------ scores
  def _all(self) -> np.ndarray:
    return np.arange(len(self.pool))

  def ifd(self, base):
    steps, params, base = self.warmup(base)
    fp = fingerprint({"warmup": self.warmup_fp(), "batch": self.cfg.score_batch_size})

    def compute():
      out, counts = scoring.losses(steps.score, params, self.pool, self._all(),
                                   self.cfg.score_batch_size, self.env.mesh, response=True,
                                   desc="IFD (warmup model)")
      ifd_raw = clustering.ifd_from_losses(out["loss"], out["response_loss"], False)
      return dict(out, ifd_raw=ifd_raw), {"ifd": counts}, {}

    arrays, _ = self._artifact("ifd", fp, compute)
    return arrays["ifd_raw"], base

  def base_loss(self, base):
    fp = fingerprint({"base": self.base_fp, "batch": self.cfg.score_batch_size})

    def compute():
      out, counts = scoring.losses(self.env.score, {"params": base}, self.pool,
                                   self._all(), self.cfg.score_batch_size, self.env.mesh,
                                   desc="IDU_0 (base model)")
      return {"loss": out["loss"]}, {"base_loss": counts}, {}

    return self._artifact("base_loss", fp, compute)[0]["loss"]

  def features(self, kind: str, base):
    steps, params, base = self.warmup(base)
    t = self.env.train_cfg
    fp = fingerprint({"warmup": self.warmup_fp(), "kind": kind,
                      "batch": self.cfg.score_batch_size,
                      "projection": [t.projection_dim, list(t.projection_targets)]})

    def compute():
      if kind == "hidden":
        f, counts = scoring.mean_hidden(self.warmup_config(), params, self.pool, self._all(),
                                        self.cfg.score_batch_size, self.env.mesh)
      else:
        if not t.projection_dim:
          raise ValueError("offline.cluster_features='grad' needs train.projection_dim > 0")
        f, counts = scoring.projected_grads(steps.project, params, self.pool, self._all(),
                                            self.cfg.score_batch_size, self.env.mesh)
      return {"features": f}, {f"features_{kind}": counts}, {}

    return self._artifact(f"features_{kind}", fp, compute)[0]["features"], fp, base

  def clusters(self, feats_NxD: np.ndarray, source_fp: str) -> np.ndarray:
    fp = fingerprint({"source": source_fp, "k": self.k, "seed": self.env.seed,
                      "n_init": self.cfg.kmeans_n_init})

    def compute():
      x = feats_NxD
      if x.ndim == 2:  # directions, not magnitudes (cosine geometry, as LESS)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
      labels = clustering.kmeans(x, self.k, self.env.seed, self.cfg.kmeans_n_init)
      return {"cluster": labels}, {}, {}

    return self._artifact("clusters", fp, compute)[0]["cluster"]


def run(cfg, env: Env, pool: data.Pool, workdir: str, wants: set[str], num_clusters: int,
        base):
  """`(Result, base)`: the artifacts in `wants` (warmup/ifd/base_loss/clusters).

  `cfg` is the `offline` sub-config. `base` is handed back because the warmup
  steps donate their state: use the returned one afterwards.
  """
  if cfg.cluster_features not in FEATURES:
    raise ValueError(f"offline.cluster_features={cfg.cluster_features!r}; use one of "
                     f"{FEATURES}")
  stage = _Stage(cfg, env, pool, workdir, num_clusters)
  ifd_raw = ifd = idu0 = cluster = None
  if "ifd" in wants or ("clusters" in wants and cfg.cluster_features == "ifd"):
    ifd_raw, base = stage.ifd(base)
    ifd = clustering.clip_ifd(ifd_raw, cfg.ifd_clip)
  if "base_loss" in wants:
    idu0 = stage.base_loss(base)
  if "clusters" in wants:
    if cfg.cluster_features == "ifd":
      feats, source = ifd, fingerprint({"ifd": stage.warmup_fp(), "clip": cfg.ifd_clip})
    else:
      feats, source, base = stage.features(cfg.cluster_features, base)
    cluster = stage.clusters(feats, source)
  k = int(cluster.max()) + 1 if cluster is not None else 1
  result = Result(ifd_raw_N=ifd_raw, ifd_N=ifd, idu0_N=idu0, cluster_N=cluster,
                  num_clusters=k, ledger=stage.ledger, computed=tuple(stage.computed),
                  warmup_loss=getattr(stage, "warmup_loss", None))
  return result, base
