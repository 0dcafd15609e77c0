"""TyDiQA GoldP: reading, sampling, the exact few-shot chat prompt, scoring, end to end."""

import os
import random

import jax
import pytest

from lead_jax.evals import lm, tydiqa


@pytest.fixture(scope="module")
def files(fixtures_dir):
  d = os.path.join(fixtures_dir, "tydiqa")
  return (d, tydiqa.read_goldp(os.path.join(d, tydiqa.DEV_FILE)),
          tydiqa.read_goldp(os.path.join(d, tydiqa.TRAIN_FILE)))


def test_read_goldp_takes_language_from_the_id(files):
  _, dev, train = files
  assert [ex["lang"] for ex in dev] == ["english"] * 3 + ["finnish"] * 2
  assert dev[1]["answers"] == ["the Gulf of Finland", "Gulf of Finland"]
  assert [ex["lang"] for ex in train] == ["english"] * 4 + ["finnish"] * 3


def test_selection_follows_the_reference_draw_order(files):
  _, dev, train = files
  test, shots = tydiqa.select(dev, train, 2, 1)
  rng = random.Random(42)  # per language, questions first, then shots
  eng, fin = dev[:3], dev[3:]
  want_test = rng.sample(eng, 2) + fin
  want_shots = {"english": rng.sample(train[:4], 1), "finnish": rng.sample(train[4:], 1)}
  assert test == want_test and shots == want_shots


def test_too_few_shots_is_an_error(files):
  _, dev, train = files
  with pytest.raises(ValueError, match="need n_shot=4"):
    tydiqa.select(dev, train, 0, 4)


def test_one_shot_chat_prompt_is_exact(files, tok, template):
  _, dev, train = files
  shot = train[0]
  ids = lm.chat_prompt_ids(template, tok, tydiqa.user_text(dev[0], [shot]), "Answer:")
  assert tok.decode(ids) == (
      "<|user|>\nAnswer the following question based on the information in the given "
      "passage.\n\n"
      "Passage: Paris is the capital of France. The Seine runs through the city.\n"
      "Question: What is the capital of France?\nAnswer: Paris\n\n"
      "Passage: Helsinki is the capital and most populous city of Finland. It lies on the "
      "shore of the Gulf of Finland.\nQuestion: What is the capital of Finland?\n\n"
      "<|assistant|>\nAnswer:")
  finnish = tydiqa.user_text(dev[3], [])
  assert finnish.startswith("Vastaa seuraavaan kysymykseen annetun kappaleen tiedon "
                            "perusteella.\n\nKappale: Turku")
  assert finnish.endswith("\nKysymys: Mikä on Suomen vanhin kaupunki?\n")


def test_passages_are_cut_to_the_token_limit(tok):
  assert tydiqa.truncate(tok, "abcdefghij", 4) == "abcd"
  assert tydiqa.truncate(tok, "abc", 4) == "abc"


def test_score_per_language_and_mean(files):
  _, dev, _ = files
  outputs = [" Helsinki ", "Gulf of Finland", "the Atlantic", "Turku.", "Aura"]
  result = tydiqa.score(dev, outputs)
  eng, fin = result["per_language"]["english"], result["per_language"]["finnish"]
  assert eng["exact_match"] == pytest.approx(200 / 3) and fin["exact_match"] == 50.0
  # "the Atlantic" vs "the Mediterranean Sea": no shared token after normalisation.
  assert eng["f1"] == pytest.approx(200 / 3)
  assert result["f1"] == pytest.approx((200 / 3 + 50) / 2)
  assert fin["recall"] == 50.0


def test_evaluate_end_to_end_with_lora(files, tiny, tok, template, eval_cfg):
  d, _, _ = files
  config, params = tiny
  eval_cfg.tydiqa.max_context_tokens = 40
  result = tydiqa.evaluate(config, params, tok, d, eval_cfg.tydiqa, template=template,
                           key=jax.random.PRNGKey(0), limit=2)
  assert result["num_questions"] == 4
  assert set(result["per_language"]) == {"english", "finnish"}
  assert 0.0 <= result["f1"] <= 100.0
