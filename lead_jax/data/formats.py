"""Pool file readers and validation: every supported format becomes `Record`s.

Formats (`data.format`):
  messages  open-instruct / tulu JSONL: {"dataset", "id", "messages": [{role, content}]}
  alpaca    JSON array or JSONL of {"instruction", "input"?, "output"}
  sharegpt  JSON array or JSONL of {"id"?, "conversations": [{from, value}]}
  auto      by the first record's keys (`messages`, `conversations`, `instruction`)
A JSON file whose first character is `[` is read as an array, element by
element, so a truncated file keeps its complete records; anything else is JSONL.

Bad input never passes silently. With `on_error="raise"` the first problem
raises `DataError` with one line, `file:line (JSON path): what; what to do`.
With `on_error="skip"` the record is dropped and returned as a `Reject`.
Problems with the file itself (missing, a directory, empty, unrecoverable JSON
array) raise in both modes.
"""

from __future__ import annotations

import dataclasses
import os

from lead_jax.data import jsonio
from lead_jax.data.errors import DataError, Problem

FORMATS = ("auto", "messages", "alpaca", "sharegpt")
ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
    "system": "system"
}


@dataclasses.dataclass(frozen=True)
class Record:
  """One validated sample: messages are (role, content) pairs."""
  id: str
  task: str
  messages: tuple[tuple[str, str], ...]
  where: str  # file:line, for error messages further down the pipeline


@dataclasses.dataclass(frozen=True)
class Reject:
  where: str
  reason: str  # short code, counted in reports
  message: str  # the full one-line error


@dataclasses.dataclass(frozen=True)
class ReadResult:
  records: tuple[Record, ...]
  rejects: tuple[Reject, ...]


def check_file(path: str) -> None:
  """Raises DataError unless `path` is a readable, non-empty file."""
  if not os.path.exists(path):
    raise DataError(f"{path}: file not found; check the path (data.train_path, "
                    "data.test_path or data.dev_path)")
  if os.path.isdir(path):
    raise DataError(f"{path}: is a directory, not a file; pass the pool file inside "
                    "it (or prepare it with experiments.prepare_pool and use format=tfds)")
  if os.path.getsize(path) == 0:
    raise DataError(f"{path}: file is empty; point to a file with at least one record")


def read(path: str, fmt: str = "auto", task_name: str = "", on_error: str = "raise",
         max_record_bytes: int = 1 << 22) -> ReadResult:
  """Reads and validates a pool file. See the module docstring."""
  if fmt not in FORMATS:
    raise DataError(f"data.format={fmt!r} is unknown; use one of {', '.join(FORMATS)} "
                    "(or tfds for a prepared directory)")
  if on_error not in ("raise", "skip"):
    raise DataError(f"data.on_error={on_error!r} is unknown; use 'raise' or 'skip'")
  check_file(path)
  default_task = task_name or os.path.splitext(os.path.basename(path))[0]
  records, rejects, seen = [], [], {}
  for ordinal, (where, item) in enumerate(jsonio.items(path, max_record_bytes)):
    try:
      if isinstance(item, Problem):
        raise item
      fmt = fmt if fmt != "auto" else _detect(item)
      record = _PARSERS[fmt](item, where, f"{default_task}:{ordinal}", default_task)
      if record.id in seen:
        raise Problem("duplicate_id", f"duplicate id {record.id!r} (first at {seen[record.id]})",
                      "make ids unique or remove the duplicate record")
      seen[record.id] = where
      records.append(record)
    except Problem as bad:
      loc = f"{where} ({bad.path})" if bad.path else where
      fix = bad.fix + ("; or set data.on_error=skip to drop bad records"
                       if on_error == "raise" else "")
      message = f"{loc}: {bad.what}; {fix}"
      if on_error == "raise":
        raise DataError(message) from None
      rejects.append(Reject(loc, bad.reason, message))
  if not records:
    raise DataError(f"{path}: no valid records ({len(rejects)} rejected); fix the file" +
                    (f"; first problem: {rejects[0].message}" if rejects else ""))
  return ReadResult(tuple(records), tuple(rejects))


def _detect(item: object) -> str:
  if isinstance(item, dict):
    for key, fmt in (("messages", "messages"), ("conversations", "sharegpt"), ("instruction",
                                                                               "alpaca")):
      if key in item:
        return fmt
  return "messages"  # the parser then names what is missing


def _object(item: object) -> dict:
  if not isinstance(item, dict):
    raise Problem("not_object", f"record is a JSON {type(item).__name__}, not an object",
                  "write one JSON object per record")
  return item


def _id_and_task(item: dict, auto_id: str, default_task: str) -> tuple[str, str]:
  rid = item.get("id")
  if rid is None:
    rid = auto_id
  elif isinstance(rid, bool) or not isinstance(rid, (str, int)):
    raise Problem("bad_id", f"id is a {type(rid).__name__}", "use a string or integer id", "id")
  task = item.get("dataset", default_task)
  if not isinstance(task, str) or not task:
    raise Problem("bad_dataset", "'dataset' is not a non-empty string",
                  "name the source task with a string", "dataset")
  return str(rid), task


def _parse_messages(item: object, where: str, auto_id: str, default_task: str) -> Record:
  item = _object(item)
  if "messages" not in item:
    raise Problem("missing_messages", "missing 'messages'",
                  "give a list of {role, content} objects (or set data.format)")
  messages = item["messages"]
  if not isinstance(messages, list) or not messages:
    raise Problem("empty_messages", "'messages' is empty or not a list",
                  "give at least a user and an assistant turn", "messages")
  turns = []
  for j, m in enumerate(messages):
    if not isinstance(m, dict):
      raise Problem("not_object", "message is not an object", "use {role, content}",
                    f"messages[{j}]")
    role, content = m.get("role"), m.get("content")
    if role not in ROLES:
      raise Problem("unknown_role", f"unknown role {role!r}", "use one of system, user, assistant",
                    f"messages[{j}].role")
    turns.append((role, _content(content, f"messages[{j}].content")))
  rid, task = _id_and_task(item, auto_id, default_task)
  return Record(rid, task, _check_turns(turns, "messages"), where)


def _parse_sharegpt(item: object, where: str, auto_id: str, default_task: str) -> Record:
  item = _object(item)
  conv = item.get("conversations")
  if not isinstance(conv, list) or not conv:
    raise Problem("empty_messages", "'conversations' is missing, empty or not a list",
                  "give a list of {from, value} objects", "conversations")
  turns = []
  for j, m in enumerate(conv):
    if not isinstance(m, dict):
      raise Problem("not_object", "turn is not an object", "use {from, value}",
                    f"conversations[{j}]")
    role = SHAREGPT_ROLES.get(m.get("from")) if isinstance(m.get("from"), str) else None
    if role is None:
      raise Problem("unknown_role", f"unknown speaker {m.get('from')!r}",
                    "use one of human, gpt, system", f"conversations[{j}].from")
    turns.append((role, _content(m.get("value"), f"conversations[{j}].value")))
  rid, task = _id_and_task(item, auto_id, default_task)
  return Record(rid, task, _check_turns(turns, "conversations"), where)


def _parse_alpaca(item: object, where: str, auto_id: str, default_task: str) -> Record:
  item = _object(item)
  fields = {}
  for key in ("instruction", "input", "output"):
    value = item.get(key, "" if key == "input" else None)
    if value is None:
      raise Problem("missing_field", f"missing {key!r}",
                    "give instruction and output strings (input is optional)")
    fields[key] = _content(value, key)
  if not fields["instruction"].strip():
    raise Problem("empty_prompt", "empty instruction", "write the instruction", "instruction")
  prompt = fields["instruction"] + (f"\n\n{fields['input']}" if fields["input"] else "")
  turns = [("user", prompt), ("assistant", fields["output"])]
  rid, task = _id_and_task(item, auto_id, default_task)
  return Record(rid, task, _check_turns(turns, "output"), where)


def _content(value: object, path: str) -> str:
  if not isinstance(value, str):
    raise Problem("bad_content", f"content is a {type(value).__name__}, not a string",
                  "store text as a JSON string", path)
  return value


def _check_turns(turns: list, field: str) -> tuple[tuple[str, str], ...]:
  roles = [r for r, _ in turns]
  if "assistant" not in roles:
    raise Problem("no_assistant", "no assistant turn", "add the response as an assistant turn",
                  field)
  for j, (role, content) in enumerate(turns):
    if role == "assistant" and not content.strip():
      raise Problem("empty_assistant", "assistant turn has empty content",
                    "write the response or drop the record", f"{field}[{j}]")
  first = next(r for r in roles if r != "system")
  if first != "user":
    raise Problem("no_prompt", "the first non-system turn is not a user turn",
                  "start the conversation with the user's prompt", field)
  return tuple(turns)


_PARSERS = {"messages": _parse_messages, "sharegpt": _parse_sharegpt, "alpaca": _parse_alpaca}
