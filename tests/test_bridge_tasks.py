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


def test_lookup_answers_are_the_asked_keys_value():
    from sharpsim.bridge._tasks import lookup_problems

    for pr in lookup_problems(40, seed=2, num_pairs=5):
        pairs = dict((k, int(v)) for k, v in re.findall(r"(\w+) = (\d+)", pr.question))
        key = re.search(r"value of (\w+)\?", pr.question).group(1)
        assert len(pairs) == 5 and pairs[key] == pr.answer  # catches: answer taken from the wrong pair


def test_task_families_sizes_levels_and_extractors():
    from sharpsim.bridge._tasks import TASK_FAMILIES, extractor, task_problems

    assert set(TASK_FAMILIES) == {"arithmetic", "entailment", "lookup"}
    for fam in TASK_FAMILIES:
        for level in (1, 2, 3):
            probs = task_problems(fam, 256, seed=0, level=level)
            assert len(probs) == 256 and len({p.question for p in probs}) > 64  # enough distinct prompts
            ex = extractor(fam)
            assert all(ex(str(p.answer).lower()) == p.answer for p in probs[:20])  # the extractor reads answers
        # the 1-shot demonstration answers in a few tokens (so max_new_tokens can stay small)
        assert len(probs[0].demo[1]) <= 8
    with pytest.raises(ValueError, match="family"):
        task_problems("nope", 4)
    with pytest.raises(ValueError, match="level"):
        task_problems("lookup", 4, level=7)
