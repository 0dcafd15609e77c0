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

import logging
import math
import os
import time

import jax
import numpy as np

from lead_jax import accounting, artifacts, data, lock, metrics, preempt
from lead_jax.train import base_cache
from lead_jax.train import build
from lead_jax.train import checkpoint
from lead_jax.train import optim
from lead_jax.train import passes
from lead_jax.train import scoring
from lead_jax.train import sharding
from lead_jax.model import tokenizer
from lead_jax.train import step as train

log = logging.getLogger(__name__)

# Named purposes of the root key, one fold each (0 is the base: build.base_key).
_LORA, _STEP = 1, 2
_ORDER = ("order", "cursor", "epoch", "rng")  # the host state that drawing batches advances


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


def pool_loss(score, params, pool, batch_size: int, mesh, desc: str) -> tuple[float, dict]:
  """`(mean response loss over every sample of pool, its forward passes)`."""
  out, counts = scoring.losses(score, params, pool, np.arange(len(pool)), batch_size, mesh,
                               desc=desc)
  return float(np.mean(out["loss"])), counts


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
  """Trains, checkpoints, resumes; writes `final_metrics.json` and
  `accounting.json` (the passes of training and of the test loss); returns the
  final metrics. The workdir is locked for the run (`lead_jax.lock`)."""
  sharding.initialize(config.mesh)  # before the lock asks for the process index
  with lock.held(workdir):
    return _run(config, workdir)


def _run(config, workdir: str) -> dict:
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
  ledger = accounting.from_dict(host["ledger"]) if host.get("ledger") else accounting.empty()
  writer = metrics.Writer(workdir)
  writer.truncate_after(host["step"], drop_splits=("final",))
  if host["test_loss_initial"] is None and test is not None:
    host["test_loss_initial"], counts = pool_loss(steps.score, train.params(base, state.lora), test,
                                                  b, mesh, "test loss")
    ledger = accounting.add(ledger, "evaluation", "test_loss", counts)
  drawn = [host]  # the host state after the last batch drawn

  def batches():
    for _ in range(host["step"], total):
      ids, drawn[0] = _next_ids(drawn[0], len(pool), b)
      yield data.gather(pool, ids, b)

  window = []
  with preempt.watch() as stop:
    for done in passes.train(steps.plain, state, base, batches(), mesh=mesh, step_key=step_key,
                             start=host["step"], total=total, desc="train", leave=True):
      state, step = done.state, done.index + 1
      window.append(done.out["metrics"])
      ledger = passes.book(ledger, "training", done.counts)
      host = dict(host, **{key: drawn[0][key] for key in _ORDER}, step=step,
                  skipped=host["skipped"] + int(window[-1]["skipped"]),
                  ledger=accounting.to_dict(ledger))
      if step % config.train.log_every == 0 or step == total:
        writer.write(step, _window_mean(window))
        window = []
      signum = preempt.agree(stop)  # fixed for this step, the same on every process
      manager.save(step, state, host, force=step == total or signum is not None)
      if signum and step < total:
        manager.close()
        writer.close()
        raise preempt.Preempted(
            signum,
            preempt.message(stop, f"step {step}", checkpoint.directory(config.checkpoint, workdir)))
  manager.close()
  test_loss = None
  if test is not None:
    test_loss, counts = pool_loss(steps.score, train.params(base, state.lora), test, b, mesh,
                                  "test loss")
    ledger = accounting.add(ledger, "evaluation", "test_loss", counts)
  final = {
      "train_steps": total, "epochs_started": host["epoch"] + 1, "skipped_steps": host["skipped"],
      "test_loss_initial": host["test_loss_initial"], "test_loss": test_loss,
      "wall_seconds": time.time() - start_time
  }
  writer.write(total, {k: v for k, v in final.items() if v is not None}, split="final")
  writer.close()
  if artifacts.is_writer():
    artifacts.write_json(os.path.join(workdir, "final_metrics.json"), final)
    artifacts.write_json(os.path.join(workdir, "accounting.json"), accounting.to_dict(ledger))
  return final
