"""The `data` sub-config: pool files, template, lengths, bad-input policy, cache.

Not an experiment on its own: experiment configs attach it as `config.data`
and override fields where they need to. The defaults are the embedded default
of the main job: the synthetic lake written into the workdir, the byte-level
tokenizer and the tulu template.

  from configs import base_data
  config.data = base_data.get()
  config.data.max_length = 3080  # e.g. the paper's length

Command-line overrides use the usual flags, for example
`--config.data.train_path=pool.jsonl --config.data.on_error=skip`.
"""

import ml_collections


def get() -> ml_collections.ConfigDict:
  """Data settings read by lead_jax.data (load_pool, resolve_paths, gather)."""
  c = ml_collections.ConfigDict()
  c.train_path = ""  # pool: messages/alpaca/sharegpt JSON(L) or prepared tfds dir; "" = lake
  c.test_path = ""  # held-out messages JSONL (exact match, loss); "" = the lake's, if train_path ""
  c.dev_path = ""  # small held-out set (dev loss, dev_gain); "" = the lake's, if train_path ""
  c.format = "auto"  # auto (by extension and keys) | messages | alpaca | sharegpt | tfds
  c.task_name = ""  # source task of records without a `dataset` field; "" = the file's stem
  c.tokenizer = "byte_level"  # local Hugging Face tokenizer dir, or byte_level (built in)
  c.template = "auto"  # auto: the tokenizer's chat template if it has one, else tulu | tulu
  c.max_length = 160  # tokens per sample after truncation (prompt tail + response head)
  c.max_length_per_task = ""  # per-source limits "task=N,task=N", each <= max_length
  c.buckets = ()  # extra batch lengths below max_length, e.g. (64, 96); () = always max_length
  c.on_error = "raise"  # raise: stop at the first bad record | skip: drop it, write a rejects report
  c.max_record_bytes = 4 << 20  # size limit of one record (a JSONL line); larger ones are bad input
  c.cache = True  # cache the tokenised pool in <workdir>/data, keyed by a fingerprint of the inputs
  c.synthetic = ml_collections.ConfigDict()
  c.synthetic.seed = 0  # the lake's generator seed (the lake is a pure function of these fields)
  c.synthetic.size = 4000  # pool samples over all tasks and tiers
  c.synthetic.test_per_task = 50  # held-out clean test samples per task (exact match)
  c.synthetic.dev_per_task = 10  # held-out clean dev samples per task
  c.synthetic.tasks = ""  # comma-separated subset of lead_jax.data.synthetic_tasks.TASKS; "" = all
  c.synthetic.weights = ""  # "task:w,...": pool share weights replacing those tasks' own; "" = none
  c.lock()
  return c
