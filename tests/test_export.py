"""The model export (lead_jax.train.export): merged weights that transformers
loads and PEFT adapters that peft loads, both giving the project's logits."""

import json
import os
import pathlib

import jax
import numpy as np
import pytest
import safetensors.numpy

from lead_jax import paths
from lead_jax.model import decoder as model
from lead_jax.model import lora, peft_format, tokenizer
from lead_jax.train import export

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

LORA = lora.LoraConfig(rank=4, alpha=8.0)  # q, k, v, o, gate, up, down
CONFIG = model.ModelConfig(vocab_size=300, hidden_size=32, intermediate_size=48, num_layers=2,
                           num_heads=4, num_kv_heads=2, head_dim=8, rope_theta=1e5, lora=LORA)
TOKENS_BxL = np.random.RandomState(0).randint(0, 300, (2, 9)).astype(np.int32)


@pytest.fixture(scope="module")
def trained():
  """A random base and adapters with a random, non-zero B (as after training)."""
  base = model.init(CONFIG, jax.random.key(0))
  adapters = paths.flatten(lora.init(LORA, base["params"], jax.random.key(1)))
  rng = np.random.RandomState(2)
  adapters = {
      k: v + (rng.normal(0, 0.3, v.shape).astype(np.float32) if k.endswith("/b") else 0)
      for k, v in adapters.items()
  }
  return {**base, "lora": paths.unflatten(adapters)}


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("export") / "model")
  manifest = export.write(out, CONFIG, trained, tokenizer.byte_level(), base_checkpoint="",
                          meta={"iteration": 3})
  return out, manifest


def _ours(params):
  return np.asarray(jax.jit(lambda p, t: model.forward(CONFIG, p, t))(params, TOKENS_BxL))


def _torch_logits(torch_model):
  with torch.no_grad():
    return torch_model(torch.tensor(TOKENS_BxL, dtype=torch.long)).logits.numpy()


def test_layout_and_manifest(exported):
  out, manifest = exported
  assert sorted(os.listdir(out)) == ["adapter", "base", "export.json", "merged"]
  assert not os.path.exists(out + ".partial") and not os.path.exists(out + ".old")
  for d in ("merged", "base"):
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(os.listdir(f"{out}/{d}"))
  assert manifest["base"] == f"{out}/base" and manifest["base_written"] and manifest[
      "iteration"] == 3
  assert sorted(manifest["files"]["adapter"]) == [
      "adapter_config.json", "adapter_model.safetensors"
  ]
  assert json.loads(pathlib.Path(f"{out}/export.json").read_text()) == manifest


def test_adapter_config_and_names_are_peft_s(exported, trained):
  out, _ = exported
  cfg = json.loads(pathlib.Path(f"{out}/adapter/adapter_config.json").read_text())
  assert (cfg["r"], cfg["lora_alpha"], cfg["peft_type"], cfg["use_rslora"]) == (4, 8.0, "LORA",
                                                                                False)
  assert cfg["target_modules"] == [
      "down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"
  ]
  assert cfg["base_model_name_or_path"] == f"{out}/base"
  tensors = safetensors.numpy.load_file(f"{out}/adapter/adapter_model.safetensors")
  assert len(tensors) == 2 * 2 * 7
  a = tensors["base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"]
  b = tensors["base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"]
  np.testing.assert_array_equal(a,
                                np.asarray(trained["lora"]["layers"]["attn"]["q_proj"]["a"][1]).T)
  assert a.shape == (4, 32) and b.shape == (32, 4)  # [r, in], [out, r]


def test_merged_export_gives_the_project_s_logits(exported, trained):
  out, _ = exported
  hf_model = transformers.AutoModelForCausalLM.from_pretrained(f"{out}/merged",
                                                               attn_implementation="eager").eval()
  ours = _ours(trained)
  assert np.abs(ours - _ours({"params": trained["params"]})).max() > 1e-2  # the adapters matter
  np.testing.assert_allclose(_torch_logits(hf_model), ours, atol=1e-4, rtol=0)


def test_peft_adapters_give_the_merged_logits(exported):
  peft = pytest.importorskip("peft")
  out, _ = exported
  merged = transformers.AutoModelForCausalLM.from_pretrained(f"{out}/merged",
                                                             attn_implementation="eager").eval()
  base = transformers.AutoModelForCausalLM.from_pretrained(f"{out}/base",
                                                           attn_implementation="eager")
  adapted = peft.PeftModel.from_pretrained(base, f"{out}/adapter").eval()
  np.testing.assert_allclose(_torch_logits(adapted), _torch_logits(merged), atol=1e-4, rtol=0)


def test_an_hf_base_is_referenced_not_copied(trained, tmp_path):
  from lead_jax.model import hf
  hf.save_checkpoint(str(tmp_path / "base"), CONFIG, {"params": trained["params"]})
  manifest = export.write(
      str(tmp_path / "out"), CONFIG, trained, base_checkpoint=str(tmp_path / "base"))
  assert manifest["base"] == str(tmp_path / "base") and not manifest["base_written"]
  assert sorted(os.listdir(tmp_path / "out")) == ["adapter", "export.json", "merged"]
  cfg = json.loads(pathlib.Path(tmp_path / "out" / "adapter" / peft_format.CONFIG_FILE).read_text())
  assert cfg["base_model_name_or_path"] == str(tmp_path / "base")


def test_an_export_replaces_an_export_and_nothing_else(trained, tmp_path):
  (tmp_path / "notes").mkdir()
  (tmp_path / "notes" / "keep.txt").write_text("mine")
  with pytest.raises(ValueError, match="no export.json"):
    export.write(str(tmp_path / "notes"), CONFIG, trained)
  assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
  out = str(tmp_path / "out")
  export.write(out, CONFIG, trained, meta={"iteration": 1})
  export.write(out, CONFIG, trained, meta={"iteration": 2})
  assert json.loads(pathlib.Path(f"{out}/export.json").read_text())["iteration"] == 2
  assert sorted(os.listdir(tmp_path)) == ["notes", "out"]
  with pytest.raises(ValueError, match="no `lora`"):
    export.write(out, CONFIG, {"params": trained["params"]})


def test_export_model_wants_a_workdir_and_a_free_directory(tmp_path):
  from experiments import export_model
  from lead_jax.data import DataError
  with pytest.raises(DataError, match="not a LEAD workdir .*; pass the workdir of a run"):
    export_model.export_workdir(str(tmp_path), str(tmp_path / "out"))
  (tmp_path / "checkpoints").mkdir()
  (tmp_path / "config.json").write_text("{}")
  with pytest.raises(DataError, match="holds files but no export.json"):
    export_model.export_workdir(str(tmp_path), str(tmp_path))
