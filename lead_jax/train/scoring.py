"""Forward (and feature) passes over a set of pool samples, packed and jitted.

Forward-only passes pack several samples into each row (`data.packing`:
first-fit decreasing into rows of the smallest bucket that fits the view's
longest sample, B rows and at most G samples per row, so one compiled shape
per length); the model attends within segments only (`model.forward` with
segment ids, RoPE positions restarting per segment), and per-sample results
are segment sums over the rows, returned aligned with the ids asked for.
Results equal those of one unpadded forward pass per sample (up to float
summation order). Every function also returns the passes it made, as
`lead_jax.accounting` counters (the samples and their real tokens; padding is
not counted), so callers book what they spent; the padding fraction of the
packed rows is logged.

  losses          response loss (and, for IFD, the response-only view's loss)
  mean_hidden     mean final hidden state over each sample's real tokens
  projected_grads per-example projected LoRA gradients (`train.project_step`),
                  unpacked rows in order of length (per-example gradients)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from jax.sharding import NamedSharding, PartitionSpec

from lead_jax import accounting, data
from lead_jax.train import grads
from lead_jax.train import sharding
from lead_jax.train import step as train
from lead_jax.model import decoder as model_lib
from lead_jax.data import packing

log = logging.getLogger(__name__)
MAX_SEGMENTS = 32  # G: samples per packed row (bounds the per-row outputs, [B, G, D] features)
_DEVICE_KEYS = ("tokens_BxL", "segment_BxL", "positions_BxL", "loss_mask_BxL")


@dataclasses.dataclass(frozen=True)
class Scorer:
  """What a packed loss pass is compiled for (hashable: a static jit argument)."""
  model: model_lib.ModelConfig
  micro_batch: int  # rows per forward chunk (bounds the logits' memory); divides the batch


def scorer(score) -> Scorer:
  """`score` if it is a `Scorer`; for a run's jitted score step (`Steps.score`,
  `train.compile`), the model config and micro-batch it was compiled with."""
  if isinstance(score, Scorer):
    return score
  fn = getattr(getattr(score, "_jitted", score), "__wrapped__", None)
  if (isinstance(fn, functools.partial) and fn.func is train.score_step and len(fn.args) == 2):
    return Scorer(*fn.args)
  raise TypeError(f"scoring: {score!r} is neither a scoring.Scorer nor a Steps.score "
                  "compiled by train.compile; pass scoring.Scorer(model_config, micro_batch)")


def _chunks(pool, ids_N, batch_size: int, desc: str):
  order = np.argsort(pool.length_N[ids_N], kind="stable")  # shortest first: small buckets
  for start in tqdm.trange(0, len(order), batch_size, desc=desc, leave=False, disable=None):
    pos = order[start:start + batch_size]
    yield pos, ids_N[pos]


def _book(counts: dict, batch: dict, backward: bool = False) -> None:
  for name, value in accounting.passes_of_batch(batch, backward).items():
    counts[name] = counts.get(name, 0) + value


def _book_packed(counts: dict, batch: dict, slots: dict) -> None:
  """Forward passes of a packed batch: its samples and their real tokens."""
  real = int(np.count_nonzero(batch["segment_BxL"]))
  got = {
      "forward_samples": int(np.count_nonzero(batch["sample_BxG"] >= 0)), "forward_tokens": real,
      "backward_samples": 0, "backward_tokens": 0
  }
  for name, value in got.items():
    counts[name] = counts.get(name, 0) + value
  slots["real"] = slots.get("real", 0) + real
  slots["all"] = slots.get("all", 0) + batch["segment_BxL"].size


def _packed(pool: data.Pool, ids_N, batch_size: int, view: str, desc: str):
  """The packed batches of `ids_N` in `view`, behind a progress bar."""
  plan = packing.pack(pool, ids_N, view, max_segments=MAX_SEGMENTS)
  it = packing.batches(pool, ids_N, plan, batch_size, view)
  return tqdm.tqdm(it, total=plan.num_batches(batch_size), desc=desc, leave=False, disable=None)


def _log_padding(desc: str, n: int, slots: dict) -> None:
  if slots.get("all"):
    log.info("%s: %d samples packed, %.1f%% of the row tokens are padding", desc, n,
             100.0 * (1.0 - slots["real"] / slots["all"]))


@contextlib.contextmanager
def _in_mesh(mesh):
  """The context a step runs in (as `train.compile`'s): the mesh and the
  per-row activation rules, so the model's logical constraints take effect."""
  if mesh is None:
    yield
    return
  with jax.set_mesh(mesh), nn.logical_axis_rules(train.ACTIVATION_RULES):
    yield


def _segment_sums(x_LxF, segment_L, num_segments: int):
  """`[G, F]` sums of the rows of x over each segment 1..G (0, padding, dropped)."""
  onehot_LxG = segment_L[:, None] == jnp.arange(1, num_segments + 1)[None, :]
  return jnp.einsum("lf,lg->gf", x_LxF, onehot_LxG.astype(x_LxF.dtype))


def _row_losses(model_config, params, row, num_segments: int, mesh):
  """`(target nll sum_G, targets n_G)` of one packed row: the target at t is
  token t, predicted at t - 1, when it is a response token of the same segment."""
  seg_L = row["segment_BxL"]
  logits = model_lib.forward(model_config, params, row["tokens_BxL"][None], segment_BxL=seg_L[None],
                             positions_BxL=row["positions_BxL"][None])[0]
  if mesh is not None:  # the row's logits stay on its devices (as losses.example_loss)
    logits = jax.lax.with_sharding_constraint(logits, NamedSharding(mesh, PartitionSpec()))
  logits = logits[:-1].astype(jnp.float32)
  targets = row["tokens_BxL"][1:]
  target = row["loss_mask_BxL"][1:] & (seg_L[1:] == seg_L[:-1]) & (seg_L[1:] > 0)
  lse = jax.nn.logsumexp(logits, axis=-1)
  picked = jnp.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]
  w = target.astype(jnp.float32)
  sums = _segment_sums(jnp.stack([(lse - picked) * w, w], axis=1), seg_L[1:], num_segments)
  return sums[:, 0], sums[:, 1]


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _packed_losses(scorer_: Scorer, num_segments: int, mesh, batch_axes, params, rows):
  """`{"loss_BxG", "tokens_BxG"}`: token-mean response loss and target count of
  every segment of the packed rows (0 where a segment is empty or has none)."""
  base, lora = params["params"], params.get("lora")
  params = {"params": base} if lora is None else {"params": base, "lora": lora}
  per_row = jax.vmap(lambda r: _row_losses(scorer_.model, params, r, num_segments, mesh),
                     spmd_axis_name=batch_axes)
  n = grads.num_micro(rows["tokens_BxL"].shape[0], scorer_.micro_batch)
  sum_BxG, n_BxG = per_row(rows) if n == 1 else grads.merge(
      jax.lax.map(per_row, grads.split(rows, n)))
  out = {"loss_BxG": sum_BxG / jnp.maximum(n_BxG, 1.0), "tokens_BxG": n_BxG.astype(jnp.int32)}
  if mesh is not None:  # per-sample outputs come back replicated, as the steps'
    out = jax.lax.with_sharding_constraint(out, sharding.replicated(mesh))
  return out


def losses(score, params, pool: data.Pool, ids_N, batch_size: int, mesh, *, response: bool = False,
           desc: str = "score"):
  """`({"loss": [n], ["response_loss": [n]]}, counts)` for the samples `ids_N`.

  `score` is a `Scorer` or the run's jitted `train.score_step` (`Steps.score`,
  whose model and micro-batch are used); `batch_size` packed rows per call.
  With `response`, the response-only view of each sample is scored too (IFD).
  """
  sc, ids_N = scorer(score), np.asarray(ids_N, np.int64)
  batch_axes = None if mesh is None else sharding.BATCH_AXES
  out, counts, slots = {}, {}, {}
  for view, key in [("full", "loss")] + ([("response", "response_loss")] if response else []):
    out[key] = np.zeros(len(ids_N), np.float32)
    for batch in _packed(pool, ids_N, batch_size, view, f"{desc} ({view})"):
      _book_packed(counts, batch, slots)
      rows = sharding.shard_batch(mesh, {k: batch[k] for k in _DEVICE_KEYS})
      with _in_mesh(mesh):
        got = train.fetch(
            _packed_losses(sc, batch["sample_BxG"].shape[1], mesh, batch_axes, params, rows))
      take = batch["sample_BxG"] >= 0
      out[key][batch["sample_BxG"][take]] = got["loss_BxG"][take]
  _log_padding(desc, len(ids_N), slots)
  return out, counts


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _packed_mean_hidden(model_config, num_segments: int, mesh, params, rows):
  """`[B, G, D]`: the mean final hidden state over every segment's tokens."""
  seg_BxL = rows["segment_BxL"]
  h_BxLxD = model_lib.final_hidden(model_config, params, rows["tokens_BxL"], segment_BxL=seg_BxL,
                                   positions_BxL=rows["positions_BxL"])
  ones_BxLx1 = jnp.ones(seg_BxL.shape + (1,), jnp.float32)
  sums = jax.vmap(lambda x, s: _segment_sums(x, s, num_segments))(jnp.concatenate(
      [h_BxLxD, ones_BxLx1], axis=-1), seg_BxL)
  mean_BxGxD = sums[..., :-1] / jnp.maximum(sums[..., -1:], 1.0)
  if mesh is not None:
    mean_BxGxD = jax.lax.with_sharding_constraint(mean_BxGxD, sharding.replicated(mesh))
  return mean_BxGxD


def mean_hidden(model_config, params, pool: data.Pool, ids_N, batch_size: int, mesh, *,
                desc: str = "hidden features"):
  """`(features [n, D] float32, counts)`: mean final hidden state per sample."""
  ids_N = np.asarray(ids_N, np.int64)
  feats = np.zeros((len(ids_N), model_config.hidden_size), np.float32)
  counts, slots = {}, {}
  for batch in _packed(pool, ids_N, batch_size, "full", desc):
    _book_packed(counts, batch, slots)
    rows = sharding.shard_batch(mesh, {k: batch[k] for k in _DEVICE_KEYS})
    h = np.asarray(
        jax.device_get(
            _packed_mean_hidden(model_config, batch["sample_BxG"].shape[1], mesh, params, rows)))
    take = batch["sample_BxG"] >= 0
    feats[batch["sample_BxG"][take]] = h[take]
  _log_padding(desc, len(ids_N), slots)
  return feats, counts


def projected_grads(project: Callable, params, pool: data.Pool, ids_N, batch_size: int, mesh, *,
                    desc: str = "gradient features"):
  """`(g [n, K] float32, counts)`: projected per-example gradients at `params`
  (`Steps.project`): a forward and a backward per sample."""
  ids_N = np.asarray(ids_N, np.int64)
  feats: Optional[np.ndarray] = None
  counts: dict = {}
  for pos, ids in _chunks(pool, ids_N, batch_size, desc):
    batch = data.gather(pool, ids, batch_size)
    _book(counts, batch, backward=True)
    got = train.fetch(project(params, sharding.shard_batch(mesh, batch)))
    if feats is None:
      feats = np.zeros((len(ids_N), got["g_BxK"].shape[1]), np.float32)
    feats[pos] = got["g_BxK"][:len(ids)]
  return feats, counts
