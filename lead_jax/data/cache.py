"""Fingerprint cache of tokenised pools in the workdir, and the project's cache root.

`cache_root()` is the one directory shared by every run on a machine: the
synthetic lake (`<root>/lakes`) and the pretrained tiny base (`<root>/bases`)
live there, so every run, seed and suite reuses them. It is
$LEAD_JAX_CACHE, else $XDG_CACHE_HOME/lead_jax, else ~/.cache/lead_jax.

The key (`lead_jax.artifacts.fingerprint`, computed by `load.load_pool`)
hashes everything the arrays depend on: the pool file's bytes (or a
prepared tfds directory's metadata), the tokenizer (its serialised vocabulary,
merges and special tokens), the chat template, the length limits, format,
task name, error policy and this module's CACHE_VERSION. Any change gives a
new key, so a stale pool is never reused; the key is stored in the Pool (and
in the file's meta, which `load` checks) so checkpoints can check that they
were made on the same data. The file is an `artifacts.save_npz` .npz.
"""

from __future__ import annotations

import hashlib
import json
import os

from lead_jax import artifacts
from lead_jax.data.pool import Pool

CACHE_VERSION = 1  # bump when the Pool layout or the tokenisation rules change


def cache_root() -> str:
  """The project's cache directory (created on first use by its writers)."""
  if os.environ.get("LEAD_JAX_CACHE"):
    return os.path.abspath(os.path.expanduser(os.environ["LEAD_JAX_CACHE"]))
  xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(xdg, "lead_jax")


def file_digest(path: str) -> str:
  """sha256 of a file's bytes, or of a directory's file names, sizes and small files."""
  h = hashlib.sha256()
  if os.path.isdir(path):
    for name in sorted(os.listdir(path)):
      full = os.path.join(path, name)
      if os.path.isfile(full):
        h.update(f"{name}\0{os.path.getsize(full)}\0".encode())
        if name.endswith(".json"):
          h.update(file_digest(full).encode())
    return h.hexdigest()
  with open(path, "rb") as f:
    while chunk := f.read(1 << 22):
      h.update(chunk)
  return h.hexdigest()


def tokenizer_digest(tokenizer) -> str:
  h = hashlib.sha256()
  backend = getattr(tokenizer, "backend_tokenizer", None)
  if backend is not None:
    h.update(backend.to_str().encode())
  else:
    h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
  h.update(
      json.dumps([
          tokenizer.eos_token, tokenizer.pad_token,
          sorted(map(str, tokenizer.all_special_tokens))
      ]).encode())
  return h.hexdigest()


def save(pool: Pool, path: str) -> None:
  """Atomic write of the pool's arrays and metadata to one .npz file."""
  meta = {
      "task_names": list(pool.task_names), "max_length": pool.max_length, "pad_id": pool.pad_id,
      "fingerprint": pool.fingerprint, "stats": pool.stats
  }
  artifacts.save_npz(path, pool.arrays(), meta)


def load(path: str, fingerprint: str | None = None) -> Pool | None:
  """The cached pool at `path` (with key `fingerprint`, when given), or None
  when absent, unreadable (a partial or foreign file: rebuild) or another key's."""
  got = artifacts.load_npz(path, None if fingerprint is None else {"fingerprint": fingerprint})
  if got is None or "task_names" not in got[1]:
    return None
  arrays, meta = got
  return Pool(
      task_names=tuple(meta["task_names"]), max_length=meta["max_length"], pad_id=meta["pad_id"],
      fingerprint=meta["fingerprint"], stats=meta["stats"], **arrays)
