"""A Hugging Face fast tokenizer rebuilt from a GGUF file's tokenizer metadata.

GGUF files made by llama.cpp from GPT-2 style byte-level BPE tokenizers store
the vocabulary (`tokenizer.ggml.tokens`, already in the byte-to-unicode
alphabet), the merges ("a b" strings in priority order), a type per token
(control tokens are the special ones), the special ids, whether to add BOS,
the pre-tokenizer name and the chat template. That is everything a
`tokenizers` BPE model needs, so the result tokenizes exactly as the original.
"""

from __future__ import annotations

import gguf
import transformers
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

# llama.cpp pre-tokenizer names -> the equivalent `tokenizers` pre-tokenizer.
# "smollm" splits every digit off before the GPT-2 regex (SmolLM, SmolLM2).
_PRE_TOKENIZERS = {
    "default":
        lambda: pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    "gpt2":
        lambda: pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    "smollm":
        lambda: pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        ]),
}
_REQUIRED = object()
_CONTROL, _USER_DEFINED = (int(gguf.TokenType.CONTROL), int(gguf.TokenType.USER_DEFINED))


class GgufError(ValueError):
  """A GGUF file this project cannot reproduce faithfully."""


def file_name(reader: gguf.GGUFReader) -> str:
  return str(getattr(reader.data, "filename", "GGUF file"))


def field(reader: gguf.GGUFReader, key: str, default=_REQUIRED):
  """Metadata value `key` (arrays as lists); raises when absent without default."""
  f = reader.fields.get(key)
  if f is None:
    if default is _REQUIRED:
      raise GgufError(f"{file_name(reader)}: missing metadata {key!r}")
    return default
  return f.contents()


def _bpe_model(reader: gguf.GGUFReader) -> Tokenizer:
  kind = field(reader, "tokenizer.ggml.model")
  if kind != "gpt2":
    raise GgufError(f"{file_name(reader)}: tokenizer model {kind!r}; only GPT-2 style "
                    "byte-level BPE ('gpt2') is supported")
  pre = field(reader, "tokenizer.ggml.pre", "default")
  if pre not in _PRE_TOKENIZERS:
    raise GgufError(f"{file_name(reader)}: pre-tokenizer {pre!r} is not supported; "
                    f"supported: {sorted(_PRE_TOKENIZERS)}")
  tokens = field(reader, "tokenizer.ggml.tokens")
  merges = [tuple(m.split(" ", 1)) for m in field(reader, "tokenizer.ggml.merges", [])]
  vocab = {tok: i for i, tok in enumerate(tokens)}
  if len(vocab) != len(tokens):
    raise GgufError(f"{file_name(reader)}: the vocabulary has duplicate tokens")
  tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
  tok.pre_tokenizer = _PRE_TOKENIZERS[pre]()
  tok.decoder = decoders.ByteLevel()
  return tok


def _add_special_tokens(reader: gguf.GGUFReader, tok: Tokenizer) -> None:
  tokens = field(reader, "tokenizer.ggml.tokens")
  types = field(reader, "tokenizer.ggml.token_type", [])
  added = [
      AddedToken(tokens[i], special=t == _CONTROL, normalized=False)
      for i, t in enumerate(types)
      if t in (_CONTROL, _USER_DEFINED)
  ]
  tok.add_tokens(added)  # already in the vocabulary: ids are kept


def _post_processor(reader: gguf.GGUFReader, bos: str | None, eos: str | None):
  add_bos = bool(field(reader, "tokenizer.ggml.add_bos_token", False)) and bos
  add_eos = bool(field(reader, "tokenizer.ggml.add_eos_token", False)) and eos
  steps = [processors.ByteLevel(trim_offsets=False)]
  if add_bos or add_eos:
    ids = field(reader, "tokenizer.ggml.tokens")
    pre, post = ([bos] if add_bos else []), ([eos] if add_eos else [])
    specials = [(t, ids.index(t)) for t in pre + post]
    steps.append(
        processors.TemplateProcessing(single=pre + ["$A"] + post,
                                      pair=pre + ["$A"] + post + pre + ["$B:1"] + post,
                                      special_tokens=specials))
  return processors.Sequence(steps)


def build_tokenizer(reader: gguf.GGUFReader) -> transformers.PreTrainedTokenizerFast:
  """The GGUF file's tokenizer, with its special tokens and chat template."""
  tok = _bpe_model(reader)
  _add_special_tokens(reader, tok)
  tokens = field(reader, "tokenizer.ggml.tokens")
  special = {}
  for name in ("bos", "eos", "unknown", "padding"):
    i = field(reader, f"tokenizer.ggml.{name}_token_id", None)
    special[name] = None if i is None else tokens[int(i)]
  tok.post_processor = _post_processor(reader, special["bos"], special["eos"])
  fast = transformers.PreTrainedTokenizerFast(
      tokenizer_object=tok, bos_token=special["bos"], eos_token=special["eos"],
      unk_token=special["unknown"], pad_token=special["padding"],
      clean_up_tokenization_spaces=False)
  context = field(reader, f"{field(reader, 'general.architecture')}.context_length", None)
  fast.model_max_length = int(context) if context else 1 << 30
  template = field(reader, "tokenizer.chat_template", None)
  if template:
    fast.chat_template = template
  return fast
