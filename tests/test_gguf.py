"""GGUF import: a tiny llama GGUF written here (permuted Q/K, a Q8_0 tensor, BPE
vocabulary) is imported back and compared with the weights it was written from."""

import os

import gguf
import jax
import numpy as np
import pytest
from tokenizers import pre_tokenizers

from lead_jax import paths
from lead_jax.model import gguf_import
from lead_jax.model import gguf_tokenizer
from lead_jax.model import hf
from lead_jax.model import decoder as model
from lead_jax.model import tokenizer

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "1 2"]
BYTES = sorted(pre_tokenizers.ByteLevel.alphabet())
TOKENS = SPECIALS + BYTES + [m.replace(" ", "") for m in MERGES]
TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
            "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CONFIG = model.ModelConfig(
    vocab_size=len(TOKENS), hidden_size=64, intermediate_size=96, num_layers=2, num_heads=4,
    num_kv_heads=2, head_dim=16, rope_theta=1e5, rms_norm_eps=1e-5, max_position_embeddings=128,
    bos_token_id=1, eos_token_ids=(2,))
# GGUF name (after `blk.{i}.` for layers) -> our path; Q and K get llama.cpp's permutation.
NAMES = {
    "attn_q.weight": "attn/q_proj/kernel", "attn_k.weight": "attn/k_proj/kernel",
    "attn_v.weight": "attn/v_proj/kernel", "attn_output.weight": "attn/o_proj/kernel",
    "ffn_gate.weight": "mlp/gate_proj/kernel", "ffn_up.weight": "mlp/up_proj/kernel",
    "ffn_down.weight": "mlp/down_proj/kernel", "attn_norm.weight": "attn_norm/scale",
    "ffn_norm.weight": "mlp_norm/scale"
}
QUANTIZED = "ffn_up.weight"  # stored as Q8_0


def llama_cpp_permute(w_OxI, n_heads):
  """What llama.cpp's converter does to Q and K rows (reference for the test)."""
  return (w_OxI.reshape(n_heads, 2, w_OxI.shape[0] // n_heads // 2,
                        *w_OxI.shape[1:]).swapaxes(1, 2).reshape(w_OxI.shape))


def _gguf_tensors(flat):
  """{GGUF name: (array in GGUF row layout, quantization or None)}."""
  out = {
      "token_embd.weight": (flat["embed/embedding"], None),
      "output_norm.weight": (flat["final_norm/scale"], None)
  }
  if "lm_head/kernel" in flat:
    out["output.weight"] = (flat["lm_head/kernel"].T, None)
  for i in range(CONFIG.num_layers):
    for name, path in NAMES.items():
      x = flat[f"layers/{path}"][i]
      x = x.T if path.endswith("kernel") else x
      if name in ("attn_q.weight", "attn_k.weight"):
        x = llama_cpp_permute(x, CONFIG.num_heads if "q" in name else CONFIG.num_kv_heads)
      out[f"blk.{i}.{name}"] = (x, gguf.GGMLQuantizationType.Q8_0 if name == QUANTIZED else None)
  return out


def write_gguf(path, flat=None, arch="llama", pre="smollm", add_bos=False, extra_tensor=None,
               drop=None):
  writer = gguf.GGUFWriter(str(path), arch)
  writer.add_block_count(CONFIG.num_layers)
  writer.add_context_length(CONFIG.max_position_embeddings)
  writer.add_embedding_length(CONFIG.hidden_size)
  writer.add_feed_forward_length(CONFIG.intermediate_size)
  writer.add_head_count(CONFIG.num_heads)
  writer.add_head_count_kv(CONFIG.num_kv_heads)
  writer.add_rope_freq_base(CONFIG.rope_theta)
  writer.add_layer_norm_rms_eps(CONFIG.rms_norm_eps)
  writer.add_rope_dimension_count(CONFIG.head_dim)
  writer.add_tokenizer_model("gpt2")
  writer.add_tokenizer_pre(pre)
  writer.add_token_list(TOKENS)
  writer.add_token_types([3] * len(SPECIALS) + [1] * (len(TOKENS) - len(SPECIALS)))
  writer.add_token_merges(MERGES)
  writer.add_bos_token_id(1)
  writer.add_eos_token_id(2)
  writer.add_pad_token_id(0)
  writer.add_add_bos_token(add_bos)
  writer.add_chat_template(TEMPLATE)
  tensors = _gguf_tensors(flat) if flat is not None else {}
  if extra_tensor:
    tensors[extra_tensor] = (np.zeros(4, np.float32), None)
  tensors.pop(drop, None)
  for name, (x, qtype) in tensors.items():
    x = np.asarray(x, np.float32)
    if qtype is None:
      writer.add_tensor(name, x)
    else:
      writer.add_tensor(name, gguf.quants.quantize(x, qtype), raw_dtype=qtype)
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  return str(path)


@pytest.fixture(scope="module")
def source():
  """Random weights with O(1) norms, flattened, as NumPy."""
  params = model.init(CONFIG, jax.random.key(0))["params"]
  rng = np.random.RandomState(0)
  return {
      p:
          np.asarray(x) +
          rng.normal(0, 0.3 if p.endswith("scale") else 0.05, x.shape).astype(np.float32)
      for p, x in paths.flatten(params).items()
  }


@pytest.fixture(scope="module")
def gguf_file(source, tmp_path_factory):
  return write_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", source)


@pytest.fixture(scope="module")
def imported(gguf_file):
  return gguf_import.load(gguf_file)


@pytest.fixture(scope="module")
def forward_fn():
  return jax.jit(lambda p, t: model.forward(CONFIG, p, t))


def test_weights_match_the_source(source, imported):
  config, params, _ = imported
  assert config == CONFIG
  flat = paths.flatten(params["params"])
  assert flat.keys() == source.keys()
  for path, x in source.items():
    if path == "layers/mlp/up_proj/kernel":  # Q8_0: within quantization error
      np.testing.assert_allclose(flat[path], x, atol=np.abs(x).max() / 100)
      assert not np.array_equal(flat[path], x)
    else:  # F32: exact, so the Q/K permutation was undone row for row
      np.testing.assert_array_equal(flat[path], x, err_msg=path)


def test_forward_matches_the_source_model(source, imported, forward_fn):
  _, params, _ = imported
  tokens_BxL = np.random.RandomState(1).randint(0, CONFIG.vocab_size, (2, 12)).astype(np.int32)
  ref = np.asarray(forward_fn({"params": paths.unflatten(source)}, tokens_BxL))
  ours = np.asarray(forward_fn(params, tokens_BxL))
  np.testing.assert_allclose(ours, ref, atol=0.02 * np.abs(ref).max())
  # Without undoing the permutation the model is a different one.
  flat = dict(paths.flatten(params["params"]))
  for path, heads in (("layers/attn/q_proj/kernel", 4), ("layers/attn/k_proj/kernel", 2)):
    flat[path] = np.stack([llama_cpp_permute(k.T, heads).T for k in np.asarray(flat[path])])
  permuted = np.asarray(forward_fn({"params": paths.unflatten(flat)}, tokens_BxL))
  assert np.abs(permuted - ref).max() > 10 * np.abs(ours - ref).max()


def test_tokenizer_from_metadata(imported):
  tok = imported[2]
  ids = tok("hello world").input_ids
  assert tok.convert_ids_to_tokens(ids) == ["hello", "Ġw", "or", "l", "d"]
  # "smollm" splits digits one by one, so the "12" merge never applies.
  assert tok.convert_ids_to_tokens(tok("x 123").input_ids) == ["x", "Ġ", "1", "2", "3"]
  assert tok("<|im_start|>hi<|im_end|>").input_ids[::3] == [1, 2]
  assert (tok.bos_token, tok.eos_token, tok.pad_token) == tuple(SPECIALS[i] for i in (1, 2, 0))
  text = "Ünïcödé 🤗 tabs\t and  spaces\n"
  assert tok.decode(tok(text).input_ids) == text
  chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                 add_generation_prompt=True)
  assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_pre_tokenizer_and_bos_options(tmp_path):
  reader = gguf.GGUFReader(write_gguf(tmp_path / "t.gguf", pre="gpt2", add_bos=True))
  tok = gguf_tokenizer.build_tokenizer(reader)
  assert tok.convert_ids_to_tokens(tok("x 123").input_ids) == ["<|im_start|>", "x", "Ġ", "12", "3"]


def test_convert_writes_a_checkpoint_directory(gguf_file, imported, tmp_path):
  out = gguf_import.convert(gguf_file, str(tmp_path / "ckpt"))
  config, params = hf.load_checkpoint(out)
  assert config == CONFIG
  for path, x in paths.flatten(imported[1]).items():
    np.testing.assert_array_equal(paths.flatten(params)[path], x, err_msg=path)
  tok = tokenizer.load(out)
  assert tok("hello world").input_ids == imported[2]("hello world").input_ids
  assert tok.eos_token == "<|im_end|>" and tok.chat_template == TEMPLATE


def test_tied_output_and_errors(source, tmp_path):
  untied_only = {k: v for k, v in source.items() if k != "lm_head/kernel"}
  reader = gguf.GGUFReader(write_gguf(tmp_path / "tied.gguf", untied_only))
  assert gguf_import.read_config(reader).tie_embeddings
  with pytest.raises(gguf_import.GgufError, match="architecture 'gpt2'"):
    gguf_import.load(write_gguf(tmp_path / "a.gguf", arch="gpt2"))
  with pytest.raises(gguf_import.GgufError, match="rope_freqs"):
    gguf_import.load(write_gguf(tmp_path / "r.gguf", source, extra_tensor="rope_freqs.weight"))
  with pytest.raises(gguf_import.GgufError, match="unexpected tensor 'blk.0.attn_q.bias'"):
    gguf_import.load(write_gguf(tmp_path / "b.gguf", source, extra_tensor="blk.0.attn_q.bias"))
  with pytest.raises(gguf_import.GgufError, match=r"missing tensor for layers/attn/q_proj"
                     r"/kernel \(layer 1\)"):
    gguf_import.load(write_gguf(tmp_path / "m.gguf", source, drop="blk.1.attn_q.weight"))
  with pytest.raises(gguf_import.GgufError, match="pre-tokenizer 'falcon'"):
    gguf_tokenizer.build_tokenizer(gguf.GGUFReader(write_gguf(tmp_path / "p.gguf", pre="falcon")))


REAL_GGUF = os.environ.get("LEAD_SMOLLM2_GGUF", "")


@pytest.mark.skipif(not os.path.isfile(REAL_GGUF),
                    reason="set LEAD_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf to run")
def test_real_smollm2_answers(tmp_path):
  out = gguf_import.convert(REAL_GGUF, str(tmp_path / "smollm2"))
  config, params = hf.load_checkpoint(out)
  tok = tokenizer.load(out)
  ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                add_generation_prompt=True, tokenize=False)
  ids = tok(ids).input_ids
  fwd = jax.jit(lambda p, t, m: model.forward(config, p, t, m))
  tokens = np.zeros((1, len(ids) + 12), np.int32)
  tokens[0, :len(ids)] = ids
  for n in range(len(ids), tokens.shape[1]):  # greedy, full forward each step
    logits = fwd(params, tokens, np.arange(tokens.shape[1])[None] < n)
    tokens[0, n] = int(np.argmax(logits[0, n - 1]))
  assert "Paris" in tok.decode(tokens[0, len(ids):])
