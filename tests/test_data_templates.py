"""The one chat template: tulu text, per-turn loss masks, IFD view, evaluation prompts."""

import numpy as np
import pytest

from lead_jax.model import tokenizer as tokenizer_lib
from lead_jax.data import templates
from lead_jax.data.errors import DataError

CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\nYou are helpful.<|im_end|>\n' }}{% endif %}"
          "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
MULTI = [("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!"), ("user", "Bye"),
         ("assistant", "See you.")]


@pytest.fixture(scope="module")
def byte_tok():
  return tokenizer_lib.byte_level()


@pytest.fixture(scope="module")
def chatml_tok(tmp_path_factory):
  tok = tokenizer_lib.byte_level()
  tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
  tok.chat_template = CHATML
  path = tmp_path_factory.mktemp("chatml")
  tok.save_pretrained(str(path))  # load it back as a user's local tokenizer dir would be
  return tokenizer_lib.load(str(path))


def decode(tok, ids):
  return tok.decode(list(ids), skip_special_tokens=False)


def test_tulu_is_used_without_own_template(byte_tok):
  template = templates.resolve(byte_tok)
  assert template.name == "tulu"
  segs = templates.segments(template, byte_tok, [("user", "2+2?"), ("assistant", "4")])
  assert "".join(t for t, _ in segs) == "<|user|>\n2+2?\n<|assistant|>\n4<|endoftext|>"


def test_tulu_multi_turn_masks_every_assistant_turn(byte_tok):
  template = templates.resolve(byte_tok)
  ids, kinds = templates.encode(template, byte_tok, MULTI)
  kinds = np.array(kinds)
  assert decode(byte_tok, ids) == ("<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\n"
                                   "Hello!<|endoftext|>\n<|user|>\nBye\n<|assistant|>\n"
                                   "See you.<|endoftext|>")
  target = np.array(ids)[kinds == templates.RESPONSE]
  assert decode(byte_tok, target) == "Hello!<|endoftext|>See you.<|endoftext|>"
  view = np.array(ids)[kinds != templates.CONTEXT]
  assert decode(byte_tok, view) == ("<|assistant|>\nHello!<|endoftext|><|assistant|>\n"
                                    "See you.<|endoftext|>")


def test_own_template_is_used_and_masks_per_turn(chatml_tok):
  template = templates.resolve(chatml_tok)
  assert template.name == "tokenizer"
  ids, kinds = templates.encode(template, chatml_tok, MULTI[1:])
  kinds = np.array(kinds)
  text = decode(chatml_tok, ids)
  assert text == chatml_tok.apply_chat_template([{"role": r, "content": c} for r, c in MULTI[1:]],
                                                tokenize=False)
  target = decode(chatml_tok, np.array(ids)[kinds == templates.RESPONSE])
  assert target == "Hello!<|im_end|>\nSee you.<|im_end|>\n"
  view = decode(chatml_tok, np.array(ids)[kinds != templates.CONTEXT])
  assert view == ("<|im_start|>assistant\nHello!<|im_end|>\n"
                  "<|im_start|>assistant\nSee you.<|im_end|>\n")  # no default system prompt
  assert templates.resolve(chatml_tok, "tulu").name == "tulu"


@pytest.mark.parametrize("which", ["byte", "chatml"])
def test_prompt_tokens_equal_training_prefix(which, byte_tok, chatml_tok):
  tok = byte_tok if which == "byte" else chatml_tok
  template = templates.resolve(tok)
  ids, kinds = templates.encode(template, tok, MULTI)
  last_response = max(i for i, k in enumerate(kinds)
                      if k == templates.RESPONSE and kinds[i - 1] == templates.HEADER)
  prompt = templates.encode_prompt(template, tok, MULTI[:-1])
  assert prompt == ids[:last_response]
  assert templates.prompt_text(template, tok, MULTI[:-1]) == decode(tok, prompt)


def test_stop_tokens_and_response_text(byte_tok, chatml_tok):
  for tok, eot in ((byte_tok, "<|endoftext|>"), (chatml_tok, "<|im_end|>")):
    template = templates.resolve(tok)
    assert templates.end_of_turn(template, tok) == eot
    assert tok.convert_tokens_to_ids(eot) in templates.stop_token_ids(template, tok)
    generated = tok(f" 42 {eot}\nrest", add_special_tokens=False)["input_ids"]
    assert templates.response_text(template, tok, generated) == "42"


def test_prompt_needs_a_final_user_turn(byte_tok):
  with pytest.raises(ValueError, match="end with a user turn"):
    templates.encode_prompt(templates.resolve(byte_tok), byte_tok, MULTI)


def test_unstable_template_raises(byte_tok):
  tok = tokenizer_lib.byte_level()
  # Drops earlier assistant turns when rendering: not prefix-stable.
  tok.chat_template = ("{% for m in messages %}{% if m['role'] != 'assistant' or loop.last %}"
                       "{{ m['role'] + ': ' + m['content'] + '\n' }}{% endif %}{% endfor %}"
                       "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}")
  with pytest.raises(DataError, match="data.template=tulu"):
    templates.encode(templates.resolve(tok), tok, MULTI)
  assert templates.encode(templates.resolve(tok, "tulu"), tok, MULTI)[0]


def test_unknown_template_name(byte_tok):
  with pytest.raises(DataError, match="data.template='chatml'"):
    templates.resolve(byte_tok, "chatml")
