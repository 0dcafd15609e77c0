"""LEAD's offline stage on someone else's model: IFD, IDU_0 and the clusters.

The project's offline stage (`lead_jax.offline.stage`) scores the project's
decoder. These helpers take the losses from any model, through a
`score_fn(batch)`, and then use the stage's own arithmetic
(`lead_jax.offline.clustering`: the IFD ratio, its IFD > 1 mapping, the
seeded k-means). The same losses give the same IFD, clusters and IDU_0 as the
stage.

  score(score_fn, examples_N, batch_size)  runs score_fn over fixed-size batches of
                                           a pytree of N examples (leading axis N);
                                           score_fn(batch) -> loss_B or a tuple of [B]
                                           arrays; the last batch is padded by
                                           repeating its last row, then cut
  ifd(loss_N, response_loss_N, clip)       IFD_i = l(y_i | x_i) / l(y_i)
                                           (`clustering.ifd_from_losses`)
  clusters(ifd_N, config, seed)            k-means labels 0..K'-1 on the IFD, K' <=
                                           config.select.num_clusters, with
                                           config.offline.ifd_clip and kmeans_n_init
  run(examples_N, warmup_fn, base_fn, config, seed, batch_size) -> offline.Result
      warmup_fn(batch) -> (loss_B, response_loss_B): your warmup model's response
      loss with the prompt and of the response alone (the assistant header and
      the response, in the same template); base_fn(batch) -> loss_B: the base
      model's response loss, IDU_0. Training the warmup model is yours (the
      paper: LoRA, 4 epochs on a random 1% of the pool).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from lead_jax import accounting
from lead_jax.offline import clustering, stage


def _num_rows(examples_N) -> int:
  sizes = {int(np.shape(x)[0]) for x in jax.tree.leaves(examples_N)}
  if len(sizes) != 1:
    raise ValueError(f"examples: every leaf needs the same leading axis N, got sizes "
                     f"{sorted(sizes)}; stack one row per pool sample")
  return sizes.pop()


def score(score_fn: Callable, examples_N, batch_size: int):
  """`score_fn` over all N examples: an [N] array, or a tuple of them when
  `score_fn` returns a tuple (see module doc)."""
  n = _num_rows(examples_N)
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size} must be >= 1")
  parts = []
  for s in range(0, n, batch_size):
    index = np.minimum(np.arange(s, s + batch_size), n - 1)  # fixed shape: repeat the last row
    out = score_fn(jax.tree.map(lambda x, i=index: np.asarray(x)[i], examples_N))
    out = out if isinstance(out, tuple) else (out,)
    out = tuple(np.asarray(jax.device_get(x)) for x in out)
    if any(x.shape != (batch_size,) for x in out):
      raise ValueError(f"score_fn returned shapes {[x.shape for x in out]} for a batch of "
                       f"{batch_size}; return one value per row ([B] arrays)")
    parts.append(tuple(x[:min(batch_size, n - s)] for x in out))
  cat = tuple(np.concatenate([p[j] for p in parts]) for j in range(len(parts[0])))
  return cat if len(cat) > 1 else cat[0]


def ifd(loss_N, response_loss_N, clip: bool) -> np.ndarray:
  """IFD (float32) from the two losses; `clip`: IFD > 1 -> 0 (offline.ifd_clip)."""
  if np.shape(loss_N) != np.shape(response_loss_N) or np.ndim(loss_N) != 1:
    raise ValueError(f"ifd: loss_N {np.shape(loss_N)} and response_loss_N "
                     f"{np.shape(response_loss_N)} must be 1-D arrays of the same length")
  return clustering.ifd_from_losses(loss_N, response_loss_N, clip)


def clusters(ifd_N, config, seed: int) -> np.ndarray:
  """The offline stage's clusters of the IFD values `ifd_N` (int64 labels)."""
  feats_N = clustering.clip_ifd(np.asarray(ifd_N), config.offline.ifd_clip)
  return clustering.kmeans(feats_N, config.select.num_clusters, seed, config.offline.kmeans_n_init)


def run(examples_N, warmup_fn: Callable, base_fn: Callable, config, seed: int,
        batch_size: int) -> stage.Result:
  """The offline stage's `Result` (ifd, base_loss, clusters) from your models'
  losses; `LeadSelector.from_offline` takes it."""
  loss_N, response_loss_N = score(warmup_fn, examples_N, batch_size)
  idu0_N = np.asarray(score(base_fn, examples_N, batch_size), np.float32)
  ifd_raw_N = ifd(loss_N, response_loss_N, clip=False)
  ifd_N = clustering.clip_ifd(ifd_raw_N, config.offline.ifd_clip)
  cluster_N = clusters(ifd_N, config, seed)
  return stage.Result(ifd_raw_N=ifd_raw_N, ifd_N=ifd_N, idu0_N=idu0_N, cluster_N=cluster_N,
                      num_clusters=int(cluster_N.max()) + 1, ledger=accounting.empty(),
                      computed=("ifd", "base_loss", "clusters"))
