"""Per-device memory of a config's compiled LEAD step, ahead of time, no weights.

  python -m experiments.aot_memory --config configs/paper_llama3_8b.py \
      [--devices 8 --batch 8 --length 2048 --step train]

Starts JAX on `--devices` fake CPU devices, builds the config's mesh, the
abstract TrainState and base weights with their shardings (`jax.eval_shape`)
and an abstract batch, then lowers and compiles the jitted step and reads XLA's memory
analysis of the per-device program. Nothing is allocated, so an 8B model
compiles on a laptop. Hardware: any CPU; about 1-3 minutes for the paper config.
The last line printed is one JSON object with `per_device_bytes` (arguments +
outputs - donated aliases + temporaries) and `devices`.
"""

import json
import os
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config", lock_config=True)
_DEVICES = flags.DEFINE_integer("devices", 8, "fake CPU devices of the mesh")
_BATCH = flags.DEFINE_integer("batch", 8, "rows per step (overrides train.batch_size)")
_LENGTH = flags.DEFINE_integer("length", 2048, "tokens per row")
_STEP = flags.DEFINE_enum("step", "train", ["train", "plain"], "the LEAD step or the plain one")
flags.mark_flags_as_required(["config"])


def _fake_devices(n: int) -> None:
  """Must run before JAX is imported (it reads these at start-up)."""
  os.environ["JAX_PLATFORMS"] = "cpu"
  flags_ = [
      f for f in os.environ.get("XLA_FLAGS", "").split()
      if not f.startswith("--xla_force_host_platform_device_count")
  ]
  os.environ["XLA_FLAGS"] = " ".join(flags_ + [f"--xla_force_host_platform_device_count={n}"])


def measure(config, batch: int, length: int, step: str = "train") -> dict:
  """Compiles the step for abstract inputs; returns the memory analysis."""
  import jax  # after _fake_devices
  import jax.numpy as jnp
  from lead_jax.train import build
  from lead_jax.train import optim
  from lead_jax.train import sharding
  from lead_jax.train import step as train

  mesh = sharding.make_mesh(config.mesh)
  with config.unlocked():
    config.train.batch_size = batch
    config.train.micro_batch = min(config.train.micro_batch or batch, batch)
  model_config = build.model_config(config.model, config.lora)
  tx, lr_fn = optim.make(config.optim)
  state, shardings = build.abstract_state(model_config, tx, mesh, config.mesh.rules)
  _, base_shardings = build.shardings(model_config, tx, mesh, config.mesh.rules)
  base = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      build.abstract_base(model_config), base_shardings)
  spec = train.spec_from_config(model_config, config.train, config.optim, config.seed)
  rows = sharding.batch_sharding(mesh)
  shapes = {
      "tokens_BxL": ((batch, length), jnp.int32), "attention_mask_BxL": (
          (batch, length), jnp.bool_), "loss_mask_BxL": ((batch, length), jnp.bool_),
      "is_pad_B": ((batch,), jnp.bool_), "index_B": ((batch,), jnp.int32)
  }
  batch_abs = {k: jax.ShapeDtypeStruct(s, d, sharding=rows) for k, (s, d) in shapes.items()}
  key = jax.eval_shape(lambda: jax.random.key(0))
  fn = getattr(train.compile(spec, tx, lr_fn, mesh, shardings), step)
  compiled = fn.lower(state, base, batch_abs, key).compile()
  m = compiled.memory_analysis()
  total = (
      m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes +
      m.temp_size_in_bytes)
  return {
      "per_device_bytes": int(total), "per_device_gib": round(total / 2**30, 3),
      "argument_bytes": int(m.argument_size_in_bytes), "output_bytes": int(m.output_size_in_bytes),
      "alias_bytes": int(m.alias_size_in_bytes), "temp_bytes": int(m.temp_size_in_bytes),
      "devices": len(mesh.devices.flat), "mesh": dict(mesh.shape), "batch": batch, "length": length,
      "step": step, "lora_params": int(sum(x.size for x in jax.tree.leaves(state.lora)))
  }


def main(argv):
  del argv
  result = measure(_CONFIG.value, _BATCH.value, _LENGTH.value, _STEP.value)
  fits = result["per_device_bytes"] <= 16 * 2**30
  print(f"{result['step']} step, B={result['batch']} L={result['length']} on "
        f"{result['devices']} devices {result['mesh']}: {result['per_device_gib']} GiB per "
        f"device ({'fits' if fits else 'does NOT fit'} in 16 GiB)")
  print(json.dumps(dict(result, fits_16gib=fits)))


def _devices_arg(argv) -> int:
  for i, arg in enumerate(argv):
    if arg.startswith("--devices="):
      return int(arg.split("=", 1)[1])
    if arg == "--devices" and i + 1 < len(argv):
      return int(argv[i + 1])
  return _DEVICES.default


if __name__ == "__main__":
  _fake_devices(_devices_arg(sys.argv))
  app.run(main)
