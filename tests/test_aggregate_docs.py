"""The aggregator's --docs option: the block between a suite's markers in a
Markdown file is replaced by the aggregator's tables, the rest of the file
and the markers stay, and a file without (or with doubled) markers is an
error that leaves it untouched."""

import os
import subprocess
import sys

import pytest

from experiments import aggregate, suites
from lead_jax import accounting, artifacts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN, END = "<!-- BEGIN suite:ablation -->", "<!-- END suite:ablation -->"


def _fake_run(results, variant, seed, loss):
  """A finished run: final metrics and a ledger that adds up."""
  workdir = suites.run_dir(str(results), variant, seed)
  os.makedirs(workdir)
  ledger = accounting.add(accounting.empty(), "offline", "ifd",
                          {"forward_samples": 12, "forward_tokens": 100})
  ledger = accounting.add_seconds(ledger, "training", 1.0)
  final = {
      "pool_size": 100, "budget": 10, "exact_match": loss / 10, "test_loss": loss,
      "samples_selected": 10, "iterations": 2, "train_sample_passes": 5,
      "forward_sample_passes": 12, "wall_seconds": accounting.wall_seconds(ledger)
  }
  artifacts.write_json(os.path.join(workdir, "accounting.json"), accounting.to_dict(ledger))
  artifacts.write_json(os.path.join(workdir, "final_metrics.json"), final)


def _results(tmp_path):
  results = tmp_path / "results"
  for seed, (a, b) in enumerate([(2.0, 3.0), (2.2, 3.4), (1.8, 3.2)]):
    _fake_run(results, "lead", seed, a)
    _fake_run(results, "lead_no_idu", seed, b)
  return results


def _page(path, block="old table\n| a | b |\n"):
  head, tail = "# Experiments\n\nText before.\n\n", "\nText after, kept.\n"
  path.write_text(head + BEGIN + "\n" + block + END + "\n" + tail, encoding="utf-8")
  return head, tail


def test_replace_block_keeps_markers_and_the_rest():
  text = "a\n<!-- BEGIN suite:main -->\nold\n<!-- END suite:main -->\nb\n"
  new = aggregate.replace_block(text, "main", "| x |\n|---|\n")
  assert new == "a\n<!-- BEGIN suite:main -->\n\n| x |\n|---|\n\n<!-- END suite:main -->\nb\n"
  # idempotent: replacing again with the same block changes nothing
  assert aggregate.replace_block(new, "main", "| x |\n|---|\n") == new
  # another suite's block is not touched
  both = new + "<!-- BEGIN suite:ablation -->\nkeep\n<!-- END suite:ablation -->\n"
  assert "keep" in aggregate.replace_block(both, "main", "y")


@pytest.mark.parametrize("text", [
    "no markers\n",
    "<!-- BEGIN suite:main -->\n",
    "<!-- END suite:main -->\n<!-- BEGIN suite:main -->\n",
    "<!-- BEGIN suite:main -->\n<!-- END suite:main -->\n<!-- BEGIN suite:main -->\n",
])
def test_replace_block_refuses_missing_doubled_or_reversed_markers(text):
  with pytest.raises(ValueError):
    aggregate.replace_block(text, "main", "y")


def test_write_docs_replaces_the_suites_block_with_the_tables(tmp_path):
  results = _results(tmp_path)
  page = tmp_path / "experiments.md"
  head, tail = _page(page)
  markdown = aggregate.aggregate("ablation", str(results), str(tmp_path / "out"),
                                 shown_results="results")
  assert aggregate.write_docs(str(page), "ablation", markdown)
  text = page.read_text(encoding="utf-8")
  assert text.startswith(head + BEGIN + "\n\n") and text.endswith(END + "\n" + tail)
  assert "old table" not in text
  inside = text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip("\n")
  assert inside == markdown.strip("\n")
  assert inside == (tmp_path / "out" / "ablation.md").read_text(encoding="utf-8").strip("\n")
  assert "--results=results`" in inside and str(tmp_path) not in inside
  assert "| lead_no_idu | 3 | - | - | +1.200 | +7.3 |" in inside
  assert not aggregate.write_docs(str(page), "ablation", markdown)  # already up to date


def test_write_docs_without_markers_leaves_the_file(tmp_path):
  page = tmp_path / "page.md"
  page.write_text("# no markers\n", encoding="utf-8")
  with pytest.raises(ValueError, match="page.md"):
    aggregate.write_docs(str(page), "main", "| x |\n")
  assert page.read_text(encoding="utf-8") == "# no markers\n"
  assert not os.path.exists(str(page) + ".tmp")


@pytest.mark.slow  # a subprocess
def test_command_line_docs_option(tmp_path):
  results = _results(tmp_path)
  page = tmp_path / "experiments.md"
  head, tail = _page(page)
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  cmd = [
      sys.executable, "-m", "experiments.aggregate", "--suite=ablation", f"--results={results}",
      f"--out={tmp_path / 'out'}", f"--docs={page}", "--shown_results=results"
  ]
  done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  text = page.read_text(encoding="utf-8")
  generated = (tmp_path / "out" / "ablation.md").read_text(encoding="utf-8")
  assert text == head + BEGIN + "\n\n" + generated.strip("\n") + "\n\n" + END + "\n" + tail
  # a page without the suite's markers: exit status 2, one-line error, file unchanged
  other = tmp_path / "other.md"
  other.write_text("nothing here\n", encoding="utf-8")
  cmd[-2] = f"--docs={other}"
  done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 2 and "error: " in done.stderr and "suite:ablation" in done.stderr
  assert other.read_text(encoding="utf-8") == "nothing here\n"
