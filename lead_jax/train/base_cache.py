"""The cache of pretrained bases: build once, verify every time, reuse.

One cache directory for the project, `lead_jax.data.cache.cache_root()`
(`$LEAD_JAX_CACHE`, else `$XDG_CACHE_HOME/lead_jax`, else `~/.cache/lead_jax`).
A base built by `lead_jax.train.pretrain` from the `pretrain` sub-config
(configs/pretrain.py) on `lead_jax.data.corpus` lives in

  <cache>/bases/<fingerprint>/           config.json, model.safetensors, the
                                         tokenizer files, heldout.json,
                                         loss_curve.png, metrics.jsonl, manifest.json
  <cache>/bases/<fingerprint>.partial/   the same while building, plus its orbax
                                         checkpoints: an interrupted build resumes

The fingerprint (`lead_jax.artifacts.fingerprint`) covers `corpus.VERSION`,
`BASE_VERSION` and the whole pretrain sub-config (corpus fields included). A
base is valid when `manifest.json` (written atomically, last) names the right
fingerprint and every file it lists is present with the recorded size and
sha256; anything else is logged with a one-line warning, removed and built
again, never used.

The reserved model checkpoint value `model.checkpoint = "pretrain"` means "the
cached base that `config.pretrain` builds": `resolve_model(config)` turns it into
that directory (building it when missing), so any config can train on top of it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from typing import Optional

from lead_jax import artifacts
from lead_jax.train import pretrain
from lead_jax.data import cache as data_cache
from lead_jax.data import corpus

log = logging.getLogger(__name__)

PRETRAIN = "pretrain"  # reserved model.checkpoint value: the base config.pretrain builds
BASE_VERSION = 1  # bump when the pretraining recipe or the exported layout changes
MANIFEST = "manifest.json"
PARTIAL = ".partial"  # suffix of a base directory while it is being built


def fingerprint(pretrain_cfg) -> str:
  """The key of the base `pretrain_cfg` builds from the current corpus."""
  return artifacts.fingerprint({
      # the pool cache's version, which this key always carried: cached bases stay valid
      "version": data_cache.CACHE_VERSION,
      "stage": "pretrain_base",
      "base_version": BASE_VERSION,
      "corpus_version": corpus.VERSION,
      "pretrain": pretrain_cfg.to_dict()
  })


def base_dir(pretrain_cfg) -> str:
  """Where the base of `pretrain_cfg` lives in the cache (it may not exist yet)."""
  return os.path.join(data_cache.cache_root(), "bases", fingerprint(pretrain_cfg))


def file_table(directory: str) -> dict:
  """{name: {size, sha256}} of the files directly in `directory` (not the manifest)."""
  return {
      name: {
          "size": os.path.getsize(os.path.join(directory, name)),
          "sha256": data_cache.file_digest(os.path.join(directory, name))
      }
      for name in sorted(os.listdir(directory))
      if name != MANIFEST and os.path.isfile(os.path.join(directory, name))
  }


def problem(directory: str, expected: str) -> Optional[str]:
  """Why `directory` is not a complete base with fingerprint `expected`; None when it is."""
  try:
    with open(os.path.join(directory, MANIFEST)) as f:
      manifest = json.load(f)
  except (OSError, ValueError) as e:
    return f"no readable {MANIFEST} ({type(e).__name__})"
  if manifest.get("fingerprint") != expected:
    return f"fingerprint {manifest.get('fingerprint')!r} != {expected!r}"
  for name, want in manifest.get("files", {}).items():
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
      return f"{name} is missing"
    if os.path.getsize(path) != want["size"] or data_cache.file_digest(path) != want["sha256"]:
      return f"{name} differs from the manifest (size or sha256)"
  return None if manifest.get("files") else "the manifest lists no files"


def build(pretrain_cfg, out_dir: str, max_steps: Optional[int] = None) -> Optional[dict]:
  """Pretrains into `out_dir` (resuming there) and writes its manifest; returns
  the manifest, or None when `max_steps` stopped the build before the end."""
  c = pretrain_cfg.corpus
  documents = corpus.documents(c.seed, c.num_docs)
  heldout = corpus.heldout(c.seed, c.heldout_per_task)
  summary = pretrain.train(pretrain_cfg, documents, heldout, out_dir, max_steps=max_steps)
  if summary is None:
    return None
  manifest = {
      "fingerprint": fingerprint(pretrain_cfg), "config": pretrain_cfg.to_dict(), "tokens":
          summary["tokens"], "seconds": summary["seconds"], "final_loss": summary["final_loss"],
      "heldout_initial": summary["heldout_initial"], "heldout_final": summary["heldout_final"],
      "passes": summary["passes"], "files": file_table(out_dir)
  }
  artifacts.write_json(os.path.join(out_dir, MANIFEST), manifest, indent=2)
  return manifest


def ensure(pretrain_cfg) -> str:
  """The directory of a complete, valid cached base for `pretrain_cfg`, built
  (or resumed from `<dir>.partial`) when missing, invalid or mismatched."""
  final = base_dir(pretrain_cfg)
  if os.path.exists(final):
    why = problem(final, os.path.basename(final))
    if why is None:
      return final
    log.warning("cached base %s is not usable (%s); rebuilding it", final, why)
    shutil.rmtree(final)
  partial = final + PARTIAL
  print(
      f"pretrained base: building it once in {partial} (configs/pretrain.py; every later "
      "run reuses it)", file=sys.stderr, flush=True)
  build(pretrain_cfg, partial)
  os.replace(partial, final)
  return final


def resolve_model(config):
  """`config.model`, with the reserved checkpoint "pretrain" replaced by the
  directory of the cached base that `config.pretrain` builds (via `ensure`)."""
  if config.model.checkpoint != PRETRAIN:
    return config.model
  model_cfg = config.model.copy_and_resolve_references()
  model_cfg.checkpoint = ensure(config.pretrain)
  return model_cfg
