"""Every experiment config builds and locks; the sub-configs are documented."""

import dataclasses
import glob
import importlib
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from lead_jax.train import build
from lead_jax.train import optim
from lead_jax.train import sharding
from lead_jax.train import step as train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = sorted(
    os.path.basename(p)[:-3]
    for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))
    if "def get_config(" in open(p).read() and not os.path.basename(p).startswith("base"))


def test_there_are_experiment_configs():
  assert {"tiny", "paper_llama3_8b"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_config_builds_and_locks(name):
  module = importlib.import_module(f"configs.{name}")
  assert "python -m experiments." in module.__doc__  # the exact command
  config = module.get_config()
  assert config.is_locked
  with pytest.raises(AttributeError):
    config.no_such_field = 1
  if "train" not in config:  # a config of another entry point (e.g. evaluation only)
    return
  with pytest.raises(AttributeError):
    config.train.batch_sise = 8  # a typo fails instead of being ignored
  mc = build.model_config(config.model, config.lora)
  _, lr_fn = optim.make(config.optim)
  assert np.isfinite(float(lr_fn(0)))
  spec = train.spec_from_config(mc, config.train, config.optim, config.seed)
  assert config.train.batch_size % spec.micro_batch == 0
  assert sharding.mesh_shape(config.mesh, 8)


def test_every_declared_field_has_a_comment():
  for path in glob.glob(os.path.join(ROOT, "configs", "base*.py")):
    for n, line in enumerate(open(path), 1):
      if re.match(r"\s+c\.[a-z_.]+ = ", line) and "ConfigDict()" not in line:
        assert "#" in line, f"{path}:{n}: a config field without a one-line comment"


def test_paper_config_is_llama31_8b_with_the_paper_lora():
  from configs import paper_llama3_8b as paper
  config = paper.get_config()
  mc = build.model_config(config.model, config.lora)
  assert mc == dataclasses.replace(paper.LLAMA31_8B, lora=mc.lora, bos_token_id=None,
                                   eos_token_ids=())
  assert (mc.lora.rank, mc.lora.alpha, mc.lora.dropout) == (64, 16.0, 0.1)
  tx, _ = optim.make(config.optim)
  state, _ = build.abstract_state(mc, tx)
  # r=64 on q,k,v,o,gate,up,down of 32 layers (PEFT's count for Llama-3.1-8B).
  assert sum(np.prod(x.shape) for x in jax.tree.leaves(state.lora)) == 167_772_160
  assert config.optim.lr == 2e-5 and config.optim.weight_decay == 0.0
  assert config.train.batch_size == 8 and config.data.max_length == 3080


@pytest.mark.slow
def test_command_line_override_of_an_unknown_field_fails():
  proc = subprocess.run([
      sys.executable, "-m", "experiments.run", "--config", "configs/tiny.py", "--workdir",
      "/nonexistent", "--config.train.batch_sise=4"
  ], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0 and "batch_sise" in proc.stderr


def test_lead_plus_is_the_extensions_suites_lead_all():
  from configs import default, lead_plus
  from experiments import suites
  plus, base = lead_plus.get_config(), default.get_config()
  lead_all = {v.name: v for v in suites.get("extensions")}["lead_all"]
  for path, value in lead_all.overrides.items():
    section, field = path.split(".")
    assert plus[section][field] == value != base[section][field], path
  for section in ("idu", "bandit", "select", "loop"):  # and nothing else differs
    changed = {k for k in base[section] if plus[section][k] != base[section][k]}
    assert changed == {p.split(".")[1] for p in lead_all.overrides if p.startswith(section)}
