"""lead_jax.api.offline against the offline stage's own functions on small
arrays: the same losses give the same IFD, clusters and IDU_0."""

import numpy as np
import pytest

from configs import default
from lead_jax import api
from lead_jax.offline import clustering

N = 50


def _losses():
  rng = np.random.default_rng(0)
  loss_N = rng.uniform(0.5, 2.0, N)
  response_N = loss_N / rng.uniform(0.2, 1.3, N)  # some IFD > 1: mapped to 0
  response_N[3] = 0.0  # no target token: IFD 0
  return loss_N, response_N, rng.uniform(1.0, 3.0, N)


def test_score_runs_fixed_shape_batches_and_cuts_the_padding():
  loss_N, response_N, _ = _losses()
  examples_N = {"i": np.arange(N), "pair": np.stack([loss_N, response_N], 1)}
  shapes = []

  def score_fn(batch):
    shapes.append(batch["pair"].shape)
    return batch["pair"][:, 0], batch["pair"][:, 1]

  got = api.offline.score(score_fn, examples_N, batch_size=16)
  np.testing.assert_array_equal(got[0], loss_N)
  np.testing.assert_array_equal(got[1], response_N)
  assert shapes == [(16, 2)] * 4  # 50 = 3 x 16 + 2, the last batch padded to 16
  only = api.offline.score(lambda b: b["pair"][:, 0], examples_N, batch_size=64)
  np.testing.assert_array_equal(only, loss_N)
  with pytest.raises(ValueError, match="one value per row"):
    api.offline.score(lambda b: b["pair"], examples_N, batch_size=8)
  with pytest.raises(ValueError, match="same leading axis N"):
    api.offline.score(score_fn, {"a": np.zeros(3), "b": np.zeros(4)}, batch_size=2)


def test_ifd_clusters_and_run_are_the_offline_stages():
  config, seed = default.get_config(), 3
  config.select.num_clusters = 4
  loss_N, response_N, base_N = _losses()
  ifd_N = api.offline.ifd(loss_N, response_N, clip=True)
  np.testing.assert_array_equal(ifd_N, clustering.ifd_from_losses(loss_N, response_N, True))
  assert ifd_N[3] == 0 and (ifd_N <= 1).all() and (ifd_N == 0).sum() > 1
  expected_C = clustering.kmeans(ifd_N, 4, seed, config.offline.kmeans_n_init)
  np.testing.assert_array_equal(api.offline.clusters(ifd_N, config, seed), expected_C)
  examples_N = {"loss": loss_N, "response": response_N, "base": base_N}
  result = api.offline.run(examples_N, lambda b: (b["loss"], b["response"]), lambda b: b["base"],
                           config, seed, batch_size=16)
  np.testing.assert_array_equal(result.ifd_raw_N,
                                clustering.ifd_from_losses(loss_N, response_N, False))
  np.testing.assert_array_equal(result.ifd_N, ifd_N)
  np.testing.assert_array_equal(result.cluster_N, expected_C)
  np.testing.assert_array_equal(result.idu0_N, base_N.astype(np.float32))
  assert result.num_clusters == 4
  tasks_N = np.arange(N) % 3
  sel = api.LeadSelector.from_offline(result, tasks_N, config, seed)
  ids_S = sel.propose()
  assert ids_S.size and len(set(expected_C[ids_S].tolist())) == 1  # one cluster's samples
  with pytest.raises(ValueError, match="same length"):
    api.offline.ifd(loss_N, response_N[:-1], clip=True)
