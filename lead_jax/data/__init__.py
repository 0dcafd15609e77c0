"""Data layer: pool files -> validated records -> one chat template -> Pool -> batches.

Modules: `formats` (readers, validation), `jsonio` (streaming JSON with line
numbers), `templates` (the chat template, loss masks, evaluation prompts),
`pool` (the tokenised `Pool`, truncation), `cache` (fingerprinted pool cache),
`load` (config -> Pool), `batching` (fixed-shape batches), `packing` (several
samples per row, for forward-only passes), `synthetic` (the
synthetic data lake), `tfds_builder` (prepared array_record pools).

Array suffixes as in `lead_jax`, plus F: the flat token axis of the ragged
pool (every sample's tokens concatenated), S: one sample's tokens and G: the
samples (segments) of one packed row.
"""

from lead_jax.data import packing
from lead_jax.data.batching import choose_length, gather, length_buckets
from lead_jax.data.errors import DataError
from lead_jax.data.formats import Record, Reject, read
from lead_jax.data.load import (load_pool, normalize_buckets, read_records, resolve_paths,
                                saved_train_path)
from lead_jax.data.pool import Pool, truncation_keep
from lead_jax.data.templates import (encode, encode_prompt, prompt_text, resolve as
                                     resolve_template, response_text, stop_token_ids)

__all__ = [
    "DataError",
    "Pool",
    "Record",
    "Reject",
    "choose_length",
    "encode",
    "encode_prompt",
    "gather",
    "length_buckets",
    "load_pool",
    "normalize_buckets",
    "packing",
    "prompt_text",
    "read",
    "read_records",
    "resolve_paths",
    "resolve_template",
    "response_text",
    "saved_train_path",
    "stop_token_ids",
    "truncation_keep",
]
