"""Mesh, sharding rules, batch placement, and the sharded step on 8 CPU devices."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from configs import base as base_config
from lead_jax.train import build
from lead_jax.train import optim
from lead_jax.train import sharding
from lead_jax.train import step as train
from test_train import close, make_batch, tiny_config


def _mesh_cfg(data=-1, fsdp=1, tensor=1):
  c = base_config.get_mesh()
  c.data, c.fsdp, c.tensor = data, fsdp, tensor
  return c


def test_mesh_shape_resolution_and_errors():
  assert sharding.mesh_shape(_mesh_cfg(), 8) == (8, 1, 1)
  assert sharding.mesh_shape(_mesh_cfg(2, -1), 8) == (2, 4, 1)
  with pytest.raises(ValueError, match="needs 4 devices"):
    sharding.mesh_shape(_mesh_cfg(2, 2), 8)
  with pytest.raises(ValueError, match="at most one -1"):
    sharding.mesh_shape(_mesh_cfg(-1, -1), 8)
  mesh = sharding.make_mesh(_mesh_cfg(2, 4))
  assert dict(mesh.shape) == {"data": 2, "fsdp": 4, "tensor": 1}
  assert mesh.axis_types == (jax.sharding.AxisType.Auto,) * 3


def test_rules_fit_shapes_and_unused_rules_fail():
  mesh = sharding.make_mesh(_mesh_cfg(1, 8))
  tree = {
      "embed": {"embedding": np.zeros((261, 32))},
      "layers": {"mlp": {"up_proj": {"kernel": np.zeros((2, 32, 64))}}}
  }
  s = sharding.tree_shardings(mesh, base_config.SHARDING_RULES[:2] + ((".*", ()),), tree)
  assert s["embed"]["embedding"].spec == P(None, None)  # 261 rows do not split over 8
  assert s["layers"]["mlp"]["up_proj"]["kernel"].spec == P(None, "fsdp", "tensor")
  with pytest.raises(ValueError, match="match no parameter"):
    sharding.tree_shardings(mesh, ((r"lm_head/kernel$", ("fsdp",)),), tree)
  with pytest.raises(ValueError, match="more entries"):
    sharding.tree_shardings(mesh, ((r".*", (None, None, None, None)),), tree)


def test_shard_batch_splits_rows_and_checks_divisibility():
  mesh = sharding.make_mesh(_mesh_cfg(2, 4))
  batch = make_batch()
  placed = sharding.shard_batch(mesh, batch)
  assert placed["tokens_BxL"].sharding.spec == P(("data", "fsdp"))
  np.testing.assert_array_equal(placed["tokens_BxL"], batch["tokens_BxL"])
  with pytest.raises(ValueError, match="does not split"):
    sharding.shard_batch(mesh, {k: v[:6] for k, v in batch.items()})


def test_sharded_step_equals_single_device_step():
  c = tiny_config(micro_batch=4)  # two chunks of 4 rows, each spread over devices
  c.optim.lr = 1e-3
  mc, base = build.load_base(c.model, c.lora, jax.random.key(0))
  tx, lr_fn = optim.make(c.optim)
  spec = train.spec_from_config(mc, c.train, c.optim, c.seed)
  batch = make_batch()

  single, _ = build.init_state(mc, base, tx, jax.random.key(1))
  new1, out1 = train.compile(spec, tx, lr_fn).train(single, base, batch, jax.random.key(3))

  c.mesh.data, c.mesh.fsdp = 1, 8
  mesh = sharding.make_mesh(c.mesh)
  state, shardings = build.init_state(mc, base, tx, jax.random.key(1), mesh, c.mesh.rules)
  base = sharding.place(base, build.shardings(mc, tx, mesh, c.mesh.rules)[1])
  assert state.lora["layers"]["attn"]["q_proj"]["a"].sharding.spec == P(None, "fsdp", None)
  steps = train.compile(spec, tx, lr_fn, mesh, shardings)
  new8, out8 = steps.train(state, base, sharding.shard_batch(mesh, batch), jax.random.key(3))
  assert new8.lora["layers"]["mlp"]["down_proj"]["b"].sharding == (
      shardings.lora["layers"]["mlp"]["down_proj"]["b"])
  assert out8["loss_B"].is_fully_replicated
  out1, out8 = train.fetch(out1), train.fetch(out8)
  for k in ("loss_B", "dL_B", "g_BxK", "g_mean_K", "valid_B"):
    np.testing.assert_allclose(out8[k], out1[k], rtol=2e-4, atol=2e-6)
  close(jax.device_get(new8.lora), jax.device_get(new1.lora), rtol=1e-4, atol=1e-6)
  score = train.fetch(steps.score(train.params(base, new8.lora), sharding.shard_batch(mesh, batch)))
  assert score["loss_B"].shape == (8,)
