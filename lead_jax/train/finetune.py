"""Plain LoRA fine-tuning on a whole pool: the `finetune` job.

The orchestrator of a run without data selection: pool -> shuffled,
fixed-shape batches -> the jitted plain step -> metrics and checkpoints ->
held-out loss before and after training. It sees the whole config and hands
each library function its sub-config.

Host state in every checkpoint: the epoch's order and cursor, the NumPy
Generator that draws the next order, and the metrics carried to the end, so a
resumed run continues with exactly the batches an uninterrupted run would see.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time

import jax
import numpy as np
import tqdm

from lead_jax import data, metrics
from lead_jax.train import base_cache
from lead_jax.train import build
from lead_jax.train import checkpoint
from lead_jax.train import optim
from lead_jax.train import sharding
from lead_jax.model import tokenizer
from lead_jax.train import step as train

log = logging.getLogger(__name__)

# Named purposes of the root key, one fold each (0 is the base: build.base_key).
_LORA, _STEP = 1, 2


def _next_ids(host: dict, n: int, batch_size: int):
  """The next batch's pool indices; a new epoch draws a new order."""
  if host["cursor"] >= n:
    rng = np.random.default_rng()
    rng.bit_generator.state = host["rng"]
    host = dict(host, order=rng.permutation(n), cursor=0, epoch=host["epoch"] + 1,
                rng=rng.bit_generator.state)
  ids = host["order"][host["cursor"]:host["cursor"] + batch_size]
  return ids, dict(host, cursor=host["cursor"] + len(ids))


def _initial_host(seed: int, n: int) -> dict:
  rng = np.random.default_rng(seed)
  order = rng.permutation(n)
  return {
      "order": order, "cursor": 0, "epoch": 0, "step": 0, "rng": rng.bit_generator.state,
      "skipped": 0, "test_loss_initial": None
  }


def pool_loss(score, params, pool, batch_size: int, mesh, desc: str) -> float:
  """Mean response loss over every sample of `pool` (forward passes only)."""
  total, count = 0.0, 0
  for start in tqdm.trange(0, len(pool), batch_size, desc=desc, leave=False, disable=None):
    ids = np.arange(start, min(start + batch_size, len(pool)))
    out = train.fetch(score(params, sharding.shard_batch(mesh, data.gather(pool, ids, batch_size))))
    real = np.arange(batch_size) < len(ids)
    total += float(np.sum(out["loss_B"][real]))
    count += int(real.sum())
  return total / max(count, 1)


def _window_mean(window: list[dict]) -> dict:
  out = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
  out["skipped"] = int(sum(m["skipped"] for m in window))
  return out


def _setup(config, workdir: str):
  sharding.initialize(config.mesh)
  mesh = sharding.make_mesh(config.mesh)
  metrics.write_config(workdir, config)
  tok = tokenizer.load(config.data.tokenizer)
  pool = data.load_pool(config.data, tok, workdir)
  test_path = data.resolve_paths(config.data, workdir)["test"]
  test = data.load_pool(config.data, tok, workdir, path=test_path) if test_path else None
  root = jax.random.key(config.seed)
  model_config, base = build.load_base(
      base_cache.resolve_model(config), config.lora, build.base_key(config.seed))
  tx, lr_fn = optim.make(config.optim)
  base = sharding.place(base, build.shardings(model_config, tx, mesh, config.mesh.rules)[1])
  state, shardings = build.init_state(model_config, base, tx, jax.random.fold_in(root, _LORA), mesh,
                                      config.mesh.rules)
  spec = train.spec_from_config(model_config, config.train, config.optim, config.seed)
  steps = train.compile(spec, tx, lr_fn, mesh, shardings)
  return mesh, pool, test, base, state, shardings, steps, jax.random.fold_in(root, _STEP)


def run(config, workdir: str) -> dict:
  """Trains, checkpoints, resumes; writes `final_metrics.json`; returns it."""
  start_time = time.time()
  mesh, pool, test, base, state, shardings, steps, step_key = _setup(config, workdir)
  b = config.train.batch_size
  total = config.train.epochs * math.ceil(len(pool) / b)
  total = min(total, config.train.max_steps) if config.train.max_steps else total
  manager = checkpoint.Manager(checkpoint.directory(config.checkpoint, workdir), config.checkpoint)
  host = _initial_host(config.seed, len(pool))
  if config.checkpoint.resume and manager.latest_step() is not None:
    state, host = manager.restore(checkpoint.abstract(state, shardings))
    log.info("resumed from step %d", host["step"])
  writer = metrics.Writer(workdir)
  writer.truncate_after(host["step"], drop_splits=("final",))
  if host["test_loss_initial"] is None and test is not None:
    host["test_loss_initial"] = pool_loss(steps.score, train.params(base, state.lora), test, b,
                                          mesh, "test loss")
  window = []
  for step in tqdm.trange(host["step"], total, initial=host["step"], total=total, desc="train",
                          disable=None):
    ids, host = _next_ids(host, len(pool), b)
    batch = sharding.shard_batch(mesh, data.gather(pool, ids, b))
    state, out = steps.plain(state, base, batch, jax.random.fold_in(step_key, step))
    window.append(train.fetch(out["metrics"]))
    host = dict(host, step=step + 1, skipped=host["skipped"] + int(window[-1]["skipped"]))
    if (step + 1) % config.train.log_every == 0 or step + 1 == total:
      writer.write(step + 1, _window_mean(window))
      window = []
    manager.save(step + 1, state, host, force=step + 1 == total)
  manager.close()
  final = {
      "train_steps": total, "epochs_started": host["epoch"] + 1, "skipped_steps": host["skipped"],
      "test_loss_initial": host["test_loss_initial"], "test_loss":
          (pool_loss(steps.score, train.params(base, state.lora), test, b, mesh, "test loss")
           if test is not None else None), "wall_seconds": time.time() - start_time
  }
  writer.write(total, {k: v for k, v in final.items() if v is not None}, split="final")
  writer.close()
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "final_metrics.json"), "w") as f:
      json.dump(final, f, indent=2)
  return final
