"""Pretraining the tiny byte-level base on the plain-text corpus (lead_jax.train.pretrain).

  python -m experiments.pretrain_base --config configs/pretrain.py

Full-parameter causal-LM training of the byte-level decoder on
`lead_jax.data.corpus.documents`, exported as a local Hugging Face checkpoint
into the base cache (`$LEAD_JAX_CACHE/bases/<fingerprint>/`, see
lead_jax.train.base_cache). Other configs attach `get()` as `config.pretrain` and
set `config.model.checkpoint = "pretrain"` to train on top of this base.

Hardware: 2 CPU cores, no accelerator. Model: 4 layers, d=128 (1.1M
parameters); 800 steps of 16 x 128 tokens (1.6M tokens, about 0.4 epochs of
the 20,000-document corpus). Measured (2026-12-02, 2 cores, corpus version
4, a fresh clone on a quiet machine): about 8,500 tokens/s, 209 s for the
whole build (corpus, compilation, held-out loss before and after, export);
on 2026-12-01 (corpus 3, before model.LoraDense flattened tokens) 4 min 32 s
quiet, 5 min 48 s with a test run beside it; a rebuild gives byte-identical
weights. Held-out loss per
continuation byte, random init -> base: facts stated often, job 5.8 -> 0.38,
city 5.8 -> 0.45; stated rarely, pet 6.1 -> 0.56; parity 0.05, format 0.86,
max 1.36, add 1.53, word_problem 1.52, last_letter 1.64, lookup 1.80; the
copying skills stay near chance (copy 2.98, uppercase 2.95, reverse 2.85: no
induction at this compute); never stated: color 5.3, sort 3.5, count 7.1.
Batch 16 rather than 32 at the same tokens: at 250k tokens the train loss
was 1.2 against 2.5 (more updates per token); peak lr 1e-2 instead of 3e-3
did not help the copying skills (copy 3.06 after 400 steps). A second run
reuses the cached base at once.
"""

import ml_collections

from configs import base


def get_model() -> ml_collections.ConfigDict:
  """The architecture of the base (configs/base.py fields, a smaller decoder)."""
  c = base.get_model()
  c.vocab_size = 261  # byte-level tokenizer: 256 bytes + 5 special tokens
  c.hidden_size = 128  # d_model
  c.intermediate_size = 512  # SwiGLU hidden size
  c.num_layers = 4  # decoder blocks
  c.num_heads = 4  # query heads
  c.num_kv_heads = 4  # key/value heads
  return c


def get_corpus() -> ml_collections.ConfigDict:
  """What `lead_jax.data.corpus` generates."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # seed of corpus.documents and corpus.heldout
  c.num_docs = 20000  # training documents
  c.heldout_per_task = 50  # held-out (context, continuation) pairs per task
  c.lock()
  return c


def get_optim() -> ml_collections.ConfigDict:
  """AdamW with linear warmup then cosine decay over `steps`."""
  c = ml_collections.ConfigDict()
  c.lr = 3e-3  # peak learning rate
  c.warmup_steps = 50  # linear warmup from 0 (must be < steps)
  c.final_lr_fraction = 0.1  # lr at the last step, as a fraction of the peak
  c.weight_decay = 0.1  # decoupled weight decay (every parameter)
  c.b1 = 0.9  # Adam beta1
  c.b2 = 0.95  # Adam beta2
  c.eps = 1e-8  # Adam epsilon
  c.clip_norm = 1.0  # global-norm gradient clipping; 0 = off
  c.lock()
  return c


def get() -> ml_collections.ConfigDict:
  """The pretrain sub-config; other configs attach it as `config.pretrain`."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # root of the init key and of the document-order Generator
  c.corpus = get_corpus()  # lead_jax.data.corpus arguments
  c.model = get_model()  # the decoder (checkpoint must stay "": random init)
  c.optim = get_optim()  # optimiser and schedule
  c.batch_size = 16  # B: windows per step
  c.seq_len = 128  # L: tokens per window (also the held-out evaluation length)
  c.steps = 800  # optimiser steps; the cosine schedule ends here
  c.log_every = 50  # write metrics (and the progress-bar postfix) every this many steps
  c.checkpoint_every = 250  # save params, optimiser and host state every this many steps
  c.keep = 2  # newest checkpoints kept while building (removed once exported)
  c.lock()
  return c


def get_config(arg=None):
  """The pretrain sub-config itself; `arg` is unused (no presets)."""
  del arg
  return get()
