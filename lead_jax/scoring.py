"""Forward (and feature) passes over a set of pool samples, batched and jitted.

Samples are visited in order of length (shortest first) so that each batch
lands in the smallest length bucket that fits it (`data.gather`); results come
back aligned with the ids asked for. Every function also returns the passes it
made, as `lead_jax.accounting` counters, so callers book what they spent.

  losses          response loss (and, for IFD, the response-only view's loss)
  mean_hidden     mean final hidden state over each sample's real tokens
  projected_grads per-example projected LoRA gradients (`train.project_step`)
"""

from __future__ import annotations

import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from lead_jax import accounting, data, sharding, train
from lead_jax import model as model_lib


def _by_length(pool: data.Pool, ids_N: np.ndarray) -> np.ndarray:
  """Positions into ids_N, shortest sample first (stable)."""
  return np.argsort(pool.length_N[ids_N], kind="stable")


def _chunks(pool, ids_N, batch_size: int, desc: str):
  order = _by_length(pool, ids_N)
  for start in tqdm.trange(0, len(order), batch_size, desc=desc, leave=False,
                           disable=None):
    pos = order[start:start + batch_size]
    yield pos, ids_N[pos]


def _book(counts: dict, batch: dict, backward: bool = False) -> None:
  for name, value in accounting.passes_of_batch(batch, backward).items():
    counts[name] = counts.get(name, 0) + value


def losses(score: Callable, params, pool: data.Pool, ids_N, batch_size: int, mesh, *,
           response: bool = False, desc: str = "score"):
  """`({"loss": [n], ["response_loss": [n]]}, counts)` for the samples `ids_N`.

  `score` is a jitted `train.score_step` (`Steps.score`); with `response`, the
  response-only view of each sample is scored in the same call (IFD).
  """
  ids_N = np.asarray(ids_N, np.int64)
  out = {"loss": np.zeros(len(ids_N), np.float32)}
  if response:
    out["response_loss"] = np.zeros(len(ids_N), np.float32)
  counts: dict = {}
  for pos, ids in _chunks(pool, ids_N, batch_size, desc):
    batch = data.gather(pool, ids, batch_size)
    _book(counts, batch)
    args = [sharding.shard_batch(mesh, batch)]
    if response:
      view = data.gather(pool, ids, batch_size, view="response")
      _book(counts, view)
      args.append(sharding.shard_batch(mesh, view))
    got = train.fetch(score(params, *args))
    out["loss"][pos] = got["loss_B"][:len(ids)]
    if response:
      out["response_loss"][pos] = got["response_loss_B"][:len(ids)]
  return out, counts


@functools.partial(jax.jit, static_argnums=0)
def _mean_hidden(model_config, params, tokens_BxL, mask_BxL):
  h_BxLxD = model_lib.final_hidden(model_config, params, tokens_BxL, mask_BxL)
  w_BxL = mask_BxL.astype(jnp.float32)
  return jnp.einsum("bld,bl->bd", h_BxLxD, w_BxL) / jnp.maximum(w_BxL.sum(1), 1.0)[:, None]


def mean_hidden(model_config, params, pool: data.Pool, ids_N, batch_size: int, mesh, *,
                desc: str = "hidden features"):
  """`(features [n, D] float32, counts)`: mean final hidden state per sample."""
  ids_N = np.asarray(ids_N, np.int64)
  feats: Optional[np.ndarray] = None
  counts: dict = {}
  for pos, ids in _chunks(pool, ids_N, batch_size, desc):
    batch = data.gather(pool, ids, batch_size)
    _book(counts, batch)
    b = sharding.shard_batch(mesh, batch)
    h = np.asarray(jax.device_get(_mean_hidden(model_config, params, b["tokens_BxL"],
                                               b["attention_mask_BxL"])))
    if feats is None:
      feats = np.zeros((len(ids_N), h.shape[1]), np.float32)
    feats[pos] = h[:len(ids)]
  return feats, counts


def projected_grads(project: Callable, params, pool: data.Pool, ids_N, batch_size: int,
                    mesh, *, desc: str = "gradient features"):
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
