"""The pretrained-base stage: training, export, the cache and its checks, resume."""

import json
import os
import signal
import subprocess
import sys
import types

import jax
import numpy as np
import pytest
import tokenizers

from configs import base
from configs import pretrain as pretrain_config
from lead_jax import preempt
from lead_jax.train import base_cache
from lead_jax.train import build
from lead_jax.model import hf
from lead_jax.train import pretrain
from lead_jax.model import tokenizer
from lead_jax.model import decoder as model_lib

_WORDS = ("red", "blue", "green", "cat", "dog", "bird", "runs", "sits", "sings", "the")


def _documents(n: int = 300) -> list[str]:
  rng = np.random.default_rng(0)
  docs = []
  for i in range(n):
    a, b = rng.integers(0, 10, size=2)
    docs.append(f"the {_WORDS[a]} {_WORDS[3 + b % 3]} {_WORDS[6 + a % 3]}. {a}+{b}={a + b}.")
  return docs


_HELDOUT = {
    "add": [(f"{a}+{b}=", f"{a + b}.") for a, b in [(1, 2), (3, 4), (5, 2)]],
    "words": [("the red ", "cat runs."), ("the blue ", "dog sits.")]
}


def _cfg(steps: int = 30):
  c = pretrain_config.get()
  c.corpus.num_docs, c.corpus.heldout_per_task = 300, 3
  c.model.num_layers, c.model.hidden_size, c.model.intermediate_size = 2, 32, 64
  c.model.num_heads = c.model.num_kv_heads = 2
  c.optim.warmup_steps = 3
  c.batch_size, c.seq_len, c.steps = 8, 32, steps
  c.log_every, c.checkpoint_every = 5, 5
  return c


@pytest.fixture
def fake_corpus(monkeypatch, tmp_path):
  """`lead_jax.data.corpus` replaced by the hand-written corpus; calls counted."""
  calls = []
  fake = types.SimpleNamespace(
      VERSION=1, documents=lambda seed, n: calls.append(seed) or _documents(n),
      heldout=lambda seed, per_task: {t: p[:per_task] for t, p in _HELDOUT.items()})
  monkeypatch.setattr(base_cache, "corpus", fake)
  monkeypatch.setenv("LEAD_JAX_CACHE", str(tmp_path / "cache"))
  return calls


def _params(directory: str):
  return hf.load_checkpoint(directory)[1]["params"]


def _assert_same(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_config_is_locked_and_commented():
  c = pretrain_config.get_config()
  assert c.is_locked and c.to_dict() == pretrain_config.get().to_dict()
  with pytest.raises(AttributeError):
    c.batch_sise = 4
  source = open(pretrain_config.__file__).read().splitlines()
  assert all("#" in line for line in source if line.strip().startswith("c.") and "=" in line)


def test_epoch_windows_are_the_permuted_stream():
  docs = [np.array([1, 2, 0]), np.array([3, 0]), np.array([4, 5, 6, 0])]
  w = pretrain.epoch_windows(docs, np.array([2, 0, 1]), batch_size=2, seq_len=2)
  np.testing.assert_array_equal(w, [[[4, 5], [6, 0]], [[1, 2], [0, 3]]])
  with pytest.raises(ValueError, match="fewer than one batch"):
    pretrain.epoch_windows(docs, np.arange(3), batch_size=4, seq_len=4)


def test_pretraining_lowers_train_and_heldout_loss(tmp_path):
  summary = pretrain.train(_cfg(), _documents(), _HELDOUT, str(tmp_path))
  losses = [json.loads(line)["loss"] for line in open(tmp_path / "metrics.jsonl")]
  assert losses[-1] < losses[0] - 1.0
  for task in _HELDOUT:
    assert summary["heldout_final"][task] < summary["heldout_initial"][task] - 1.0
  assert json.load(open(tmp_path / pretrain.HELDOUT))["final"] == summary["heldout_final"]
  assert os.path.getsize(tmp_path / pretrain.LOSS_CURVE) > 0
  assert summary["passes"]["train"] == {  # 30 steps of 8 windows, 31 of 32 tokens read
      "forward_samples": 240, "backward_samples": 240, "forward_tokens": 240 * 31,
      "backward_tokens": 240 * 31
  }
  assert not os.path.exists(tmp_path / pretrain.CHECKPOINTS)

  # The export round-trips through build.load_base with the same logits.
  model_cfg = _cfg().model
  model_cfg.checkpoint = str(tmp_path)
  config, loaded = build.load_base(model_cfg, base.get_lora(), jax.random.key(0))
  saved_tok = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
  assert saved_tok.encode("cat").ids == [99, 97, 116]
  assert saved_tok.token_to_id("<|endoftext|>") in config.eos_token_ids
  tokens_BxL = np.asarray(tokenizer.byte_level()(["the red cat"])["input_ids"])
  forward = jax.jit(model_lib.forward, static_argnums=0)
  trained = pretrain.model_config(_cfg().model)
  want = forward(trained, {"params": _params(str(tmp_path))}, tokens_BxL)
  got = forward(config, {"params": loaded}, tokens_BxL)
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_step_traces_once():
  cfg = _cfg()
  config = pretrain.model_config(cfg.model)
  tx, _ = pretrain.make_optimizer(cfg.optim, cfg.steps)
  params = model_lib.init(config, jax.random.key(0))["params"]
  traces = []
  step = jax.jit(lambda p, o, t: traces.append(1) or pretrain.train_step(config, tx, p, o, t))
  opt_state = tx.init(params)
  for i in range(3):
    params, opt_state, _ = step(params, opt_state, np.full((8, 32), i, np.int32))
  assert len(traces) == 1


def test_ensure_builds_once_and_rebuilds_a_corrupt_base(fake_corpus, caplog, tmp_path):
  cfg = _cfg(steps=6)
  directory = base_cache.ensure(cfg)
  assert directory.startswith(str(tmp_path / "cache"))
  assert base_cache.problem(directory, os.path.basename(directory)) is None
  assert base_cache.ensure(cfg) == directory and len(fake_corpus) == 1  # reused

  weights = os.path.join(directory, hf.SINGLE_FILE)
  blob = bytearray(open(weights, "rb").read())
  blob[-1] ^= 0xFF
  open(weights, "wb").write(bytes(blob))
  assert base_cache.ensure(cfg) == directory and len(fake_corpus) == 2  # rebuilt
  assert hf.SINGLE_FILE in caplog.text and "not usable" in caplog.text
  assert base_cache.problem(directory, os.path.basename(directory)) is None

  os.remove(os.path.join(directory, "tokenizer.json"))
  base_cache.ensure(cfg)
  assert len(fake_corpus) == 3 and "tokenizer.json is missing" in caplog.text
  assert base_cache.problem(directory, "0" * 24).startswith("fingerprint")


def test_interrupted_build_resumes_to_identical_params(fake_corpus, tmp_path):
  cfg = _cfg(steps=12)
  cfg.corpus.num_docs = 40  # 4 windows per epoch: the build crosses two epoch boundaries
  whole = pretrain.train(cfg, _documents(40), _HELDOUT, str(tmp_path / "whole"))
  partial = base_cache.base_dir(cfg) + base_cache.PARTIAL
  assert base_cache.build(cfg, partial, max_steps=7) is None  # stopped as if killed
  assert os.path.isdir(os.path.join(partial, pretrain.CHECKPOINTS))
  directory = base_cache.ensure(cfg)  # resumes the partial build from step 7
  _assert_same(_params(directory), _params(str(tmp_path / "whole")))
  manifest = json.load(open(os.path.join(directory, base_cache.MANIFEST)))
  assert manifest["final_loss"] == whole["final_loss"] and manifest["tokens"] == 12 * 8 * 32
  assert manifest["passes"] == whole["passes"]  # the resumed build continues the count
  assert manifest["passes"]["train"]["backward_samples"] == 12 * 8


def test_resolve_model(fake_corpus):
  config = types.SimpleNamespace(model=base.get_model(), pretrain=_cfg(steps=6))
  config.model.checkpoint = "/some/hf/dir"
  assert base_cache.resolve_model(config) is config.model
  config.model.checkpoint = base_cache.PRETRAIN
  resolved = base_cache.resolve_model(config)
  assert resolved.checkpoint == base_cache.ensure(config.pretrain)
  assert config.model.checkpoint == base_cache.PRETRAIN and len(fake_corpus) == 1


def test_a_signal_checkpoints_the_step_and_the_rerun_ends_identical(tmp_path, monkeypatch):
  cfg = _cfg(steps=12)
  cfg.corpus.num_docs = 40
  whole = pretrain.train(cfg, _documents(40), _HELDOUT, str(tmp_path / "whole"))
  as_batch, calls = pretrain._as_batch, [0]

  def as_batch_and_signal(tokens_BxL):  # SIGINT while the window of step 6 is drawn
    calls[0] += 1
    if calls[0] == 6:
      os.kill(os.getpid(), signal.SIGINT)
    return as_batch(tokens_BxL)

  monkeypatch.setattr(pretrain, "_as_batch", as_batch_and_signal)
  with pytest.raises(preempt.Preempted, match="stopped by SIGINT after pretraining step 6") as e:
    pretrain.train(cfg, _documents(40), _HELDOUT, str(tmp_path / "cut"))
  assert e.value.exit_status == 130
  monkeypatch.setattr(pretrain, "_as_batch", as_batch)
  resumed = pretrain.train(cfg, _documents(40), _HELDOUT, str(tmp_path / "cut"))
  _assert_same(_params(str(tmp_path / "cut")), _params(str(tmp_path / "whole")))
  assert resumed["passes"] == whole["passes"] and resumed["tokens"] == whole["tokens"]


@pytest.mark.slow
def test_kill_9_while_pretraining_then_the_same_command(tmp_path):
  """kill -9 at two seeded random moments of the base build (`LOOP_KILL`:
  0-4 s into `pretrain.train`, or as it returns: a training step, a checkpoint
  save, the export), each time the same `experiments.pretrain_base --out DIR`;
  the last run ends with the uninterrupted build's weights and manifest."""
  cfg = _cfg(steps=12)
  cfg.corpus.num_docs = 40
  whole = base_cache.build(cfg, str(tmp_path / "whole"))
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  flags = [f"--config.{k}={v}" for k, v in _flat(cfg.to_dict()) if k in _SET]
  cmd = [
      sys.executable,
      os.path.join(root, "tests", "loop_driver.py"), "--config", "configs/pretrain.py", "--out",
      str(tmp_path / "cut"), *flags
  ]
  env = dict(os.environ, LOOP_ENTRY="experiments.pretrain_base",
             JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  for delay in np.random.default_rng(20261202).uniform(0.0, 4.0, size=2):
    proc = subprocess.run(cmd, cwd=root, env=dict(env, LOOP_KILL=f"pretraining:0:{delay:.3f}"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
  assert base_cache.problem(str(tmp_path / "cut"), base_cache.fingerprint(cfg)) is not None
  proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  _assert_same(_params(str(tmp_path / "cut")), _params(str(tmp_path / "whole")))
  manifest = json.load(open(tmp_path / "cut" / base_cache.MANIFEST))
  assert manifest["final_loss"] == whole["final_loss"] and manifest["passes"] == whole["passes"]
  assert manifest["files"]["model.safetensors"] == whole["files"]["model.safetensors"]


_SET = {  # the fields _cfg changes, as command-line overrides
    "corpus.num_docs", "corpus.heldout_per_task", "model.num_layers", "model.hidden_size",
    "model.intermediate_size", "model.num_heads", "model.num_kv_heads", "optim.warmup_steps",
    "batch_size", "seq_len", "steps", "log_every", "checkpoint_every"
}


def _flat(d: dict, prefix: str = ""):
  for k, v in d.items():
    if isinstance(v, dict):
      yield from _flat(v, f"{prefix}{k}.")
    else:
      yield f"{prefix}{k}", v
