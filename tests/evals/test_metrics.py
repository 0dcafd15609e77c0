"""Metrics against hand-computed values."""

import math

import pytest

from lead_jax.evals import metrics


def test_squad_normalisation():
  assert metrics.normalize_answer("The  Quick, brown fox!") == "quick brown fox"
  assert metrics.normalize_answer("an apple a day; theatre") == "apple day theatre"
  assert metrics.normalize_answer("  A.B.C. ") == "abc"


def test_squad_f1_and_em_by_hand():
  # pred {cat, sat, down}, truth {cat, sat, on, mat}: 2 shared, P = 2/3, R = 1/2.
  assert metrics.squad_f1("cat sat down", "the cat sat on the mat") == pytest.approx(4 / 7)
  assert metrics.squad_f1("x x y", "x y y") == pytest.approx(2 / 3)  # multiset overlap
  assert metrics.squad_f1("nothing", "else") == 0.0
  assert metrics.squad_exact_match("The Paris.", "paris") == 1.0
  scores = metrics.squad(["cat sat down", "Paris"],
                         [["the cat sat on the mat"], ["London", "paris."]])
  assert scores["exact_match"] == pytest.approx(50.0)
  assert scores["f1"] == pytest.approx(100 * (4 / 7 + 1) / 2)


def test_answer_recall():
  assert metrics.answer_recall(["It was in Paris, France", "no"], [["paris"], ["yes"]]) == 50.0


@pytest.mark.parametrize(
    "output, number",
    [
        ("So the answer is 1,234.", "1234"),
        ("He paid $5.50, then 6 more", "6"),
        ("1,234,567 apples", "1234567"),
        ("1,2,3", "3"),  # left-to-right substitution gives "12,3"
        ("-3 degrees", "3"),  # the sign only attaches to decimals
        ("it is -0.5", "-0.5"),
        ("about .5 of it", ".5"),
        ("no digits here", "no digits here"),
    ])
def test_last_number(output, number):
  assert metrics.last_number(output) == number


def test_exact_match_ignores_case_and_punctuation():
  preds = ["3", "-5", "3.0", "Abc!"]
  refs = ["3", "5", "3", "abc"]
  assert metrics.exact_match(preds, refs) == pytest.approx(0.75)


def test_pass_at_k_by_hand():
  assert metrics.pass_at_k(5, 2, 1) == pytest.approx(0.4)
  assert metrics.pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)
  assert metrics.pass_at_k(20, 3, 10) == pytest.approx(1 - math.comb(17, 10) / math.comb(20, 10))
  assert metrics.pass_at_k(20, 3, 10) == pytest.approx(17 / 19)
  assert metrics.pass_at_k(10, 1, 10) == 1.0
  assert metrics.pass_at_k(20, 0, 10) == 0.0
  with pytest.raises(ValueError):
    metrics.pass_at_k(3, 4, 1)


def test_mean_pass_at_k_skips_k_above_n():
  got = metrics.mean_pass_at_k([20, 5], [3, 5], [1, 10])
  assert got == {"pass@1": pytest.approx((3 / 20 + 1.0) / 2)}
