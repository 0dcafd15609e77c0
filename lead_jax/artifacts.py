"""Files the project derives and caches: one fingerprint, atomic writes, npz caches.

  fingerprint(parts)   the key of a JSON-able dict: the first FINGERPRINT_CHARS
                       hex digits of the sha256 of its canonical JSON (sorted
                       keys; a non-JSON value by its str()). A caller whose
                       artifacts have a format version puts it in `parts`.
  atomic_write(path)   a context manager yielding a file open on a temporary
                       sibling (`<path>.tmp<pid>`) that replaces `path` when the
                       block ends; when the block raises, the temporary file is
                       removed and `path` is left as it was. A kill leaves the
                       old file or the new one, never a partial one.
  write_text, write_bytes, write_json   atomic_write of a whole text, bytes or
                       JSON document (sorted keys, trailing newline).
  save_npz(path, arrays, meta)  arrays plus a JSON dict (`meta`, stored as the
                       array `__meta__`) in one .npz, written atomically;
  load_npz(path, expect)  `(arrays, meta)` back, or None when the file is
                       absent, unreadable (partial, foreign) or its meta
                       differs from `expect` on any key `expect` names.
  cached_npz(path, compute, expect)  load_npz, else `compute() -> (arrays,
                       meta)` saved with `expect` merged into its meta.
  is_writer()          whether this process writes the run's files: the only
                       process, or process 0 of a multi-process
                       (`jax.distributed`) job. The others compute the same
                       values and write none of them (checkpoints aside: in
                       orbax's multi-process protocol each process writes the
                       metadata of its own shards).

Users: the offline stage and the baselines' scores (`lead_jax.offline.stage`,
`lead_jax.offline.baseline_scores`), the pool cache and the synthetic lake
(`lead_jax.data.cache`, `lead_jax.data.synthetic`), the chat template's key,
the pretrained-base cache (`lead_jax.train.base_cache`), the loop's files
(`lead_jax.outputs`, `lead_jax.metrics`, `lead_jax.loop.final`) and the
evaluation reports (`lead_jax.evals.checkpoints`). It imports nothing of
lead_jax, so every module can import it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
from typing import Any, Callable, Iterator, Mapping, Optional

import numpy as np

log = logging.getLogger(__name__)
FINGERPRINT_CHARS = 24
META = "__meta__"  # the npz member holding the JSON meta
DIGESTS = "sha256"  # the meta's {array name: checksum}; a file whose arrays differ is a miss


def fingerprint(parts: Mapping[str, Any]) -> str:
  """A short stable key of a JSON-able dict (key order does not matter)."""
  blob = json.dumps(dict(parts), sort_keys=True, default=str)
  return hashlib.sha256(blob.encode()).hexdigest()[:FINGERPRINT_CHARS]


# errno values of a write the disk refused: full, over a size or quota limit, read-only.
FULL_DISK = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS)


class WriteError(OSError):
  """A write the disk refused (full, quota, size limit, read-only); one line
  for the user. What was there before is left as it was."""


def write_failed(what: str, reason: str) -> WriteError:
  return WriteError(f"writing {what} failed ({reason}); free disk space (or raise the limit) "
                    "and rerun the same command: what was written before is intact")


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", encoding: Optional[str] = "utf-8") -> Iterator[Any]:
  """A file to write `path` through: it replaces `path` only when the block
  ends without an exception (`mode` "w" or "wb"; parent folders are created).
  A write the disk refuses (`FULL_DISK`) raises `WriteError`."""
  if mode not in ("w", "wb"):
    raise ValueError(f"atomic_write: mode {mode!r}; use 'w' or 'wb'")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"
  try:
    with open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
      yield f
    os.replace(tmp, path)
  except BaseException as e:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    if isinstance(e, OSError) and not isinstance(e, WriteError) and e.errno in FULL_DISK:
      raise write_failed(path, os.strerror(e.errno)) from e
    raise


def write_text(path: str, text: str) -> None:
  with atomic_write(path) as f:
    f.write(text)


def write_bytes(path: str, data: bytes) -> None:
  with atomic_write(path, "wb") as f:
    f.write(data)


def write_json(path: str, obj, *, indent: Optional[int] = 1, ensure_ascii: bool = True) -> None:
  """`obj` as JSON (sorted keys, NaN allowed, trailing newline), written atomically."""
  write_text(
      path,
      json.dumps(obj, indent=indent, sort_keys=True, allow_nan=True, ensure_ascii=ensure_ascii) +
      "\n")


def _digests(arrays: Mapping[str, np.ndarray]) -> dict[str, str]:
  """SHA-256 of each array's dtype, shape and bytes."""
  out = {}
  for name, x in arrays.items():
    x = np.ascontiguousarray(x)
    h = hashlib.sha256(f"{x.dtype.str}{x.shape}".encode())
    h.update(x.tobytes())
    out[name] = h.hexdigest()
  return out


def save_npz(path: str, arrays: Mapping[str, Any], meta: Optional[Mapping] = None) -> None:
  """`arrays` to one .npz at `path`, atomically; with `meta` (a cache file),
  also the JSON meta: `meta` plus each array's checksum under `DIGESTS`.
  Without it, a plain npz (outputs for `np.load`)."""
  if META in arrays:
    raise ValueError(f"save_npz: {META!r} is reserved for the meta")
  arrays = {k: np.asarray(v) for k, v in arrays.items()}
  extra = {} if meta is None else {
      META: np.array(json.dumps({**dict(meta), DIGESTS: _digests(arrays)}))
  }
  with atomic_write(path, "wb") as f:
    np.savez(f, **extra, **arrays)


def load_npz(path: str,
             expect: Optional[Mapping] = None) -> Optional[tuple[dict[str, np.ndarray], dict]]:
  """`(arrays, meta)` of a save_npz file; None when absent, unreadable, when
  its arrays do not match their checksums, or when its meta differs from
  `expect` (a file without meta has meta {}; one without checksums, from an
  older version, is not checked). `meta` comes back without the checksums."""
  if not os.path.exists(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as z:
      meta = json.loads(str(z[META])) if META in z.files else {}
      arrays = {k: z[k] for k in z.files if k != META}
  except Exception as e:  # any damage (zip, npy header, JSON meta) is a cache miss
    log.warning("unreadable artifact %s (%s): recomputing it", path, type(e).__name__)
    return None
  digests = meta.pop(DIGESTS, None)
  if digests is not None and digests != _digests(arrays):
    log.warning("artifact %s does not match its checksums: recomputing it", path)
    return None
  wrong = [k for k, v in (expect or {}).items() if meta.get(k) != v]
  if wrong:
    log.warning("artifact %s does not match on %s: recomputing it", path, ", ".join(wrong))
    return None
  return arrays, meta


def is_writer() -> bool:
  """True on the process that writes the run's files (module docstring)."""
  import jax  # pylint: disable=import-outside-toplevel  (JAX is needed here only)
  return jax.process_index() == 0


def cached_npz(path: str, compute: Callable[[], tuple[Mapping, Mapping]], *,
               expect: Optional[Mapping] = None,
               reuse: bool = True) -> tuple[dict[str, np.ndarray], dict, bool]:
  """`(arrays, meta, computed)`: the file at `path` when it is there and its
  meta matches `expect` (and `reuse`), else `compute() -> (arrays, meta)`,
  saved with `expect` merged into the meta (by the writing process,
  `is_writer`), so a later call loads it."""
  got = load_npz(path, expect) if reuse else None
  if got is not None:
    return got[0], got[1], False
  arrays, meta = compute()
  meta = {**meta, **(expect or {})}
  if is_writer():
    save_npz(path, arrays, meta)
  return dict(arrays), meta, True
