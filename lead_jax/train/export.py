"""A trained model for other frameworks: merged Hugging Face weights and PEFT adapters.

  write(out_dir, model_config, params, tokenizer, base_checkpoint, meta) -> manifest

writes (docs/export.md)

  <out_dir>/merged/     config.json + model.safetensors, the adapters merged in
                        (`lead_jax.model.hf.save_checkpoint`), and the tokenizer files
  <out_dir>/adapter/    adapter_config.json + adapter_model.safetensors, unmerged,
                        in PEFT's layout (`lead_jax.model.peft_format`)
  <out_dir>/base/       the frozen base as a Hugging Face checkpoint (+ tokenizer),
                        only when `base_checkpoint` is not a local Hugging Face
                        directory (a random init, a GGUF file), so that the
                        adapters always have a base to load onto
  <out_dir>/export.json the base the adapters belong to (`base`, also the
                        adapters' base_model_name_or_path: an absolute path),
                        `meta` (the loop: workdir, iteration, train steps) and
                        {dir: {file: {size, sha256}}}

The export is written into `<out_dir>.partial` and moved into place once
complete; an earlier export in `out_dir` is replaced only then. `out_dir`
must be new, empty or an earlier export (`problem`), so that no other folder
is ever replaced. Callers run it on process 0 only.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping

from lead_jax import artifacts
from lead_jax.model import hf, peft_format
from lead_jax.train import base_cache

MERGED, ADAPTER, BASE = "merged", "adapter", "base"
MANIFEST = "export.json"
PARTIAL, OLD = ".partial", ".old"


def problem(out_dir: str) -> str | None:
  """Why `out_dir` cannot receive an export; None when it is new, empty or an export."""
  if not os.path.exists(out_dir):
    return None
  if not os.path.isdir(out_dir):
    return "exists and is not a directory"
  if os.listdir(out_dir) and not os.path.isfile(os.path.join(out_dir, MANIFEST)):
    return f"holds files but no {MANIFEST} (not an earlier export)"
  return None


def is_hf_dir(path: str) -> bool:
  return bool(path) and os.path.isfile(os.path.join(path, "config.json"))


def _save_hf(path: str, model_config, params, tokenizer) -> None:
  hf.save_checkpoint(path, model_config, params)
  if tokenizer is not None:
    tokenizer.save_pretrained(path)


def _swap(partial: str, out_dir: str) -> None:
  old = out_dir + OLD
  if os.path.exists(old):
    shutil.rmtree(old)
  if os.path.exists(out_dir):
    os.rename(out_dir, old)
  os.rename(partial, out_dir)
  if os.path.exists(old):
    shutil.rmtree(old)


def write(out_dir: str, model_config, params, tokenizer=None, base_checkpoint: str = "",
          meta: Mapping | None = None) -> dict:
  """Exports `params` ({"params": base, "lora": adapters}); returns export.json's content.
  `base_checkpoint`: the checkpoint the base was loaded from ('' = random init)."""
  if "lora" not in params:
    raise ValueError("params carry no `lora` adapters; export a LoRA-trained model")
  out_dir = os.path.abspath(out_dir)
  why = problem(out_dir)
  if why:
    raise ValueError(f"{out_dir}: {why}; choose a new or empty directory")
  partial = out_dir + PARTIAL
  if os.path.exists(partial):
    shutil.rmtree(partial)
  own_base = not is_hf_dir(base_checkpoint)
  base_path = os.path.join(out_dir, BASE) if own_base else os.path.abspath(base_checkpoint)
  _save_hf(os.path.join(partial, MERGED), model_config, params, tokenizer)
  peft_format.save_adapters(os.path.join(partial, ADAPTER), model_config, params["lora"], base_path)
  dirs = [MERGED, ADAPTER]
  if own_base:
    _save_hf(os.path.join(partial, BASE), model_config, {"params": params["params"]}, tokenizer)
    dirs.append(BASE)
  manifest = {
      "base": base_path, "base_written": own_base, **dict(meta or {}),
      "files": {d: base_cache.file_table(os.path.join(partial, d)) for d in dirs}
  }
  artifacts.write_json(os.path.join(partial, MANIFEST), manifest)
  _swap(partial, out_dir)
  return manifest
