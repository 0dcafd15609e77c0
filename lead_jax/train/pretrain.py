"""Pretraining a small byte-level base: full-parameter causal-LM training.

The stage before LEAD when no pretrained checkpoint is at hand: plain-text
documents -> byte-level tokens (each document followed by EOS) -> one stream
per epoch, in a seeded permutation of the documents -> fixed `BxL` windows ->
the jitted, donated step (next-token loss over every position) -> metrics,
orbax checkpoints, per-task held-out loss before and after, a loss-curve plot
and a local Hugging Face export (weights + tokenizer) in the workdir.

The functions take the documents and held-out pairs as arguments; where they
come from and where the result is cached is `lead_jax.train.base_cache`'s business.

Host state in every checkpoint: the epoch's document order and window cursor,
the NumPy Generator that draws the next order, and the tokens and seconds so
far, so a resumed build sees exactly the windows an uninterrupted one would.
Array suffixes as in `lead_jax`, plus W: windows of one epoch, D: documents.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import time
import types
from typing import Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lead_jax import artifacts, metrics, preempt, report
from lead_jax.train import build
from lead_jax.train import checkpoint
from lead_jax.train import passes
from lead_jax.model import hf
from lead_jax.model import tokenizer
from lead_jax.model import decoder as model_lib

CHECKPOINTS = "checkpoints"  # subdirectory of the workdir while building
HELDOUT = "heldout.json"  # {"initial": {task: nats/byte}, "final": {...}}
LOSS_CURVE = "loss_curve.png"
_STREAM = ("order", "cursor", "epoch", "rng")  # the host state that the window stream advances
_INIT = 0  # fold of the root key that initialises the parameters

# build.model_config wants a lora sub-config; the pretrained base has no adapters (lora=None).
_NO_LORA = types.SimpleNamespace(rank=1, alpha=1.0, dropout=0.0, targets=())


def model_config(model_cfg) -> model_lib.ModelConfig:
  """The decoder of the `model` sub-config, without adapters (every weight trains)."""
  if model_cfg.checkpoint:
    raise ValueError(f"pretrain.model.checkpoint={model_cfg.checkpoint!r}: pretraining "
                     "starts from a random init; leave it empty")
  eos = tokenizer.byte_level().eos_token_id
  return dataclasses.replace(
      build.model_config(model_cfg, _NO_LORA), lora=None, eos_token_ids=(eos,))


def tokenize(documents: Sequence[str], tok) -> list[np.ndarray]:
  """Each document's token ids followed by EOS (int32)."""
  ids = tok(list(documents), add_special_tokens=False)["input_ids"]
  return [np.asarray(x + [tok.eos_token_id], np.int32) for x in ids]


def epoch_windows(doc_tokens: Sequence[np.ndarray], order_D: np.ndarray, batch_size: int,
                  seq_len: int) -> np.ndarray:
  """`tokens_WxBxL`: the documents in `order_D`, concatenated and cut into
  batches of windows; the stream's tail shorter than one batch is dropped."""
  stream = np.concatenate([doc_tokens[i] for i in order_D])
  per_batch = batch_size * seq_len
  num = len(stream) // per_batch
  if num == 0:
    raise ValueError(f"the corpus has {len(stream)} tokens, fewer than one batch of "
                     f"{batch_size} x {seq_len}; add documents or shrink the batch")
  return stream[:num * per_batch].reshape(num, batch_size, seq_len)


def lm_loss(config: model_lib.ModelConfig, params, tokens_BxL):
  """Mean next-token cross-entropy over every position of every window."""
  logits_BxLxV = model_lib.forward(config, {"params": params}, tokens_BxL[:, :-1])
  logp_BxLxV = jax.nn.log_softmax(logits_BxLxV, axis=-1)
  nll_BxL = -jnp.take_along_axis(logp_BxLxV, tokens_BxL[:, 1:, None], axis=-1)[..., 0]
  return jnp.mean(nll_BxL)


def train_step(config: model_lib.ModelConfig, tx, params, opt_state, tokens_BxL):
  """One AdamW step on all parameters: `(params, opt_state, metrics)`."""
  loss, grads = jax.value_and_grad(lm_loss, argnums=1)(config, params, tokens_BxL)
  updates, opt_state = tx.update(grads, opt_state, params)
  params = optax.apply_updates(params, updates)
  return params, opt_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}


def make_optimizer(optim_cfg, steps: int):
  """`(tx, lr_fn)`: clipping + AdamW, linear warmup then cosine decay to the end."""
  c = optim_cfg
  if not 0 <= c.warmup_steps < steps:
    raise ValueError(f"optim.warmup_steps={c.warmup_steps} must be in [0, steps={steps})")
  lr_fn = optax.warmup_cosine_decay_schedule(0.0, c.lr, c.warmup_steps, steps,
                                             end_value=c.lr * c.final_lr_fraction)
  chain = [optax.clip_by_global_norm(c.clip_norm)] if c.clip_norm > 0 else []
  chain.append(optax.adamw(lr_fn, b1=c.b1, b2=c.b2, eps=c.eps, weight_decay=c.weight_decay))
  return optax.chain(*chain), lr_fn


def heldout_rows(pairs: Sequence[tuple[str, str]], tok, seq_len: int):
  """`(tokens_NxL, is_real_NxL, is_target_NxL)`: context + continuation, right
  padded; contexts longer than the window lose their start (the continuation
  is kept whole unless it alone is longer than `seq_len`)."""
  n = len(pairs)
  tokens_NxL = np.full((n, seq_len), tok.pad_token_id, np.int32)
  is_real_NxL, is_target_NxL = np.zeros((n, seq_len), bool), np.zeros((n, seq_len), bool)
  for i, (context, continuation) in enumerate(pairs):
    ctx = tok(context, add_special_tokens=False)["input_ids"]
    cont = tok(continuation, add_special_tokens=False)["input_ids"]
    row = (ctx + cont)[-seq_len:]
    tokens_NxL[i, :len(row)] = row
    is_real_NxL[i, :len(row)] = True
    is_target_NxL[i, max(len(row) - len(cont), 1):len(row)] = True  # position 0 has no context
  return tokens_NxL, is_real_NxL, is_target_NxL


def continuation_nll(config, params, tokens_BxL, is_real_BxL, is_target_BxL):
  """`(nll_sum_B, count_B)` over the target positions of each row."""
  logits_BxLxV = model_lib.forward(config, {"params": params}, tokens_BxL, is_real_BxL)
  logp_BxLxV = jax.nn.log_softmax(logits_BxLxV[:, :-1], axis=-1)
  nll_BxL = -jnp.take_along_axis(logp_BxLxV, tokens_BxL[:, 1:, None], axis=-1)[..., 0]
  target_BxL = is_target_BxL[:, 1:]
  return jnp.sum(nll_BxL * target_BxL, axis=1), jnp.sum(target_BxL, axis=1)


def heldout_loss(score, params, heldout: Mapping[str, Sequence[tuple[str, str]]], tok,
                 batch_size: int, seq_len: int) -> dict[str, float]:
  """Per task: the mean over pairs of nats per continuation byte (byte-level
  tokens are bytes). `score` is the jitted `continuation_nll`."""
  out = {}
  for task in sorted(heldout):
    rows = heldout_rows(heldout[task], tok, seq_len)
    per_pair = []
    for start in range(0, len(heldout[task]), batch_size):
      batch = [np.zeros((batch_size, seq_len), r.dtype) for r in rows]
      for full, part in zip(batch, rows):
        chunk = part[start:start + batch_size]
        full[:len(chunk)] = chunk
      nll_B, count_B = jax.device_get(score(params, *batch))
      real = min(batch_size, len(heldout[task]) - start)
      per_pair.extend(nll_B[:real] / np.maximum(count_B[:real], 1))
    out[task] = float(np.mean(per_pair))
  return out


def _as_batch(tokens_BxL: np.ndarray) -> dict:
  """A window batch as the pass driver books it: every row real; the model
  reads all positions but the last (the last is only a target)."""
  mask_BxL = np.ones(tokens_BxL.shape, np.int32)
  mask_BxL[:, -1] = 0
  return {
      "tokens_BxL": tokens_BxL, "is_pad_B": np.zeros(len(tokens_BxL), bool),
      "attention_mask_BxL": mask_BxL
  }


def _new_epoch(host: dict, num_docs: int) -> dict:
  """The host state at the start of the next epoch: a fresh document order."""
  rng = np.random.default_rng()
  rng.bit_generator.state = host["rng"]
  order = rng.permutation(num_docs)
  return dict(host, order=order, cursor=0, epoch=host["epoch"] + 1, rng=rng.bit_generator.state)


def _initial_host(seed: int, num_docs: int) -> dict:
  rng = np.random.default_rng(seed)
  order = rng.permutation(num_docs)
  return {
      "order": order, "cursor": 0, "epoch": 0, "step": 0, "seconds": 0.0,
      "rng": rng.bit_generator.state, "heldout_initial": None, "passes": {}
  }


def _manager(workdir: str, cfg) -> checkpoint.Manager:
  ckpt = types.SimpleNamespace(every_steps=cfg.checkpoint_every, keep=cfg.keep, async_save=False)
  return checkpoint.Manager(os.path.join(workdir, CHECKPOINTS), ckpt)


@functools.lru_cache(maxsize=8)
def _jitted(config: model_lib.ModelConfig, optim_items: tuple, steps: int):
  """`(tx, lr_fn, step, score)` jitted once per architecture and optimiser, so
  repeated builds in one process (a resumed partial build, the tests) compile once."""
  tx, lr_fn = make_optimizer(types.SimpleNamespace(**dict(optim_items)), steps)
  step = jax.jit(functools.partial(train_step, config, tx), donate_argnums=(0, 1))
  score = jax.jit(functools.partial(continuation_nll, config))
  return tx, lr_fn, step, score


def _setup(cfg, documents, workdir):
  config = model_config(cfg.model)
  tok = tokenizer.byte_level()
  params = model_lib.init(config, jax.random.fold_in(jax.random.key(cfg.seed), _INIT))["params"]
  tx, lr_fn, step, score = _jitted(config, tuple(sorted(cfg.optim.items())), cfg.steps)
  opt_state = tx.init(params)
  host = _initial_host(cfg.seed, len(documents))
  manager = _manager(workdir, cfg)
  if manager.latest_step() is not None:
    state, host = manager.restore(checkpoint.abstract({"params": params, "opt_state": opt_state}))
    params, opt_state = state["params"], state["opt_state"]
  return config, tok, params, opt_state, step, score, lr_fn, host, manager


def train(cfg, documents: Sequence[str], heldout: Mapping[str, Sequence[tuple[str, str]]],
          workdir: str, max_steps: Optional[int] = None) -> Optional[dict]:
  """Builds the base in `workdir`, resuming from its newest checkpoint.

  Stops early (returns None, state checkpointed) after `max_steps` steps in all;
  otherwise evaluates, plots, exports and returns the summary
  `{tokens, seconds, final_loss, heldout_initial, heldout_final}`.
  """
  start = time.time()
  config, tok, params, opt_state, step_fn, score, lr_fn, host, manager = _setup(
      cfg, documents, workdir)
  doc_tokens = tokenize(documents, tok)
  writer = metrics.Writer(workdir, tensorboard=False)
  writer.truncate_after(host["step"])
  if host["heldout_initial"] is None:
    host["heldout_initial"] = heldout_loss(score, params, heldout, tok, cfg.batch_size, cfg.seq_len)
  stop_at = cfg.steps if max_steps is None else min(max_steps, cfg.steps)
  per_step = cfg.batch_size * cfg.seq_len
  drawn = [host, epoch_windows(doc_tokens, host["order"], cfg.batch_size, cfg.seq_len)]

  def batches():  # the next window of the stream, a new epoch's order at its end
    for _ in range(host["step"], stop_at):
      if drawn[0]["cursor"] == len(drawn[1]):
        drawn[0] = _new_epoch(drawn[0], len(doc_tokens))
        drawn[1] = epoch_windows(doc_tokens, drawn[0]["order"], cfg.batch_size, cfg.seq_len)
      tokens_BxL = drawn[1][drawn[0]["cursor"]]
      drawn[0] = dict(drawn[0], cursor=drawn[0]["cursor"] + 1)
      yield _as_batch(tokens_BxL)

  def step(state, _base, batch, _key):
    params, opt_state, out = step_fn(*state, batch["tokens_BxL"])
    return (params, opt_state), out

  window, window_start = [], time.time()
  with preempt.watch() as stop:
    for done in passes.train(step, (params, opt_state), None, batches(), mesh=None, step_key=None,
                             start=host["step"], total=cfg.steps, desc="pretrain", fetch=False,
                             leave=True):
      (params, opt_state), k = done.state, done.index + 1
      window.append(done.out)
      host = dict(host, **{key: drawn[0][key] for key in _STREAM}, step=k,
                  passes=passes.add(host["passes"], done.counts))
      if k % cfg.log_every == 0 or k == cfg.steps:
        fetched = jax.device_get(window)
        rate = len(window) * per_step / (time.time() - window_start)
        record = {
            "loss": float(np.mean([m["loss"] for m in fetched])),
            "grad_norm": float(np.mean([m["grad_norm"] for m in fetched])),
            "lr": float(lr_fn(k - 1)), "tokens": k * per_step, "tokens_per_s": rate
        }
        writer.write(k, record)
        done.bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{rate:,.0f}")
        window, window_start = [], time.time()
      signum = preempt.agree(stop)
      if manager.should_save(k) or k == stop_at or signum:
        host["seconds"] += time.time() - start
        start = time.time()
        manager.save(k, {"params": params, "opt_state": opt_state}, host, force=True)
      if signum and k < stop_at:
        manager.close()
        writer.close()
        raise preempt.Preempted(
            signum,
            preempt.message(stop, f"pretraining step {k}", os.path.join(workdir, CHECKPOINTS)))
  manager.close()
  writer.close()
  if host["step"] < cfg.steps:
    return None
  return _finish(cfg, config, tok, params, score, heldout, host, workdir)


def _finish(cfg, config, tok, params, score, heldout, host, workdir) -> dict:
  start = time.time()
  final = heldout_loss(score, params, heldout, tok, cfg.batch_size, cfg.seq_len)
  artifacts.write_json(
      os.path.join(workdir, HELDOUT), {"initial": host["heldout_initial"], "final": final})
  records = [r for r in metrics.read(workdir) if r["split"] == "train"]
  plot_loss_curve(records, os.path.join(workdir, LOSS_CURVE))
  hf.save_checkpoint(workdir, config, {"params": params})
  tok.save_pretrained(workdir)
  shutil.rmtree(os.path.join(workdir, CHECKPOINTS))
  return {
      "tokens": host["step"] * cfg.batch_size * cfg.seq_len,
      "seconds": host["seconds"] + time.time() - start, "final_loss": records[-1]["loss"],
      "heldout_initial": host["heldout_initial"], "heldout_final": final, "passes": host["passes"]
  }


def plot_loss_curve(records: Sequence[dict], path: str) -> str:
  """Training loss against tokens seen (matplotlib only here)."""
  plt = report.pyplot()
  fig, ax = plt.subplots(figsize=(5, 3.5))
  ax.plot([r["tokens"] for r in records], [r["loss"] for r in records])
  ax.set(xlabel="tokens", ylabel="train loss (nats/token)", title="pretraining")
  return report.save_figure(plt, fig, os.path.dirname(path), os.path.basename(path))
