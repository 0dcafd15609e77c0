"""IFD from the two response losses, and the seeded k-means that makes the arms.

  ifd_from_losses  IFD_i = l(y_i | x_i) / l(y_i), the response loss with the
                   prompt over the loss of the response-only view (same
                   template); 0 where the ratio is undefined (no target token
                   or a zero denominator); with `clip_above_one`, IFD > 1 (the
                   prompt does not help) becomes 0, as in the reference code
  kmeans           scikit-learn k-means with a fixed seed; labels renumbered so
                   that they are a deterministic function of the partition:
                   on 1-D features in order of the cluster centre (cluster 0 =
                   lowest IFD), otherwise by decreasing size, ties by the
                   smallest member id. Fewer distinct points than K give fewer
                   clusters (every returned cluster is non-empty).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

log = logging.getLogger(__name__)


def ifd_from_losses(loss_N: np.ndarray, response_loss_N: np.ndarray,
                    clip_above_one: bool) -> np.ndarray:
  loss_N = np.asarray(loss_N, np.float64)
  response_loss_N = np.asarray(response_loss_N, np.float64)
  ok = (response_loss_N > 0) & np.isfinite(loss_N) & np.isfinite(response_loss_N)
  ifd_N = np.where(ok, loss_N / np.where(ok, response_loss_N, 1.0), 0.0)
  return clip_ifd(ifd_N, clip_above_one)


def clip_ifd(ifd_N: np.ndarray, clip_above_one: bool) -> np.ndarray:
  """IFD > 1 -> 0 when `clip_above_one` (the reference code's mapping)."""
  ifd_N = np.asarray(ifd_N, np.float32)
  return np.where(ifd_N > 1.0, np.float32(0.0), ifd_N) if clip_above_one else ifd_N


def _renumber(labels_N: np.ndarray, centers: np.ndarray) -> np.ndarray:
  used = np.unique(labels_N)
  if centers.shape[1] == 1:
    order = used[np.argsort(centers[used, 0], kind="stable")]
  else:
    sizes = np.bincount(labels_N, minlength=centers.shape[0])[used]
    first = np.array([np.flatnonzero(labels_N == u)[0] for u in used])
    order = used[np.lexsort((first, -sizes))]
  new_of_old = np.full(centers.shape[0], -1, np.int64)
  new_of_old[order] = np.arange(order.size)
  return new_of_old[labels_N]


def kmeans(features_NxD: np.ndarray, num_clusters: int, seed: int, n_init: int) -> np.ndarray:
  """Cluster labels 0..K'-1 (int64), K' <= num_clusters (see module doc)."""
  from sklearn.cluster import KMeans  # only the offline stage needs scikit-learn
  x = np.asarray(features_NxD, np.float64)
  if x.ndim == 1:
    x = x[:, None]
  if x.shape[0] == 0:
    raise ValueError("k-means on an empty pool")
  if num_clusters < 1:
    raise ValueError(f"select.num_clusters={num_clusters} must be >= 1")
  distinct = np.unique(x, axis=0).shape[0]
  k = min(num_clusters, distinct)
  if k < num_clusters:
    log.warning("only %d distinct feature values: %d clusters instead of %d", distinct, k,
                num_clusters)
  if k == 1:
    return np.zeros(x.shape[0], np.int64)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # sklearn's convergence chatter on tied points
    model = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(x)
  return _renumber(model.labels_.astype(np.int64), model.cluster_centers_)
