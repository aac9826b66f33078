"""Synthetic tasks: exact answers and checkers."""

import re

import pytest

from sharpsim.bridge import arithmetic_problems, check_answer, extract_bool, extract_number, prontoqa_problems

pytestmark = [pytest.mark.hf]


def test_arithmetic_answers_are_exact():
    for pr in arithmetic_problems(50, seed=3):
        a, op, b = re.search(r"(\d+) ([+-]) (\d+)", pr.question).groups()
        assert pr.answer == (int(a) + int(b) if op == "+" else int(a) - int(b)) >= 0
        assert check_answer(f"The answer is {pr.answer}.", pr.answer)
        assert not check_answer(f"{pr.answer + 1}", pr.answer)


def _solve(question):
    """Independent solver: follow the 'Every A is a B' chain from the entity's concept."""
    isa = dict(re.findall(r"Every (\w+) is a (\w+)\.", question))
    name, c = re.search(r"(\w+) is a (\w+)\. True or false", question).groups()
    neg, prop = re.search(rf"{name} is (not )?(\w+)\. Answer", question).groups()
    while c in isa:
        c = isa[c]
    fact = re.search(rf"{c.capitalize()}es are (not )?{prop}\.", question)
    holds = fact.group(1) is None
    return holds == (neg is None)


def test_prontoqa_answers_follow_by_modus_ponens():
    probs = prontoqa_problems(60, seed=1, hops=3)
    assert {p.answer for p in probs} == {True, False}
    for p in probs:
        assert _solve(p.question) == p.answer


def test_extractors():
    assert extract_number("7 + 5 = 12") == 12 and extract_number("no") is None
    assert extract_number("It is 1,024.") == 1024
    assert extract_bool("So the answer is False.") is False and extract_bool("maybe") is None
