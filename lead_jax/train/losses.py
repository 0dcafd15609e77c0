"""The response-only loss of one example, shared by training and scoring.

l(theta; y | x) is the token-mean cross-entropy over the positions `t` whose
token `tokens[t]` is a response token (`loss_mask[t]`), predicted from the
logits at `t - 1`. A row with no target token (a padding row, or a response
truncated away) has loss 0 and weight 0.

Everything here works on ONE example (arrays of shape `[L]`): callers `vmap`
it, which gives the batched forward for the batch loss and, under `grad`, the
per-example gradients, from the same function and so the same numerics.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from lead_jax.model import decoder as model_lib

# The batch contract (produced by the data layer): fixed B and L, right padded.
BATCH_KEYS = ("tokens_BxL", "attention_mask_BxL", "loss_mask_BxL", "is_pad_B", "index_B")


def check_batch(batch) -> None:
  """Raises a clear error when a batch does not follow the batch contract."""
  missing = [k for k in BATCH_KEYS if k not in batch]
  if missing:
    raise KeyError(f"batch is missing {missing}; a training batch carries {list(BATCH_KEYS)} "
                   "(see lead_jax.data for how batches are gathered)")
  b, l = batch["tokens_BxL"].shape
  for key in BATCH_KEYS:
    want = (b, l) if key.endswith("BxL") else (b,)
    if tuple(batch[key].shape) != want:
      raise ValueError(f"batch[{key!r}] has shape {tuple(batch[key].shape)}, expected {want} "
                       f"to match tokens_BxL {(b, l)}")


def token_mean_ce(logits_LxV, tokens_L, loss_mask_L):
  """(token-mean cross-entropy over target positions, number of targets)."""
  target_mask = loss_mask_L[1:].astype(jnp.float32)  # position 0 has no predictor
  logits = logits_LxV[:-1].astype(jnp.float32)
  targets = tokens_L[1:]
  lse = jax.nn.logsumexp(logits, axis=-1)
  picked = jnp.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]
  n = jnp.sum(target_mask)
  loss = jnp.sum((lse - picked) * target_mask) / jnp.maximum(n, 1.0)
  return loss, n


def example_loss(model_config: model_lib.ModelConfig, base, lora, example,
                 dropout_key: Optional[jax.Array] = None, *, mesh=None):
  """Response loss of one example: `example` maps batch keys to `[L]` arrays.

  Returns `(loss, n_targets)`; `lora=None` scores the base model. The loss of
  a padding row is forced to 0 so its gradient is exactly zero. With a `mesh`
  (and callers vmapping with the batch axes as spmd_axis_name) the logits stay
  on the devices of their row: weights are gathered, activations never are.
  """
  params = {"params": base} if lora is None else {"params": base, "lora": lora}
  logits = model_lib.forward(model_config, params, example["tokens_BxL"][None],
                             example["attention_mask_BxL"][None], dropout_key=dropout_key)[0]
  if mesh is not None:
    logits = jax.lax.with_sharding_constraint(logits, NamedSharding(mesh, PartitionSpec()))
  loss, n = token_mean_ce(logits, example["tokens_BxL"], example["loss_mask_BxL"])
  real = jnp.logical_not(example["is_pad_B"])
  return jnp.where(real, loss, 0.0), jnp.where(real, n, 0.0)


def row_keys(key: Optional[jax.Array], index_B):
  """Per-row dropout keys, a function of the row's position in the batch only,
  so that micro-batch size and device count do not change the masks."""
  if key is None:
    return None
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(index_B.shape[0]))
