"""experiments.bench_torch: the exported model in PyTorch (+ peft) computes what ours does."""

import functools

import jax
import numpy as np
import pytest

from configs import base as base_config
from experiments import bench_step
from lead_jax import paths
from lead_jax.train import build
from lead_jax.train import step as train

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
from experiments import bench_torch  # pylint: disable=wrong-import-position  # noqa: E402

ROWS, LENGTH = 3, 16


def _tiny_config():
  config = base_config.get_config()
  m = config.model
  m.hidden_size, m.intermediate_size, m.num_layers, m.num_heads, m.num_kv_heads = 32, 64, 2, 4, 2
  return config


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """(config, ModelConfig, base, non-zero adapters, HF dir of the same base)."""
  config = _tiny_config()
  directory = str(tmp_path_factory.mktemp("tiny_hf"))
  bench_torch.export_base(config, directory)
  model_config, base = build.load_base(config.model, config.lora, jax.random.key(0))
  lora = bench_torch.random_adapters(model_config, base, jax.random.key(1))
  return config, model_config, base, lora, directory


def test_peft_names_cover_our_adapters(exported):
  _, model_config, base, lora, directory = exported
  model = bench_torch.torch_peft(directory, model_config, base, "eager")
  trainable = {n for n, p in model.named_parameters() if p.requires_grad}
  ours = {
      bench_torch.torch_name(path, layer)
      for path, x in paths.flatten(lora).items()
      for layer in range(x.shape[0])
  }
  assert ours == trainable
  assert bench_torch.lora_module_names(model_config, base) == [
      "down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"
  ]


def test_torch_per_example_losses_equal_ours(exported):
  _, model_config, base, lora, directory = exported
  model = bench_torch.torch_peft(directory, model_config, base, "sdpa")
  bench_torch.copy_adapters(model, lora)
  batch = bench_step._batch(ROWS, LENGTH)  # pylint: disable=protected-access
  score = jax.jit(functools.partial(train.score_step, model_config, ROWS))
  ours_B = np.asarray(score({"params": base, "lora": lora}, batch)["loss_B"])
  base_only_B = np.asarray(score({"params": base}, batch)["loss_B"])
  ref_B = bench_torch.torch_score(model, bench_torch.torch_batch(batch)).numpy()
  assert ours_B.shape == (ROWS,)
  assert np.abs(ours_B - base_only_B).max() > 1e-3, "the adapters should change the losses"
  np.testing.assert_allclose(ours_B, ref_B, atol=1e-5, rtol=0)


def test_bench_model_agrees_and_returns_every_row(exported):
  config, _, _, _, directory = exported
  out = bench_torch.bench_model("t", config, directory, ROWS, LENGTH, reps=0, compiled_memory=False)
  check = out["t_agreement"]  # logits and loss_B with sdpa, per-example grads with eager
  assert check["logits_max_abs"] > 1.0 and check["grads_max_abs"] > 1e-3
  assert check["logits_max_abs_diff"] < 1e-4 and check["loss_max_abs_diff"] < 1e-5
  assert check["grads_max_abs_diff"] < 1e-5 * max(1.0, check["grads_max_abs"])
  rows = ("score", "train_step", "per_example")
  for row in rows:
    for key in (f"t_{row}_ours_over_torch", f"t_peak_mem_{row}_ours_over_torch"):
      assert np.isfinite(out[key]) and out[key] >= 0, key
  assert set(out["t_seconds"]) == {f"{side}_{row}" for side in ("ours", "torch") for row in rows}
  assert all(v > 0 for v in out["t_seconds"].values())
  assert set(out["t_peak_rss_bytes"]) == set(out["t_seconds"])
  assert out["t_score_tokens_per_s"]["ours"] > 0 and out["t_score_tokens_per_s"]["torch"] > 0
  assert out["t_shape"]["batch"] == ROWS and out["t_shape"]["lora_params"] > 0


def test_peak_rss_delta_sees_an_allocation():

  def allocate():
    x = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    return float(x.sum())

  bench_torch.release_freed_memory()
  assert bench_torch.peak_rss_delta(allocate) >= 48 * 2**20
