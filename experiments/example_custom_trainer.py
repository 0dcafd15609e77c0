r"""LEAD in a trainer of your own: a small flax.nnx model, optax, lead_jax.api.

  python -m experiments.example_custom_trainer --workdir /tmp/lead_example \
      [--pool_size=400 --t_max=4 --dim=32 --proj_dim=32 --seed=0]

The model is not the project's decoder: a causal bigram MLP over the
byte-level tokens (`TinyLM`), trained on the synthetic lake
(`lead_jax.data.synthetic`, tokenised by the data layer). The steps are the
ones docs/library.md describes:

  offline  warmup copy of the model trained for 2 epochs on a random 5% of the pool; its
           losses with and without the prompt give IFD, the untrained model's
           give IDU_0 (`api.offline.run`), k-means on the IFD the clusters
  online   `LeadSelector.propose()` -> ids; optax steps on them; per batch
           `api.per_example` at the parameters before the update gives loss_B,
           dL_B and g_BxK, and `observe` records them; the iteration's end
           updates the IDU and the bandit. After every iteration the
           selector's state goes to <workdir>/selector/<t>.npz (np.savez).

A few seconds on a CPU with the defaults. Prints one line per iteration.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags, logging
from flax import nnx

from configs import default
from lead_jax import api, data
from lead_jax.model import tokenizer
from lead_jax.train import losses

KEYS = ("tokens_BxL", "loss_mask_BxL")  # what the model reads of a batch


@dataclasses.dataclass(frozen=True)
class Settings:
  workdir: str
  pool_size: int = 400  # samples in the synthetic lake
  t_max: int = 4  # LEAD iterations at most
  dim: int = 32  # the model's width
  proj_dim: int = 32  # K of the projected gradients
  batch_size: int = 8
  lr: float = 1e-2
  seed: int = 0


class TinyLM(nnx.Module):
  """Logits at position t from the tokens at t and t - 1 (causal)."""

  def __init__(self, vocab: int, dim: int, rngs: nnx.Rngs):
    self.now, self.before = nnx.Embed(vocab, dim, rngs=rngs), nnx.Embed(vocab, dim, rngs=rngs)
    self.hidden, self.out = nnx.Linear(dim, dim, rngs=rngs), nnx.Linear(dim, vocab, rngs=rngs)

  def __call__(self, tokens_L):
    before_L = jnp.concatenate([tokens_L[:1], tokens_L[:-1]])
    return self.out(jax.nn.gelu(self.hidden(self.now(tokens_L) + self.before(before_L))))


def config_for(s: Settings):
  """The project's default config (select, bandit, idu, offline, data) at this size."""
  c = default.get_config()
  c.seed, c.data.synthetic.size, c.data.max_length, c.data.buckets = s.seed, s.pool_size, 64, ()
  c.select.t_max, c.select.num_clusters, c.select.sample_rate = s.t_max, 4, 0.15
  c.select.budget_fraction = 0.25
  return c


def _batch(pool, ids, batch_size: int, view: str = "full") -> dict:
  return data.gather(pool, ids, batch_size, length=pool.max_length, view=view)


def _steps(graphdef, tx, s: Settings):
  """`(loss_fn, train_step, per_example)` for the model `graphdef`."""

  def loss_fn(params, example):  # one example: (response loss, target tokens)
    logits_LxV = nnx.merge(graphdef, params)(example["tokens_BxL"])
    return losses.token_mean_ce(logits_LxV, example["tokens_BxL"], example["loss_mask_BxL"])

  @jax.jit
  def train_step(params, opt_state, batch):
    """One optax step on the batch mean; returns the update it applied."""

    def mean_loss(p):
      loss_B, n_B = jax.vmap(loss_fn, in_axes=(None, 0))(p, batch)
      return jnp.sum(jnp.where(n_B > 0, loss_B, 0.0)) / jnp.maximum(jnp.sum(n_B > 0), 1)

    loss, grad = jax.value_and_grad(mean_loss)(params)
    update, opt_state = tx.update(grad, opt_state, params)
    return optax.apply_updates(params, update), opt_state, update, loss

  projection = api.Projection(dim=s.proj_dim, seed=s.seed)
  return loss_fn, train_step, api.per_example.build(loss_fn, projection=projection)


def _offline(pool, graphdef, params, tx, steps, config, s: Settings):
  """The warmup model (a copy trained on 5% of the pool) and `api.offline.run`."""
  loss_fn, train_step, _ = steps
  rng = np.random.default_rng(s.seed)
  subset = rng.choice(len(pool), max(s.batch_size, len(pool) // 20), replace=False)
  warm, opt_state = params, tx.init(params)
  for _ in range(2):  # epochs
    order = rng.permutation(subset)
    for start in range(0, order.size, s.batch_size):
      batch = _batch(pool, order[start:start + s.batch_size], s.batch_size)
      warm, opt_state, _, _ = train_step(warm, opt_state, {k: batch[k] for k in KEYS})
  score = jax.jit(jax.vmap(loss_fn, in_axes=(None, 0)))

  def warmup_fn(ids):  # (l(y | x), l(y)) under the warmup model
    full, response = (_batch(pool, ids, len(ids), view) for view in ("full", "response"))
    return (score(warm, {k: full[k] for k in KEYS})[0], score(warm,
                                                             {k: response[k] for k in KEYS})[0])

  def base_fn(ids):  # IDU_0: l(y | x) under the untrained model
    return score(params, {k: _batch(pool, ids, len(ids))[k] for k in KEYS})[0]

  return api.offline.run(np.arange(len(pool)), warmup_fn, base_fn, config, s.seed, 32)


def run(s: Settings) -> dict:
  """Trains with LEAD; returns the selector and one record per iteration."""
  config = config_for(s)
  tok = tokenizer.load(config.data.tokenizer)
  pool = data.load_pool(config.data, tok, s.workdir)
  model = TinyLM(max(len(tok), pool.pad_id + 1), s.dim, nnx.Rngs(s.seed))
  graphdef, params = nnx.split(model, nnx.Param)
  tx = optax.adam(s.lr)
  steps = _steps(graphdef, tx, s)
  result = _offline(pool, graphdef, params, tx, steps, config, s)
  sel = api.LeadSelector.from_offline(result, pool.task_N, config, s.seed, proj_dim=s.proj_dim,
                                      num_tasks=len(pool.task_names))
  _, train_step, per_example = steps
  opt_state, history = tx.init(params), []
  os.makedirs(os.path.join(s.workdir, "selector"), exist_ok=True)
  while not sel.done:
    ids_S, train_loss = sel.propose(), []
    for start in range(0, ids_S.size, s.batch_size):
      batch = _batch(pool, ids_S[start:start + s.batch_size], s.batch_size)
      example = {k: batch[k] for k in KEYS}
      new_params, opt_state, update, loss = train_step(params, opt_state, example)
      out = per_example(params, example, update)  # at the parameters before the update
      info = sel.observe(batch["index_B"], out.loss_B, out.dL_B, out.g_BxK, valid_B=out.valid_B,
                         lr=s.lr)
      params = new_params
      train_loss.append(float(loss))
    np.savez(os.path.join(s.workdir, "selector", f"{sel.iteration - 1:04d}.npz"), **sel.state())
    record = {
        "iteration": sel.iteration - 1, "ids": ids_S.tolist(),
        "train_loss": float(np.mean(train_loss)) if train_loss else None
    }
    if ids_S.size:
      record.update(arm=info.arm, reward=info.reward, probabilities=info.p_C.tolist())
    history.append(record)
    print({k: v for k, v in record.items() if k != "ids"} | {"selected": ids_S.size})
  return {"selector": sel, "history": history, "config": config, "idu0_N": result.idu0_N}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  f = flags.FLAGS
  if not f["verbosity"].present:  # JAX and the data layer log at INFO
    logging.set_verbosity(logging.WARNING)
  run(Settings(f.workdir, f.pool_size, f.t_max, f.dim, f.proj_dim, f.batch_size, f.lr, f.seed))


if __name__ == "__main__":
  flags.DEFINE_string("workdir", "/tmp/lead_example", "where the pool cache and selector go")
  for name, field in Settings.__dataclass_fields__.items():
    if name != "workdir":
      define = flags.DEFINE_float if field.type == "float" else flags.DEFINE_integer
      define(name, field.default, f"Settings.{name}")
  app.run(main)
