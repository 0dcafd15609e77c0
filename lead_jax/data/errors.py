"""The data layer's error types.

`DataError` is what users see: one line, `where: what is wrong; what to do`.
Entry points print it without a traceback and exit non-zero. `Problem` is a
record-level issue found while reading; `formats.read` turns it into a
`DataError` (on_error="raise") or a rejects-report entry (on_error="skip").
"""


class DataError(ValueError):
  """Bad input data or data config; the message is one line meant for the user."""


class Problem(Exception):
  """A record-level problem: reason code, what is wrong, how to fix it, JSON path."""

  def __init__(self, reason: str, what: str, fix: str, path: str = ""):
    super().__init__(what)
    self.reason, self.what, self.fix, self.path = reason, what, fix, path
