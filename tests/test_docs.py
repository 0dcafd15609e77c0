"""The documentation: README.md stays a front page (at most 250 lines), every
relative Markdown link in README.md and docs/*.md points at a file that
exists (anchors are not checked), and no link or relative path in them
leaves the repository."""

import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
README_MAX_LINES = 250

# [text](target) and ![alt](target), with an optional "title"
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
# a relative path that climbs: ../x, ../../x, ./../x
CLIMB = re.compile(r"(?<![\w./])(?:\./)?(?:\.\./)+[\w./-]*")
EXTERNAL = ("http://", "https://", "mailto:")


def _read(path):
  with open(path, encoding="utf-8") as f:
    return f.read()


def _links(text):
  """Link targets outside code (fenced blocks and code spans)."""
  prose = CODE_SPAN.sub("", FENCE.sub("", text))
  return LINK.findall(prose)


def _inside(path):
  return os.path.commonpath([ROOT, os.path.realpath(path)]) == ROOT


def _rel(page):
  return os.path.relpath(page, ROOT)


def test_readme_is_a_front_page():
  lines = _read(os.path.join(ROOT, "README.md")).splitlines()
  assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"
  # CI runs the README's test command
  assert any(line.strip().startswith("make test") for line in lines)


def test_the_docs_pages_exist():
  names = {os.path.basename(p) for p in PAGES}
  assert {"method.md", "experiments.md", "data.md", "model.md", "training.md",
          "evaluation.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_resolve_inside_the_repository(page):
  bad = []
  for target in _links(_read(page)):
    if target.startswith(EXTERNAL):
      continue
    path = target.split("#", 1)[0]
    if not path:  # an anchor on the same page
      continue
    if path.startswith("/") or re.match(r"^[a-zA-Z][\w+.-]*:", path):
      bad.append(f"{target}: not a relative link")
      continue
    resolved = os.path.normpath(os.path.join(os.path.dirname(page), path))
    if not _inside(resolved):
      bad.append(f"{target}: leaves the repository")
    elif not os.path.exists(resolved):
      bad.append(f"{target}: no such file")
  assert not bad, f"{_rel(page)}: " + "; ".join(bad)


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_no_path_leaves_the_repository(page):
  """Neither prose nor code names a relative path that climbs out of the
  repository, nor the absolute location of this checkout or its parent."""
  text = _read(page)
  bad = [
      p for p in CLIMB.findall(text)
      if not _inside(os.path.normpath(os.path.join(os.path.dirname(page), p)))
  ]
  for absolute in (ROOT, os.path.dirname(ROOT)):
    if len(absolute) > 1 and re.search(re.escape(absolute) + r"(?![\w.-])", text):
      bad.append(absolute)
  assert not bad, f"{_rel(page)}: paths outside the repository: {bad}"


def test_the_checks_catch_bad_links(tmp_path):
  text = ("[ok](docs/method.md) ![fig](docs/figures/main_bars.png) [web](https://x.org/a) "
          "[anchor](#top) `[not a link](../shared/x)`\n```\n[code](nowhere.md)\n```\n"
          "[up](../../outside.md) [abs](/etc/passwd)")
  assert _links(text) == [
      "docs/method.md", "docs/figures/main_bars.png", "https://x.org/a", "#top", "../../outside.md",
      "/etc/passwd"
  ]
  assert CLIMB.findall("see ../shared/data and ./x and a/../b") == ["../shared/data"]
  assert not _inside(os.path.join(ROOT, "..", "shared"))


def test_library_page_shows_the_example_as_it_is():
  """docs/library.md holds experiments/example_custom_trainer.py in full, unchanged."""
  name = "experiments/example_custom_trainer.py"
  page = open(os.path.join(ROOT, "docs", "library.md"), encoding="utf-8").read()
  block = page.split(f"<!-- BEGIN {name} -->\n```python\n")[1].split(f"```\n<!-- END {name} -->")[0]
  assert block == open(os.path.join(ROOT, name), encoding="utf-8").read()
