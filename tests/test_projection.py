"""The seeded +-1 projection: determinism, blocking, sharding, JL inner products."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lead_jax import paths
from lead_jax.train import projection
from lead_jax.train import sharding
from configs import base as base_config


def _grad_tree(rng, m, sizes):
  return {
      f"layers/p{i}/{ab}": jnp.asarray(rng.standard_normal((m,) + s), jnp.float32)
      for i, s in enumerate(sizes) for ab in ("a", "b")
  }


def test_projection_deterministic_blocking_invariant_and_explicit():
  rng = np.random.default_rng(0)
  g = paths.unflatten(_grad_tree(rng, 3, [(5, 7), (11,)]))
  proj = projection.Projection(64, (r".*",), 4096, seed=11)
  a = projection.project(proj, g)
  np.testing.assert_array_equal(a, projection.project(proj, g))
  np.testing.assert_array_equal(a, jax.jit(functools.partial(projection.project, proj))(g))
  small_blocks = projection.project(projection.Projection(64, (r".*",), 3, seed=11), g)
  np.testing.assert_allclose(small_blocks, a, rtol=1e-5, atol=1e-5)
  flat = paths.flatten(g)
  g_mxP = np.concatenate([np.asarray(x).reshape(3, -1) for x in flat.values()], axis=1)
  r = np.asarray(projection.sign_block(11, 0, g_mxP.shape[1], 64))
  assert set(np.unique(r)) == {-1.0, 1.0}
  np.testing.assert_allclose(a, g_mxP @ r / 8.0, rtol=1e-5, atol=1e-5)
  assert not np.allclose(a, projection.project(
      projection.Projection(64, (r".*",), 4096, seed=12), g))


def test_projection_uses_only_its_targets():
  rng = np.random.default_rng(1)
  flat = _grad_tree(rng, 2, [(6,), (4,)])
  proj = projection.Projection(32, (r"p1/b$",), 8, seed=0)
  a = projection.project(proj, paths.unflatten(flat))
  flat["layers/p0/a"] = flat["layers/p0/a"] * 100.0
  np.testing.assert_array_equal(a, projection.project(proj, paths.unflatten(flat)))
  with pytest.raises(ValueError, match="match no parameter"):
    projection.project(projection.Projection(32, (r"nope",), 8), paths.unflatten(flat))
  with pytest.raises(ValueError, match="multiple of 32"):
    projection.Projection(30)


def test_projection_preserves_inner_products_within_jl_bound():
  k, p, pairs = 4096, 2048, 64
  rng = np.random.default_rng(2)
  x = rng.standard_normal((2 * pairs, p)).astype(np.float32)
  x[pairs:] = 0.6 * x[:pairs] + 0.8 * x[pairs:]  # correlated pairs (cos ~ 0.6)
  proj = projection.Projection(k, (r".*",), 1024, seed=3)
  y = np.asarray(jax.jit(functools.partial(projection.project, proj))({"g": jnp.asarray(x)}))
  g, h, pg, ph = x[:pairs], x[pairs:], y[:pairs], y[pairs:]
  scale = np.linalg.norm(g, axis=1) * np.linalg.norm(h, axis=1)
  err = (np.sum(pg * ph, 1) - np.sum(g * h, 1)) / scale
  sd = math.sqrt(2.0 / k)  # Var <Pg, Ph> = (|g|^2 |h|^2 + <g, h>^2) / k <= 2 (|g||h|)^2 / k
  assert np.abs(err).max() < 5 * sd
  assert abs(err.mean()) < 5 * sd / math.sqrt(pairs)  # unbiased
  norm_ratio = np.sum(pg * pg, 1) / np.sum(g * g, 1)
  assert np.abs(norm_ratio - 1).max() < 5 * sd


def test_sign_matrix_is_balanced_and_columns_nearly_orthogonal():
  rows, k = 4096, 256
  r = np.asarray(projection.sign_block(5, 123, rows, k))
  assert abs(r.mean()) < 5 / math.sqrt(rows * k)
  gram = r.T @ r / rows
  off = gram[~np.eye(k, dtype=bool)]
  assert np.abs(off).max() < 6 / math.sqrt(rows)
  np.testing.assert_array_equal(r[10:20], projection.sign_block(5, 133, 10, k))


def test_sharded_projection_equals_single_device():
  """Each device projecting the rows it holds gives the same K numbers."""
  mesh_cfg = base_config.get_mesh()
  mesh_cfg.data, mesh_cfg.fsdp = 2, 4
  mesh = sharding.make_mesh(mesh_cfg)
  rng = np.random.default_rng(4)
  shapes = {
      "layers/p0/a": ((2, 8, 4), (None, "fsdp", None)), "layers/p0/b": (
          (2, 4, 16), (None, None, ("data", "fsdp"))), "layers/p1/a": ((2, 6), ("data",))
  }
  g = paths.unflatten({
      p: jnp.asarray(rng.standard_normal((3,) + s), jnp.float32) for p, (s, _) in shapes.items()
  })
  shardings = {
      p: jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*spec))
      for p, (_, spec) in shapes.items()
  }
  proj = projection.Projection(64, (r".*",), 5, seed=9)
  single = jax.jit(functools.partial(projection.project, proj))(g)
  sharded = jax.jit(lambda t: projection.project(proj, t, shardings))(g)
  np.testing.assert_allclose(sharded, single, rtol=1e-5, atol=1e-5)
