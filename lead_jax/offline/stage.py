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
  proxy_ifd, less  the baselines' scores (superfilter, less): see
             `lead_jax.offline.baseline_scores`
  crossfit_0, crossfit_1, crossfit_il  (`warmup_il`, only for
             idu.reference = warmup) IL, the warmup model's conditional
             response loss of every sample (the IFD artifact's `loss`, no
             extra pass), except on the warmup subset, which the warmup model
             trained on: there it is cross-fitted. The subset is split into
             two seeded halves (`crossfit_halves`), a warmup LoRA is trained
             on each with the warmup's recipe and epochs (activity
             `crossfit_train`), and each half's model scores the other half's
             samples (one forward pass each, activity `crossfit_il`)

Each artifact is one .npz, `<name>-<fingerprint>.npz` in `<workdir>/offline/`
(or `offline.cache_dir`, shared by several runs). Its fingerprint (`fingerprint`:
`lead_jax.artifacts.fingerprint` with this module's VERSION) covers everything
it depends on (pool fingerprint, model, seed and the config fields it reads).
It is written atomically with the fingerprint in its meta
(`artifacts.cached_npz`) and loaded instead of recomputed when present and
matching (with offline.cache).
It stores the passes and seconds it cost, so a run's accounting books the same
offline cost whether the artifact was computed now or by an earlier, killed
process; `Result.computed` lists what this call actually computed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any, Optional

import jax
import numpy as np
import tqdm

from lead_jax import accounting, artifacts, data, paths
from lead_jax.offline import baseline_scores
from lead_jax.train import build
from lead_jax.offline import clustering
from lead_jax.train import optim
from lead_jax.train import passes
from lead_jax.train import scoring
from lead_jax.train import sharding
from lead_jax.train import step as train
from lead_jax.model import lora as lora_lib

log = logging.getLogger(__name__)
FEATURES = ("ifd", "grad", "hidden")
VERSION = 1  # bump when an artifact's content or meaning changes
_WARMUP_SEED, _CROSSFIT_SEED = 0x3A7, 0xC2F  # the warmup subset's Generator; the halves' split


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
  proxy: Any = None  # `baseline_scores.Proxy` (superfilter): the small model and its base
  dev_pool: Optional[data.Pool] = None  # the dev set (less: its gradients)


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
  proxy_ifd_N: Optional[np.ndarray] = None  # IFD under the warmed-up proxy (superfilter)
  less_N: Optional[np.ndarray] = None  # projected-gradient cosine with the dev set (less)
  reference_N: Optional[np.ndarray] = None  # IL, cross-fitted on the warmup subset (warmup_il)


def warmup_size(fraction: float, num_pool: int) -> int:
  """Samples in the warmup subset: round(fraction * N), at least 1, at most N."""
  return min(num_pool, max(1, int(round(fraction * num_pool))))


def crossfit_halves(ids: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """The warmup subset `ids` split into two seeded halves (sorted; the first
  has floor(n / 2) samples): each half's warmup model scores the other."""
  order = np.random.default_rng([seed, _CROSSFIT_SEED]).permutation(np.asarray(ids))
  half = order.shape[0] // 2
  return np.sort(order[:half]), np.sort(order[half:])


@dataclasses.dataclass(frozen=True)
class CrossFit:
  """One cross-fitting model: warmup LoRA trained on `trained_ids`, it scores
  the other half, `scored_ids`."""
  trained_ids: np.ndarray
  scored_ids: np.ndarray
  params: Any  # the model's variables (the run's base, this half's adapters)
  fp: str  # its artifact's fingerprint


def wants_for(needs, cluster_features: str) -> set[str]:
  """Artifacts a selector's `needs` (`selection.needs`) imply: every offline
  score by its name (`selection.SCORES`: ifd, base_loss, proxy_ifd, less, and
  warmup_il when idu.reference = warmup),
  and the clusters (on the IFD by default) for the bandit's methods."""
  want = set(needs.offline_scores)
  if needs.bandit:
    want.add("clusters")
    if cluster_features == "ifd":
      want.add("ifd")
  return want


def fingerprint(parts: dict) -> str:
  """The offline stage's key: `artifacts.fingerprint` of `parts` and `VERSION`
  (artifact names; the loop's run fingerprint)."""
  return artifacts.fingerprint({"version": VERSION, **parts})


class _Stage:
  """One offline pass: loads or computes artifacts, books their recorded cost."""

  def __init__(self, cfg, env: Env, pool: data.Pool, workdir: str, num_clusters: int):
    self.cfg, self.env, self.pool, self.k = cfg, env, pool, num_clusters
    self.dir = cfg.cache_dir or os.path.join(workdir, "offline")
    self.ledger, self.computed = accounting.empty(), []
    self.base_fp = fingerprint({"pool": pool.fingerprint, "model": env.model_key})
    self._warm, self._warm_loss = {}, {}
    self._ifd, self._crossfit = None, None  # memos: their cost is booked once

  def artifact(self, name: str, fp: str, compute):
    """(arrays, meta) of `<dir>/<name>-<fp>.npz` (`artifacts.cached_npz`; loaded
    only with offline.cache), else from `compute() -> (arrays, counts, extra)`."""

    def timed():
      start = time.monotonic()
      arrays, counts, extra = compute()
      return arrays, {"cost": counts, "seconds": time.monotonic() - start, **extra}

    path = os.path.join(self.dir, f"{name}-{fp}.npz")
    arrays, meta, computed = artifacts.cached_npz(path, timed, expect={"fingerprint": fp},
                                                  reuse=self.cfg.cache)
    if computed:
      self.computed.append(name)
      log.info("offline %s: computed in %.1fs", name, meta["seconds"])
    for activity, counts in meta["cost"].items():
      self.ledger = accounting.add(self.ledger, "offline", activity, counts)
    self.ledger = accounting.add_seconds(self.ledger, "offline", meta["seconds"])
    return arrays, meta

  # ------------------------------------------------------------------ warmup model
  def warmup_config(self, model_config=None):
    """The warmup model: `model_config` (default the run's) with the warmup LoRA."""
    c, mc = self.cfg, model_config or self.env.model_config
    lora = lora_lib.LoraConfig(rank=c.warmup_rank, alpha=float(c.warmup_alpha),
                               dropout=self.env.model_config.lora.dropout,
                               targets=self.env.model_config.lora.targets)
    return dataclasses.replace(mc, lora=lora)

  def warmup_fp(self, base_fp: Optional[str] = None) -> str:
    c, t = self.cfg, self.env.train_cfg
    return fingerprint({
        "base": base_fp or self.base_fp, "fraction": c.warmup_fraction, "epochs": c.warmup_epochs,
        "rank": c.warmup_rank, "alpha": c.warmup_alpha, "seed": self.env.seed,
        "optim": self.env.optim_cfg.to_dict(), "batch": t.batch_size, "micro": t.micro_batch,
        "lora": repr(self.env.model_config.lora)
    })

  def warmup(self, base):
    """`(warmup steps, warmup params)` of the run's model on top of `base`;
    trains unless cached."""
    got = self.warmed("warmup", self.warmup_config(), base, self.warmup_fp())
    self.warmup_loss = self._warm_loss["warmup"]
    return got

  def warmed(self, name: str, mc_w, base, fp: str):
    """`(steps, params)` of model `mc_w` (base weights `base`) after the warmup
    on the seeded subset (the artifact `name`); the same subset for every model."""
    if name in self._warm:
      return self._warm[name]
    tx, lr_fn = optim.make(self.env.optim_cfg)
    spec = train.spec_from_config(mc_w, self.env.train_cfg, self.env.optim_cfg, self.env.seed)
    state_shardings, base_shardings = build.shardings(mc_w, tx, self.env.mesh, self.env.rules)
    if base_shardings is not None:  # the run's base is there already, a proxy's is not
      base = sharding.place(base, base_shardings)
    steps = train.compile(spec, tx, lr_fn, self.env.mesh, state_shardings)
    arrays, meta = self.artifact(name, fp, lambda: self._train_warmup(base, mc_w, tx, steps, name))
    lora = paths.unflatten({
        k[len("lora/"):]: v for k, v in arrays.items() if k.startswith("lora/")
    })
    self._warm_loss[name] = meta.get("loss_per_epoch")
    self._warm[name] = (steps, train.params(base, lora))
    return self._warm[name]

  def warmup_subset(self) -> tuple[np.ndarray, np.random.Generator]:
    """`(ids, rng)`: the warmup's seeded subset (sorted) and the Generator that
    then orders its epochs."""
    n = warmup_size(self.cfg.warmup_fraction, len(self.pool))
    rng = np.random.default_rng([self.env.seed, _WARMUP_SEED])
    return np.sort(rng.choice(len(self.pool), n, replace=False)), rng

  def _train_warmup(self, base, mc_w, tx, steps, name: str, subset=None, activity=None):
    """Trains the warmup recipe on `subset` = `(ids, rng)` (default the warmup
    subset), booking its steps under `activity` (default `<name>_train`)."""
    pool, c, b = self.pool, self.cfg, self.env.train_cfg.batch_size
    ids, rng = subset or self.warmup_subset()
    n, activity = ids.shape[0], activity or f"{name}_train"
    state, _ = build.init_state(mc_w, base, tx, self.env.lora_key, self.env.mesh, self.env.rules)
    counts, losses, k = {}, [], 0
    for _ in tqdm.trange(c.warmup_epochs, desc=f"{name} epochs", leave=False, disable=None):
      order = rng.permutation(ids)
      batches = (data.gather(pool, order[s:s + b], b) for s in range(0, n, b))
      epoch = []
      for done in passes.train(steps.plain, state, base, batches, mesh=self.env.mesh,
                               step_key=self.env.step_key, start=k, desc=name, activity=activity):
        state, k = done.state, done.index + 1
        epoch.append(float(done.out["metrics"]["loss"]))
        counts = passes.add(counts, done.counts)
      losses.append(float(np.mean(epoch)))
    flat = {f"lora/{p}": np.asarray(x) for p, x in paths.flatten(jax.device_get(state.lora)).items()}
    log.info("%s: %d samples x %d epochs (%d steps), loss per epoch %s", name, n, c.warmup_epochs,
             k, [round(x, 3) for x in losses])
    return dict(flat, ids=ids), counts, {"loss_per_epoch": losses}

  # ------------------------------------------------------------------ scores
  def _all(self) -> np.ndarray:
    return np.arange(len(self.pool))

  def ifd_arrays(self, base) -> dict:
    """The IFD artifact: `loss` (with the prompt), `response_loss` and
    `ifd_raw` of every sample under the warmup model (booked once)."""
    if self._ifd is not None:
      return self._ifd
    steps, params = self.warmup(base)
    fp = fingerprint({"warmup": self.warmup_fp(), "batch": self.cfg.score_batch_size})

    def compute():
      out, counts = scoring.losses(steps.score, params, self.pool, self._all(),
                                   self.cfg.score_batch_size, self.env.mesh, response=True,
                                   desc="IFD (warmup model)")
      ifd_raw = clustering.ifd_from_losses(out["loss"], out["response_loss"], False)
      return dict(out, ifd_raw=ifd_raw), {"ifd": counts}, {}

    self._ifd = self.artifact("ifd", fp, compute)[0]
    return self._ifd

  def ifd(self, base):
    return self.ifd_arrays(base)["ifd_raw"]

  # ------------------------------------------------------------------ reference loss
  def crossfit(self, base) -> tuple[Any, tuple[CrossFit, CrossFit]]:
    """`(steps, models)`: the two cross-fitting warmup models (artifacts
    `crossfit_0` and `crossfit_1`), each trained on one half of the warmup
    subset with the warmup's recipe, epochs, init and step keys."""
    steps, _ = self.warmup(base)  # the same model config: its compiled steps
    if self._crossfit is not None:
      return steps, self._crossfit
    ids, _ = self.warmup_subset()
    halves = crossfit_halves(ids, self.env.seed)
    tx, _ = optim.make(self.env.optim_cfg)
    mc_w, models = self.warmup_config(), []
    for h, trained in enumerate(halves):
      name = f"crossfit_{h}"
      fp = fingerprint({"warmup": self.warmup_fp(), "half": h, "split": _CROSSFIT_SEED})
      order_rng = np.random.default_rng([self.env.seed, _WARMUP_SEED, 1 + h])
      arrays, meta = self.artifact(
          name, fp, lambda: self._train_warmup(base, mc_w, tx, steps, name,
                                               (trained, order_rng), activity="crossfit_train"))
      self._warm_loss[name] = meta.get("loss_per_epoch")
      lora = paths.unflatten({
          k[len("lora/"):]: v for k, v in arrays.items() if k.startswith("lora/")
      })
      models.append(CrossFit(trained, halves[1 - h], train.params(base, lora), fp))
    self._crossfit = tuple(models)
    return steps, self._crossfit

  def warmup_il(self, base) -> np.ndarray:
    """IL_N (float32): the warmup model's conditional response loss, the
    IFD artifact's, with each warmup-subset sample's replaced by the loss
    under the cross-fitting model that did not train on it."""
    il_N = np.array(self.ifd_arrays(base)["loss"], np.float32)
    steps, models = self.crossfit(base)
    fp = fingerprint({"crossfit": [m.fp for m in models], "batch": self.cfg.score_batch_size})

    def compute():
      arrays, counts = {}, {}
      for h, m in enumerate(models):
        out, c = scoring.losses(steps.score, m.params, self.pool, m.scored_ids,
                                self.cfg.score_batch_size, self.env.mesh,
                                desc=f"cross-fitted IL (model {h})")
        arrays[f"ids_{h}"], arrays[f"loss_{h}"] = m.scored_ids, out["loss"]
        counts = passes.add(counts, {"crossfit_il": c})
      return arrays, counts, {}

    arrays, _ = self.artifact("crossfit_il", fp, compute)
    for h in range(len(models)):
      il_N[arrays[f"ids_{h}"]] = arrays[f"loss_{h}"]
    return il_N

  def base_loss(self, base):
    fp = fingerprint({"base": self.base_fp, "batch": self.cfg.score_batch_size})

    def compute():
      out, counts = scoring.losses(self.env.score, {"params": base}, self.pool, self._all(),
                                   self.cfg.score_batch_size, self.env.mesh,
                                   desc="IDU_0 (base model)")
      return {"loss": out["loss"]}, {"base_loss": counts}, {}

    return self.artifact("base_loss", fp, compute)[0]["loss"]

  def features(self, kind: str, base):
    steps, params = self.warmup(base)
    t = self.env.train_cfg
    fp = fingerprint({
        "warmup": self.warmup_fp(), "kind": kind, "batch": self.cfg.score_batch_size,
        "projection": [t.projection_dim, list(t.projection_targets)]
    })

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

    return self.artifact(f"features_{kind}", fp, compute)[0]["features"], fp

  def clusters(self, feats_NxD: np.ndarray, source_fp: str) -> np.ndarray:
    fp = fingerprint({
        "source": source_fp, "k": self.k, "seed": self.env.seed, "n_init": self.cfg.kmeans_n_init
    })

    def compute():
      x = feats_NxD
      if x.ndim == 2:  # directions, not magnitudes (cosine geometry, as LESS)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
      labels = clustering.kmeans(x, self.k, self.env.seed, self.cfg.kmeans_n_init)
      return {"cluster": labels}, {}, {}

    return self.artifact("clusters", fp, compute)[0]["cluster"]


def run(cfg, env: Env, pool: data.Pool, workdir: str, wants: set[str], num_clusters: int, base):
  """The `Result` of the artifacts in `wants` (ifd, base_loss, clusters, the
  baselines' proxy_ifd and less, `lead_jax.offline.baseline_scores`, and
  warmup_il, the reference loss of idu.reference = warmup).

  `cfg` is the `offline` sub-config, `base` the run model's base weights
  (placed on the run's devices; read, never donated).
  """
  if cfg.cluster_features not in FEATURES:
    raise ValueError(f"offline.cluster_features={cfg.cluster_features!r}; use one of "
                     f"{FEATURES}")
  if "warmup_il" in wants and warmup_size(cfg.warmup_fraction, len(pool)) < 2:
    raise ValueError(f"idu.reference='warmup' cross-fits the warmup subset in two halves: "
                     f"offline.warmup_fraction={cfg.warmup_fraction} gives fewer than 2 of "
                     f"{len(pool)} samples")
  stage = _Stage(cfg, env, pool, workdir, num_clusters)
  ifd_raw = ifd = idu0 = cluster = None
  if "ifd" in wants or ("clusters" in wants and cfg.cluster_features == "ifd"):
    ifd_raw = stage.ifd(base)
    ifd = clustering.clip_ifd(ifd_raw, cfg.ifd_clip)
  if "base_loss" in wants:
    idu0 = stage.base_loss(base)
  if "clusters" in wants:
    if cfg.cluster_features == "ifd":
      feats, source = ifd, fingerprint({"ifd": stage.warmup_fp(), "clip": cfg.ifd_clip})
    else:
      feats, source = stage.features(cfg.cluster_features, base)
    cluster = stage.clusters(feats, source)
  proxy_ifd = less = None
  if "proxy_ifd" in wants:
    proxy_ifd = clustering.clip_ifd(baseline_scores.proxy_ifd(stage), cfg.ifd_clip)
  if "less" in wants:
    less = baseline_scores.less(stage, base)
  reference = stage.warmup_il(base) if "warmup_il" in wants else None
  k = int(cluster.max()) + 1 if cluster is not None else 1
  result = Result(ifd_raw_N=ifd_raw, ifd_N=ifd, idu0_N=idu0, cluster_N=cluster, num_clusters=k,
                  ledger=stage.ledger, computed=tuple(stage.computed), warmup_loss=getattr(
                      stage, "warmup_loss",
                      None), proxy_ifd_N=proxy_ifd, less_N=less, reference_N=reference)
  return result
