r"""Pretrains the tiny byte-level base (or reuses the cached one) and reports it.

  python -m experiments.pretrain_base --config configs/pretrain.py
  python -m experiments.pretrain_base --config configs/pretrain.py --out /tmp/base

Without --out the base goes to the cache (`$LEAD_JAX_CACHE/bases/<fingerprint>/`,
lead_jax.train.base_cache): a valid cached base is reused, an interrupted build
resumes. With --out it is built (resuming there) and exported into that
directory instead, unless a valid base of this config is already there. Prints the base directory, the build seconds and the
per-task held-out loss (nats per continuation byte) before and after.
"""

from __future__ import annotations

import json
import os
import time

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import cli
from lead_jax.train import base_cache

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(__file__), "..", "configs", "pretrain.py"),
    "pretrain config (configs/pretrain.py)", lock_config=True)
_OUT = flags.DEFINE_string("out", None, "export here instead of the cache")


def _table(manifest: dict) -> str:
  lines = ["| task | initial | final |", "| --- | ---: | ---: |"]
  for task in sorted(manifest["heldout_final"]):
    lines.append(f"| {task} | {manifest['heldout_initial'][task]:.3f} | "
                 f"{manifest['heldout_final'][task]:.3f} |")
  return "\n".join(lines)


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO
    logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  start = time.time()

  def build() -> str:
    if not _OUT.value:
      return base_cache.ensure(config)
    directory = os.path.abspath(_OUT.value)
    if base_cache.problem(directory, base_cache.fingerprint(config)) is not None:
      base_cache.build(config, directory)
    return directory

  directory = cli.guarded(build)
  with open(os.path.join(directory, base_cache.MANIFEST)) as f:
    manifest = json.load(f)
  print(f"base: {directory}")
  print(f"build seconds: {manifest['seconds']:.1f} (this command: {time.time() - start:.1f})")
  print(f"tokens: {manifest['tokens']:,}  final train loss: {manifest['final_loss']:.3f}")
  print("held-out loss, nats per continuation byte:")
  print(_table(manifest))


if __name__ == "__main__":
  app.run(main)
