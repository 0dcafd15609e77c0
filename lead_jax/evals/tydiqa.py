"""TyDiQA GoldP: few-shot per language with the gold passage, chat format (open-instruct).

Files (SQuAD v1.1 layout, as released by google-research-datasets/tydiqa):
  <dir>/tydiqa-goldp-v1.1-dev.json    evaluation questions
  <dir>/tydiqa-goldp-v1.1-train.json  the pool the few-shot examples come from
`{"data": [{"paragraphs": [{"context", "qas": [{"id", "question", "answers":
[{"text", "answer_start"}]}]}]}]}`; the language is the id's prefix before
the first "-" (e.g. "english-123...").

With one `random.Random(42)`, in sorted language order: up to
`max_per_language` dev questions are sampled per language, then `n_shot`
train examples per language. Passages longer than `max_context_tokens` are
cut to that many tokens (the tokenizer's, without special tokens). The user
turn, in the language's own words (shown for English):
  "Answer the following question based on the information in the given
  passage.\\n\\n" + "\\n\\n".join("Passage: {c}\\nQuestion: {q}\\nAnswer: {a}")
  + "\\n\\n" + "Passage: {c}\\nQuestion: {q}\\n"
then the assistant header and "Answer:". Greedy, up to 50 new tokens, EOS /
end of turn only; the output is stripped. Metrics: SQuAD EM and F1 per
language (percent), their mean over languages, and answer recall.
"""

from __future__ import annotations

import json
import os
import random

import jax
import numpy as np

from lead_jax.data import templates
from lead_jax.evals import lm, metrics

DEV_FILE = "tydiqa-goldp-v1.1-dev.json"
TRAIN_FILE = "tydiqa-goldp-v1.1-train.json"

# (instruction, passage label, question label, answer label) per language.
PROMPTS = {
    "english": ("Answer the following question based on the information in the given passage.",
                "Passage:", "Question:", "Answer:"),
    "arabic": ("أجب على السؤال التالي بناءً على المعلومات في المقطع المعطى.", "المقطع:", "السؤال:",
               "الإجابة:"),
    "bengali": ("প্রদত্ত অধ্যায়ের তথ্যের উপর ভিত্তি করে নিম্নলিখিত প্রশ্নের উত্তর দিন।",
                "অধ্যায়:", "প্রশ্ন:", "উত্তর:"),
    "finnish": ("Vastaa seuraavaan kysymykseen annetun kappaleen tiedon perusteella.", "Kappale:",
                "Kysymys:", "Vastaus:"),
    "indonesian": ("Jawab pertanyaan berikut berdasarkan informasi di bagian yang diberikan.",
                   "Bagian:", "Pertanyaan:", "Jawaban:"),
    "korean": ("주어진 문단의 정보에 기반하여 다음 질문에 답하십시오.", "문단:", "질문:", "답변:"),
    "russian": ("Ответьте на следующий вопрос на основе информации в данном отрывке.", "Отрывок:",
                "Вопрос:", "Ответ:"),
    "swahili": ("Jibu swali lifuatalo kulingana na habari kwenye kifungu kilichotolewa.",
                "Kifungu:", "Swali:", "Jibu:"),
    "telugu": ("ఇచ్చిన పేరాలోని సమాచారం ఆధారంగా కింది ప్రశ్నకు సమాధానం ఇవ్వండి.", "పేరా:",
               "ప్రశ్న:", "సమాధానం:"),
}


def read_goldp(path: str, languages=None) -> list[dict]:
  """[{id, lang, context, question, answers: [str]}] in file order."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"TyDiQA: {path} not found; put the GoldP v1.1 files "
                            f"({DEV_FILE}, {TRAIN_FILE}) there")
  with open(path, encoding="utf-8") as f:
    data = json.load(f)
  out = []
  for article in data["data"]:
    for paragraph in article["paragraphs"]:
      for qa in paragraph["qas"]:
        lang = qa["id"].split("-")[0]
        if languages is None or lang in languages:
          out.append({
              "id": qa["id"], "lang": lang, "context": paragraph["context"],
              "question": qa["question"], "answers": [a["text"] for a in qa["answers"]]
          })
  return out


def select(dev: list[dict], train: list[dict], max_per_language: int, n_shot: int):
  """(test examples, {lang: shots}) drawn with Random(42) in the reference's order."""
  rng = random.Random(42)
  languages = sorted({ex["lang"] for ex in dev})
  unknown = [lang for lang in languages if lang not in PROMPTS]
  if unknown:
    raise ValueError(f"TyDiQA: no prompt template for languages {unknown}")
  test = []
  for lang in languages:
    rows = [ex for ex in dev if ex["lang"] == lang]
    test += rng.sample(
        rows, max_per_language) if max_per_language and len(rows) > max_per_language else rows
  shots = {}
  for lang in languages:
    pool = [ex for ex in train if ex["lang"] == lang] if n_shot else []
    if len(pool) < n_shot:
      raise ValueError(f"TyDiQA: {len(pool)} train examples in {lang}, need n_shot={n_shot}")
    shots[lang] = rng.sample(pool, n_shot) if n_shot else []
  return test, shots


def truncate(tokenizer, text: str, max_tokens: int) -> str:
  ids = tokenizer.encode(text, add_special_tokens=False)
  return tokenizer.decode(ids[:max_tokens]) if max_tokens and len(ids) > max_tokens else text


def user_text(example: dict, shots: list[dict]) -> str:
  instruction, p, q, a = PROMPTS[example["lang"]]
  text = instruction + "\n\n"
  if shots:
    text += "\n\n".join(
        f"{p} {s['context']}\n{q} {s['question']}\n{a} {s['answers'][0]}" for s in shots) + "\n\n"
  return text + f"{p} {example['context']}\n{q} {example['question']}\n"


def evaluate(model_config, params, tokenizer, data_dir: str, cfg, *, template, key: jax.Array,
             limit: int | None = None):
  """Per-language and mean SQuAD F1 / EM (percent); `cfg` is the `tydiqa` sub-config.

  `limit` caps the questions per language (below `max_per_language`).
  """
  dev = read_goldp(os.path.join(data_dir, DEV_FILE))
  train = (
      read_goldp(os.path.join(data_dir, TRAIN_FILE), {ex["lang"] for ex in dev})
      if cfg.n_shot else [])
  per_lang = cfg.max_per_language
  if limit:
    per_lang = min(per_lang, limit) if per_lang else limit
  test, shots = select(dev, train, per_lang, cfg.n_shot)
  cut = lambda ex: dict(ex, context=truncate(tokenizer, ex["context"], cfg.max_context_tokens))
  shots = {lang: [cut(s) for s in rows] for lang, rows in shots.items()}
  test = [cut(ex) for ex in test]
  ids = [
      lm.chat_prompt_ids(template, tokenizer, user_text(ex, shots[ex["lang"]]),
                         PROMPTS[ex["lang"]][3]) for ex in test
  ]
  outputs = lm.generate(model_config, params, tokenizer, ids, key, batch_size=cfg.batch_size,
                        max_new_tokens=cfg.max_new_tokens,
                        extra_eos_ids=templates.stop_token_ids(template, tokenizer), desc="tydiqa")
  return score(test, outputs)


def score(test: list[dict], outputs: list[str]) -> dict:
  """SQuAD EM / F1 and recall per language (percent) and their means over languages."""
  outputs = [o.strip() for o in outputs]
  scores = {}
  for lang in sorted({ex["lang"] for ex in test}):
    rows = [(o, ex["answers"]) for o, ex in zip(outputs, test) if ex["lang"] == lang]
    preds, answers = [r[0] for r in rows], [r[1] for r in rows]
    scores[lang] = dict(
        metrics.squad(preds, answers), recall=metrics.answer_recall(preds, answers),
        num_questions=len(rows))
  mean = {
      m: float(np.mean([s[m] for s in scores.values()])) if scores else 0.0
      for m in ("f1", "exact_match", "recall")
  }
  return {
      **mean, "per_language":
          scores, "num_questions":
              len(test), "examples": [{"id": ex["id"], "answers": ex["answers"], "output": o}
                                      for ex, o in list(zip(test, outputs))[:5]]
  }
