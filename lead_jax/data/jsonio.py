"""Streaming JSON readers that report problems by file line, never silently.

JSONL is read line by line in binary (a line over the size limit is skipped
without being held in memory). A JSON array is read element by element with
`json.JSONDecoder.raw_decode`, so a truncated file still yields every complete
element before the cut. Bytes that are not UTF-8 are located by line and
column. A UTF-8 byte order mark is accepted at the start of the file or of a
line (files concatenated from Windows tools carry one).

Each iterator yields `(where, value)`; value is the decoded JSON, or a
`Problem` for a record-level issue; file-level issues raise `DataError`.
"""

from __future__ import annotations

import json
import re
from typing import Iterator

from lead_jax.data.errors import DataError, Problem

_BOM = "\ufeff"
# Bytes that are not UTF-8, decoded with surrogateescape, become lone surrogates.
_BAD_BYTE = re.compile("[\udc80-\udcff]")


def items(path: str, limit: int) -> Iterator[tuple[str, object]]:
  """JSON array elements when the file starts with `[` (and is not .jsonl), else JSONL."""
  first = _first_byte(path)
  if not first:
    raise DataError(f"{path}: file is empty (whitespace only); point to a file with "
                    "at least one record")
  if first == b"[" and not path.endswith(".jsonl"):
    yield from iter_json_array(path, limit)
  else:
    yield from _iter_jsonl(path, limit)


def _first_byte(path: str) -> bytes:
  with open(path, "rb") as f:
    if f.read(3) != b"\xef\xbb\xbf":
      f.seek(0)
    while chunk := f.read(1 << 16):
      chunk = chunk.lstrip(b" \t\r\n")
      if chunk:
        return chunk[:1]
  return b""


def _decode(raw: bytes) -> str:
  text = raw.decode("utf-8", errors="surrogateescape")
  bad = _BAD_BYTE.search(text)
  if bad:
    raise Problem(
        "invalid_utf8", f"invalid UTF-8 (byte 0x{ord(bad.group()) - 0xdc00:02x} at "
        f"column {bad.start() + 1})", "re-encode the file as UTF-8")
  return text


def _iter_jsonl(path: str, limit: int) -> Iterator[tuple[str, object]]:
  with open(path, "rb") as f:
    for lineno, raw in enumerate(_lines(f, limit), start=1):
      where = f"{path}:{lineno}"
      if raw is None:
        yield where, Problem("too_large", f"line is over the {limit}-byte limit "
                             "(data.max_record_bytes)", "raise the limit or drop the record")
        continue
      try:
        text = _decode(raw).lstrip(_BOM)  # a BOM may start the file or a part
      except Problem as bad:
        yield where, bad
        continue
      if not text.strip():
        continue
      try:
        yield where, json.loads(text)
      except json.JSONDecodeError as e:
        if not raw.endswith(b"\n") and not text.rstrip().endswith("}"):
          yield where, Problem("truncated", "file ends inside a record (truncated file?)",
                               "re-export or re-download the file")
        else:
          yield where, Problem("invalid_json", f"invalid JSON ({e.msg} at column {e.colno})",
                               "fix the line so it holds one JSON object")


def _lines(f, limit: int) -> Iterator[bytes | None]:
  """Lines of a binary file; None for a line over `limit` bytes (not kept in memory)."""
  while True:
    raw = f.readline(limit + 1)
    if not raw:
      return
    if len(raw) > limit and not raw.endswith(b"\n"):
      while raw and not raw.endswith(b"\n"):
        raw = f.readline(1 << 20)
      yield None
    else:
      yield raw


def iter_json_array(path: str, limit: int = 1 << 62) -> Iterator[tuple[str, object]]:
  """Elements of a JSON array file, one `json.raw_decode` at a time.

  Yields (where, value) with where = `file:line ($[i])`. A file cut off inside
  an element yields that element as a `truncated` problem and stops, so every
  complete element before it is kept. A syntax error elsewhere cannot be
  resynchronised and raises DataError.
  """
  with open(path, "rb") as f:
    text = f.read().decode("utf-8", errors="surrogateescape").lstrip(_BOM)
  decoder, pos, line, counted, i = json.JSONDecoder(), _skip_ws(text, 0) + 1, 1, 0, 0
  while True:
    pos = _skip_ws(text, pos)
    if pos < len(text) and text[pos] == "]":
      if text[pos + 1:].strip():
        raise DataError(f"{path}: content after the closing ']' of the JSON array; "
                        "keep one array per file (or name the file .jsonl)")
      return
    line += text.count("\n", counted, pos)
    counted = pos
    where = f"{path}:{line} ($[{i}])"
    try:
      value, end = decoder.raw_decode(text, pos)
    except json.JSONDecodeError as e:
      if not text.rstrip().endswith("]"):
        if pos < len(text):
          yield where, Problem("truncated", "file ends inside a record (truncated file?)",
                               "re-export or re-download the file")
        return
      raise DataError(f"{path}:{e.lineno}: invalid JSON in array element {i} ({e.msg} at "
                      f"column {e.colno}); fix the file (a JSON array cannot be "
                      "resynchronised after a syntax error)") from None
    raw = text[pos:end]
    if len(raw.encode("utf-8", "surrogateescape")) > limit:
      yield where, Problem("too_large", f"record is over the {limit}-byte limit "
                           "(data.max_record_bytes)", "raise the limit or drop the record")
    elif _BAD_BYTE.search(raw):
      yield where, Problem("invalid_utf8", "invalid UTF-8 inside the record",
                           "re-encode the file as UTF-8")
    else:
      yield where, value
    pos, i = _skip_ws(text, end), i + 1
    if pos < len(text) and text[pos] == ",":
      pos += 1
    elif pos < len(text) and text[pos] != "]":
      raise DataError(f"{where}: expected ',' or ']' after the element; fix the file")


def _skip_ws(text: str, pos: int) -> int:
  while pos < len(text) and text[pos] in " \t\r\n":
    pos += 1
  return pos
