"""Tokenizers: any local Hugging Face tokenizer directory, or the built-in
byte-level tokenizer used by the tiny configs and the tests.

The byte-level tokenizer maps every UTF-8 byte to one token (ids 0-255) and
adds the tulu chat markers and control tokens as single special tokens. It is
built by code, so it is deterministic and never downloaded. It has no chat
template of its own, so the project's tulu template applies to it.
"""

from __future__ import annotations

import os

import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

BYTE_LEVEL = "byte_level"  # config value naming the built-in tokenizer
SPECIAL_TOKENS = ("<|endoftext|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>")


def byte_level() -> transformers.PreTrainedTokenizerFast:
  alphabet = pre_tokenizers.ByteLevel.alphabet()
  # ByteLevel's alphabet maps bytes to printable characters; order by byte value.
  byte_chars = sorted(alphabet, key=lambda ch: _BYTE_OF[ch])
  vocab = {ch: i for i, ch in enumerate(byte_chars)}
  tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
  tok.decoder = decoders.ByteLevel()
  fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                              pad_token="<|pad|>",
                                              additional_special_tokens=list(SPECIAL_TOKENS[2:]))
  fast.model_max_length = 1 << 30
  return fast


def _byte_map() -> dict[str, int]:
  # GPT-2's reversible byte <-> unicode table, the one ByteLevel uses.
  printable = (
      list(range(ord("!"),
                 ord("~") + 1)) + list(range(ord("¡"),
                                             ord("¬") + 1)) + list(range(ord("®"),
                                                                         ord("ÿ") + 1)))
  chars, n = list(printable), 0
  for b in range(256):
    if b not in printable:
      printable.append(b)
      chars.append(256 + n)
      n += 1
  return {chr(c): b for b, c in zip(printable, chars)}


_BYTE_OF = _byte_map()


def load(path: str) -> transformers.PreTrainedTokenizerBase:
  """`byte_level`, or a local directory holding a Hugging Face tokenizer."""
  if path == BYTE_LEVEL:
    return byte_level()
  if not os.path.isdir(path):
    raise FileNotFoundError(
        f"tokenizer {path!r}: not a directory. Pass a local Hugging Face tokenizer "
        f"directory (tokenizer.json / tokenizer_config.json) or {BYTE_LEVEL!r}; hub "
        "names are not fetched.")
  return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
