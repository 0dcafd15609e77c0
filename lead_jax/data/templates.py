"""The one chat template, used for training, IFD scoring and evaluation.

Rule: the tokenizer's own chat template when it has one, else the tulu template
    <|system|>\\n{system}\\n<|user|>\\n{prompt}\\n<|assistant|>\\n{response}{eos}
(a non-final assistant turn is followed by "\\n" before the next turn).
`data.template="tulu"` forces tulu even when the tokenizer has a template.

A rendered conversation is a list of segments `(text, kind)`:
  CONTEXT   system and user turns, and template text between turns
  HEADER    the text that opens an assistant turn ("<|assistant|>\\n" for tulu)
  RESPONSE  the assistant's content and its end-of-turn text (eos for tulu)
Each segment is tokenised on its own (no special tokens added), so the prompt
tokens seen in training are exactly the prompt tokens given at evaluation and
the loss mask boundary is exact. The loss mask is True on RESPONSE tokens of
every assistant turn. The IFD response-only view keeps HEADER + RESPONSE
segments and drops CONTEXT: the assistant header plus the response, no prompt.

For a tokenizer's own (Jinja) template the segments are found by rendering
prefixes of the conversation; a template whose prefixes are not prefixes of
the full rendering (e.g. one that rewrites earlier turns) raises DataError
asking for `data.template="tulu"`.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from lead_jax import artifacts
from lead_jax.data.errors import DataError

CONTEXT, HEADER, RESPONSE = 0, 1, 2
TEMPLATES = ("auto", "tulu")
Messages = Sequence[tuple[str, str]]  # (role, content) pairs


@dataclasses.dataclass(frozen=True)
class Template:
  name: str  # "tulu" or "tokenizer"
  eos: str  # appended to every tulu response
  source: str  # the Jinja source for "tokenizer", "" for tulu

  @property
  def fingerprint(self) -> str:
    """The template's key (`lead_jax.artifacts.fingerprint`; part of the pool cache's)."""
    return artifacts.fingerprint({"name": self.name, "eos": self.eos, "source": self.source})


def resolve(tokenizer, name: str = "auto") -> Template:
  """The template for `tokenizer`: its own chat template if any (name auto), else tulu."""
  if name not in TEMPLATES:
    raise DataError(f"data.template={name!r} is unknown; use 'auto' or 'tulu'")
  own = getattr(tokenizer, "chat_template", None)
  if name == "auto" and isinstance(own, str) and own:
    return Template("tokenizer", tokenizer.eos_token or "", own)
  if not tokenizer.eos_token:
    raise DataError("the tokenizer has no eos token, which the tulu template needs; "
                    "use a tokenizer with an eos token or a chat template")
  return Template("tulu", tokenizer.eos_token, "")


def segments(template: Template, tokenizer, messages: Messages) -> list[tuple[str, int]]:
  """The conversation as (text, kind) segments; concatenated, the rendered text."""
  if template.name == "tulu":
    return _tulu_segments(template.eos, messages)
  return _jinja_segments(tokenizer, messages)


def prompt_segments(template: Template, tokenizer, messages: Messages) -> list[tuple[str, int]]:
  """Segments of `messages` (ending with a user turn) plus the next assistant header."""
  if not messages or messages[-1][0] == "assistant":
    raise ValueError("a generation prompt needs messages that end with a user turn")
  if template.name == "tulu":
    return _tulu_segments(template.eos, messages) + [("<|assistant|>\n", HEADER)]
  body = _render(tokenizer, messages, False)
  with_header = _render(tokenizer, messages, True)
  if not with_header.startswith(body):
    raise _unstable(len(messages))
  return _jinja_segments(tokenizer, messages) + [(with_header[len(body):], HEADER)]


def encode(template: Template, tokenizer, messages: Messages):
  """Token ids and per-token kinds (CONTEXT/HEADER/RESPONSE) of one conversation.

  loss mask = kinds == RESPONSE; response-only view = kinds != CONTEXT. For
  many conversations use `encode_segments` with one batched tokenizer call.
  """
  segs = segments(template, tokenizer, messages)
  return join(segs, tokenize(tokenizer, [t for t, _ in segs]))


def encode_prompt(template: Template, tokenizer, messages: Messages) -> list[int]:
  """Token ids of the generation prompt for evaluation.

  `messages` is the conversation so far, as (role, content) pairs ending with a
  user turn (few-shot examples may be earlier user/assistant turns or inlined
  in the user text). The result ends with the assistant header, tokenised
  exactly as in training, so the model's next token starts the response.
  Generation should stop at `stop_token_ids`; `response_text` cuts the
  decoded continuation at the end of the turn.
  """
  segs = prompt_segments(template, tokenizer, messages)
  ids, _ = join(segs, tokenize(tokenizer, [t for t, _ in segs]))
  return ids


def prompt_text(template: Template, tokenizer, messages: Messages) -> str:
  """The generation prompt as text (see `encode_prompt`, which evaluators should prefer)."""
  return "".join(t for t, _ in prompt_segments(template, tokenizer, messages))


def end_of_turn(template: Template, tokenizer) -> str:
  """The text a template puts after an assistant's content (eos for tulu)."""
  if template.name == "tulu":
    return template.eos
  probe = "\x00probe\x00"
  segs = _jinja_segments(tokenizer, [("user", "q"), ("assistant", probe)])
  response = next(t for t, k in segs if k == RESPONSE)
  return response.split(probe, 1)[1].rstrip() or (tokenizer.eos_token or "")


def stop_token_ids(template: Template, tokenizer) -> list[int]:
  """Token ids that end generation: eos and the template's end-of-turn token."""
  ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
  eot = tokenize(tokenizer, [end_of_turn(template, tokenizer)])[0]
  if eot:
    ids.add(eot[0])
  return sorted(ids)


def response_text(template: Template, tokenizer, generated_ids: Sequence[int]) -> str:
  """Decoded continuation cut at the end of the turn, surrounding whitespace removed."""
  text = tokenizer.decode(list(generated_ids), skip_special_tokens=False)
  for stop in (end_of_turn(template, tokenizer), tokenizer.eos_token):
    if stop and stop in text:
      text = text.split(stop, 1)[0]
  return text.strip()


def tokenize(tokenizer, texts: list[str]) -> list[list[int]]:
  """Batched tokenisation without added special tokens (fast tokenizer when present)."""
  backend = getattr(tokenizer, "backend_tokenizer", None)
  if backend is not None:
    return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
  return tokenizer(texts, add_special_tokens=False)["input_ids"]


def join(segs: list[tuple[str, int]], ids: list[list[int]]) -> tuple[list[int], list[int]]:
  """Concatenated ids and per-token kinds of tokenised segments."""
  out, kinds = [], []
  for (_, kind), seg_ids in zip(segs, ids):
    out.extend(seg_ids)
    kinds.extend([kind] * len(seg_ids))
  return out, kinds


def _tulu_segments(eos: str, messages: Messages) -> list[tuple[str, int]]:
  segs, context = [], ""
  for j, (role, content) in enumerate(messages):
    if role == "assistant":
      segs += [(context, CONTEXT), ("<|assistant|>\n", HEADER), (content + eos, RESPONSE)]
      context = "\n" if j + 1 < len(messages) else ""
    else:
      context += f"<|{role}|>\n{content}\n"
  if context:
    segs.append((context, CONTEXT))
  return [s for s in segs if s[0]]


def _render(tokenizer, messages: Messages, generation: bool) -> str:
  if not messages:
    return ""
  return tokenizer.apply_chat_template([{"role": r, "content": c} for r, c in messages],
                                       tokenize=False, add_generation_prompt=generation)


def _jinja_segments(tokenizer, messages: Messages) -> list[tuple[str, int]]:
  full = _render(tokenizer, messages, False)
  segs, pos = [], 0
  for k, (role, _) in enumerate(messages):
    if role != "assistant":
      continue
    start, head_end = len(_render(tokenizer, messages[:k],
                                  False)), _render(tokenizer, messages[:k], True)
    end = full if k + 1 == len(messages) else _render(tokenizer, messages[:k + 1], False)
    if not (full.startswith(head_end) and full.startswith(end) and pos <= start and
            start <= len(head_end) <= len(end)):
      raise _unstable(k)
    segs += [(full[pos:start], CONTEXT), (full[start:len(head_end)], HEADER),
             (full[len(head_end):len(end)], RESPONSE)]
    pos = len(end)
  segs.append((full[pos:], CONTEXT))
  return [s for s in segs if s[0]]


def _unstable(turn: int) -> DataError:
  return DataError(f"the tokenizer's chat template renders turn {turn} differently inside "
                   "and at the end of a conversation, so loss masks cannot be placed; "
                   "set data.template=tulu")
