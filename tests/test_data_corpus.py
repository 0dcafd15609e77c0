"""The pretraining corpus: deterministic, uneven coverage, disjoint from the lake's held-out sets."""

import collections
import re

from lead_jax.data import corpus, synthetic, synthetic_tasks, synthetic_world


def test_deterministic_for_a_seed():
  assert corpus.documents(1, 50) == corpus.documents(1, 50)
  assert corpus.documents(1, 50) != corpus.documents(2, 50)
  assert corpus.heldout(1, 3) == corpus.heldout(1, 3)


def test_documents_are_plain_prose_without_chat_markers_or_prompts():
  docs = corpus.documents(0, 300)
  text = " ".join(docs)
  assert all(d and d.isascii() for d in docs)
  assert "<|" not in text and "assistant" not in text
  prompts = {p.replace("{x}", "").strip() for t in synthetic_tasks.TASKS for p in t.prompts}
  for p in prompts:  # no instruction paraphrase appears in the corpus
    if len(p) > 8:
      assert p not in text, p


def test_coverage_is_uneven_and_two_skills_are_never_stated():
  docs = corpus.documents(0, 2000)
  # each opening's longest literal piece identifies its task's sentences
  marks = {
      name: [max(re.split(r"\{\w+\}", o), key=len) for o in opts]
      for name, opts in corpus.PROSE.items()
  }
  counts = collections.Counter()
  for d in docs:
    for name, pieces in marks.items():
      counts[name] += sum(d.count(p) for p in pieces)
  assert counts["sort"] == 0 and counts["count"] == 0 and counts["color"] == 0
  assert counts["parity"] > 2 * counts["reverse"] > 0
  assert counts["city"] > 3 * counts["pet"] > 0


def test_the_corpus_states_facts_of_held_out_people_but_the_pool_never_asks():
  held_out = [p for p in synthetic_world.PEOPLE if synthetic_world.is_held_out(p)]
  assert len(held_out) == synthetic_world.NUM_PEOPLE // synthetic_world.HELD_OUT_EVERY
  text = " ".join(corpus.documents(0, 3000))
  assert sum(f"{p} lives in" in text or f"home of {p} is" in text for p in held_out) > 40
  train, test, _, _ = synthetic.generate(seed=0, size=1600, test_per_task=20, dev_per_task=5)
  asked = {
      synthetic_world.person_of(r["input"])
      for r in train
      if r["dataset"] in synthetic_tasks.KNOWLEDGE
  }
  assert not asked & set(held_out)
  assert {synthetic_world.person_of(r["input"]) for r in test if r["dataset"] == "city"
         } <= set(held_out)


def test_heldout_pairs_split_at_the_answer_and_cover_every_task():
  held = corpus.heldout(0, 5)
  assert set(held) == {t.name for t in synthetic_tasks.TASKS}
  for task, pairs in held.items():
    assert len(pairs) == 5
    for context, continuation in pairs:
      assert continuation.endswith(".") and not context.endswith(continuation)


def test_lake_held_out_instances_never_occur_in_the_corpus():
  _, test, dev, _ = synthetic.generate(seed=0, size=600, test_per_task=20, dev_per_task=5)
  text = " ".join(corpus.documents(0, 3000))
  for r in test + dev:
    x = r["input"]
    if r["dataset"] in synthetic_tasks.KNOWLEDGE:  # the corpus states held-out people's facts
      assert r["messages"][0]["content"] not in text
      continue
    if len(x) >= 6 and "\n" not in x:  # long enough to be identifying, single-line
      assert x not in text, (r["dataset"], x)
