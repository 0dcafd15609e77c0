"""The offline stage: IFD mapping, seeded k-means, cached artifacts, their cost."""

import jax
import numpy as np
import pytest

from lead_jax import accounting, data
from lead_jax.train import build
from lead_jax.offline import clustering
from lead_jax.offline import stage as offline
from lead_jax.train import optim
from lead_jax.train import sharding
from lead_jax.model import tokenizer
from lead_jax.train import scoring
from lead_jax.train import step as train
from lead_jax import selection
from lead_jax.data import synthetic
from loop_config import get_config


def test_ifd_from_losses_and_the_mapping_above_one():
  loss = np.array([1.0, 3.0, 2.0, 1.0, np.nan])
  response = np.array([2.0, 2.0, 0.0, 1.0, 1.0])
  np.testing.assert_allclose(
      clustering.ifd_from_losses(loss, response, False), [0.5, 1.5, 0.0, 1.0, 0.0])
  # > 1 (the prompt does not help) -> 0; exactly 1 stays
  np.testing.assert_allclose(
      clustering.ifd_from_losses(loss, response, True), [0.5, 0.0, 0.0, 1.0, 0.0])


def test_kmeans_is_seeded_and_ordered_by_centre():
  rng = np.random.default_rng(0)
  x = np.concatenate([rng.normal(m, 0.05, 30) for m in (0.9, 0.1, 0.5)])
  labels = clustering.kmeans(x, 3, seed=0, n_init=4)
  np.testing.assert_array_equal(labels, clustering.kmeans(x, 3, seed=0, n_init=4))
  assert labels[:30].tolist() == [2] * 30 and labels[30:60].tolist() == [0] * 30
  assert labels[60:].tolist() == [1] * 30  # cluster 0 = lowest IFD
  # fewer distinct values than K: fewer (non-empty) clusters
  few = clustering.kmeans(np.array([0.0, 0.0, 1.0, 1.0, 1.0]), 4, seed=0, n_init=2)
  assert few.tolist() == [0, 0, 1, 1, 1]
  # several dimensions: renumbered by size
  pts = np.concatenate([np.full((5, 2), 3.0), np.zeros((9, 2))])
  assert clustering.kmeans(pts, 2, seed=1, n_init=2).tolist() == [1] * 5 + [0] * 9


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  config = get_config()
  workdir = str(tmp_path_factory.mktemp("offline"))
  config.data.train_path = synthetic.write_lake(workdir + "/lake", size=120, test_per_task=1,
                                                dev_per_task=1)["train"]
  pool = data.load_pool(config.data, tokenizer.load("byte_level"), workdir)
  mesh = sharding.make_mesh(config.mesh)
  mc, base = build.load_base(config.model, config.lora, jax.random.key(0))
  tx, lr_fn = optim.make(config.optim)
  state_shardings, base_shardings = build.shardings(mc, tx, mesh, config.mesh.rules)
  base = sharding.place(base, base_shardings)
  spec = train.spec_from_config(mc, config.train, config.optim, config.seed)
  steps = train.compile(spec, tx, lr_fn, mesh, state_shardings)
  e = offline.Env(mc, "tiny", config.optim, config.train, config.seed, mesh,
                  tuple(config.mesh.rules), steps.score, jax.random.key(3), jax.random.key(4))
  return dict(config=config, pool=pool, env=e, base=base, workdir=workdir)


def _run(env, cfg, wants, base):
  return offline.run(cfg, env["env"], env["pool"], env["workdir"], wants, 3, base)


def test_offline_computes_once_then_loads_from_the_cache(env):
  cfg, n = env["config"].offline, len(env["pool"])
  wants = {"ifd", "base_loss", "clusters"}
  first = _run(env, cfg, wants, env["base"])
  assert set(first.computed) == {"warmup", "ifd", "base_loss", "clusters"}
  second = _run(env, cfg, wants, env["base"])
  assert second.computed == ()  # nothing recomputed
  for name in ("ifd_raw_N", "ifd_N", "idu0_N", "cluster_N"):
    np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
  assert accounting.to_dict(first.ledger)["phases"] == accounting.to_dict(second.ledger)["phases"]
  acts = first.ledger.passes["offline"]
  assert acts["ifd"]["forward_samples"] == 2 * n and acts["base_loss"]["forward_samples"] == n
  n_warm = int(round(cfg.warmup_fraction * n))
  assert acts["warmup_train"]["backward_samples"] == cfg.warmup_epochs * n_warm
  assert acts["ifd"]["backward_samples"] == 0
  assert np.all(first.ifd_N <= 1.0) and np.all(first.ifd_N >= 0.0)
  assert np.all(first.ifd_N[first.ifd_raw_N > 1.0] == 0.0)
  assert first.cluster_N.max() + 1 == first.num_clusters <= 3
  # clusters are ordered by IFD: every member of cluster c is below those of c + 1
  for c in range(first.num_clusters - 1):
    assert first.ifd_N[first.cluster_N == c].max() <= first.ifd_N[first.cluster_N == c + 1].min()
  assert np.all(np.isfinite(first.idu0_N)) and first.idu0_N.min() > 0


@pytest.mark.parametrize("features", ["hidden", "grad"])
def test_cluster_features_from_the_warmup_model(env, features):
  cfg = env["config"].offline.copy_and_resolve_references()
  cfg.cluster_features = features
  result = _run(env, cfg, {"clusters"}, env["base"])
  assert result.cluster_N.shape == (len(env["pool"]),) and result.num_clusters >= 2
  row = result.ledger.passes["offline"][f"features_{features}"]
  assert row["forward_samples"] == len(env["pool"])
  assert row["backward_samples"] == (len(env["pool"]) if features == "grad" else 0)
  assert "ifd" not in result.ledger.passes["offline"]  # not needed for these clusters


def test_warmup_il_is_cross_fitted_on_the_warmup_subset_and_booked(env):
  cfg, pool, base, n = env["config"].offline, env["pool"], env["base"], len(env["pool"])
  wants = {"ifd", "base_loss", "clusters", "warmup_il"}
  first = _run(env, cfg, wants, base)
  assert {"crossfit_0", "crossfit_1", "crossfit_il"} <= set(first.computed)
  stage = offline._Stage(cfg, env["env"], pool, env["workdir"], 3)
  ids, _ = stage.warmup_subset()
  halves = offline.crossfit_halves(ids, env["env"].seed)
  assert ids.size == offline.warmup_size(cfg.warmup_fraction, n) >= 2
  assert [h.size for h in halves] == [ids.size // 2, ids.size - ids.size // 2]
  np.testing.assert_array_equal(np.sort(np.concatenate(halves)), ids)  # disjoint, all of it
  steps, models = stage.crossfit(base)
  assert stage.computed == []  # both models come from the cache
  # outside the warmup subset IL is the IFD pass's conditional loss (no extra pass)
  outside = np.setdiff1d(np.arange(n), ids)
  np.testing.assert_array_equal(first.reference_N[outside], stage.ifd_arrays(base)["loss"][outside])
  assert not np.allclose(first.reference_N[ids], stage.ifd_arrays(base)["loss"][ids])  # replaced
  for h, m in enumerate(models):  # each half is scored by the model of the other half
    np.testing.assert_array_equal(m.trained_ids, halves[h])
    np.testing.assert_array_equal(m.scored_ids, halves[1 - h])
    again, _ = scoring.losses(steps.score, m.params, pool, halves[1 - h], 16, env["env"].mesh)
    np.testing.assert_allclose(first.reference_N[halves[1 - h]], again["loss"], rtol=1e-5)
    own, _ = scoring.losses(steps.score, m.params, pool, halves[h], 16, env["env"].mesh)
    assert not np.allclose(first.reference_N[halves[h]], own["loss"], rtol=1e-5)
  # the cost: two half-size warmups and one forward pass per warmup sample, offline
  acts = first.ledger.passes["offline"]
  assert acts["crossfit_train"]["backward_samples"] == cfg.warmup_epochs * ids.size
  assert acts["crossfit_train"]["forward_samples"] == cfg.warmup_epochs * ids.size
  assert acts["crossfit_il"] == dict(acts["crossfit_il"], forward_samples=ids.size,
                                     backward_samples=0, backward_tokens=0)
  assert acts["ifd"]["forward_samples"] == 2 * n  # the IFD pass is booked once
  need = selection.needs("lead", env["config"].select, "warmup")
  declared = need.scoring_passes(n, 0, num_warmup=ids.size)["offline"]
  assert accounting.forward_sample_passes(first.ledger) == declared == 3 * n + ids.size
  second = _run(env, cfg, wants, base)
  assert second.computed == ()
  np.testing.assert_array_equal(second.reference_N, first.reference_N)
  assert accounting.to_dict(first.ledger)["phases"] == accounting.to_dict(second.ledger)["phases"]
  small = cfg.copy_and_resolve_references()
  small.warmup_fraction = 1.0 / n  # one warmup sample: nothing to cross-fit
  with pytest.raises(ValueError, match="idu.reference='warmup' cross-fits"):
    _run(env, small, wants, base)
