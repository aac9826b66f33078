"""Synthetic reasoning tasks with exact answer checking (pure Python, no downloads).

* :func:`arithmetic_problems`: "What is 23 + 58?"-style sums/differences, integer answers;
* :func:`prontoqa_problems`: ProntoQA-style syllogism chains over made-up concepts ("Every wumpus is a
  yumpus. ... Max is a wumpus. True or false: Max is bright."), boolean answers, exact by construction.

:func:`chat_prompt` renders a problem with a 1-shot demonstration (the paper's protocol) through the tokenizer's
chat template when it has one.
"""

from __future__ import annotations

import dataclasses
import random
import re

__all__ = ["Problem", "arithmetic_problems", "chat_prompt", "check_answer", "extract_bool", "extract_number",
           "prontoqa_problems"]


@dataclasses.dataclass(frozen=True)
class Problem:
    """A question, its exact answer, the task name, and a worked 1-shot demonstration ``(question, answer)``."""

    question: str
    answer: object
    task: str
    demo: tuple[str, str] | None = None


_NUM = re.compile(r"-?\d+")


def extract_number(text: str) -> int | None:
    """The last integer in the response, or ``None``.

    The last, not the first: small models often restate the question before answering ("7 + 5 = 12"), and the
    1-shot demonstration ends with the answer.
    """
    m = _NUM.findall(text.replace(",", ""))
    return int(m[-1]) if m else None


def extract_bool(text: str) -> bool | None:
    """The first "true"/"false" (case-insensitive) in the response, or ``None``."""
    m = re.search(r"\b(true|false)\b", text, flags=re.IGNORECASE)
    return None if m is None else m.group(1).lower() == "true"


def check_answer(text: str, answer) -> bool:
    """Exact check of a response against the ground truth (int → last integer, bool → first true/false)."""
    if isinstance(answer, bool):
        return extract_bool(text) == answer
    if isinstance(answer, int):
        return extract_number(text) == answer
    return text.strip() == str(answer)


def arithmetic_problems(num: int, *, seed: int = 0, max_value: int = 20, ops: str = "+-") -> list[Problem]:
    """``num`` problems ``a op b`` with ``0 <= a, b <= max_value``; differences are kept non-negative."""
    rng = random.Random(seed)
    out = []
    demo = ("What is 3 + 4? Answer with just the number.", "7")
    for _ in range(num):
        a, b, op = rng.randint(0, max_value), rng.randint(0, max_value), rng.choice(ops)
        if op == "-" and b > a:
            a, b = b, a
        ans = a + b if op == "+" else a - b
        out.append(Problem(f"What is {a} {op} {b}? Answer with just the number.", ans, "arithmetic", demo))
    return out


_CONCEPTS = ["wumpus", "yumpus", "zumpus", "dumpus", "rompus", "numpus", "tumpus", "vumpus", "impus", "jompus",
             "gorpus", "shumpus", "lempus", "sterpus", "grimpus", "lorpus", "brimpus", "fompus"]
_PROPS = ["bright", "cold", "happy", "large", "red", "sour", "fast", "shy", "wooden", "loud"]
_NAMES = ["Max", "Alex", "Sam", "Rex", "Sally", "Wren", "Polly", "Fae"]


def _plural(c: str) -> str:
    return c + "es"


def prontoqa_problems(num: int, *, seed: int = 0, hops: int = 2, distractors: int = 1) -> list[Problem]:
    """ProntoQA-style problems: a chain ``c0 ⊂ c1 ⊂ … ⊂ c_hops``, a property (or its negation) of the last
    concept, an entity of ``c0``, and a query about the property; the answer follows by modus ponens.
    Distractor facts about unrelated concepts are shuffled in."""
    rng = random.Random(seed)
    demo = ("Every gorpus is a lempus. Lempuses are not cold. Fae is a gorpus. True or false: Fae is cold. "
            "Answer with true or false.", "Fae is a gorpus. Every gorpus is a lempus. Lempuses are not cold. "
            "So Fae is not cold. The answer is false.")
    out = []
    for _ in range(num):
        concepts = rng.sample(_CONCEPTS[:12], hops + 1 + distractors)
        chain, extra = concepts[: hops + 1], concepts[hops + 1:]
        prop = rng.choice(_PROPS)
        positive = rng.random() < 0.5
        name = rng.choice(_NAMES)
        facts = [f"Every {chain[i]} is a {chain[i + 1]}." for i in range(hops)]
        facts.append(f"{_plural(chain[-1]).capitalize()} are {'' if positive else 'not '}{prop}.")
        for d in extra:
            facts.append(f"{_plural(d).capitalize()} are {'not ' if positive else ''}{prop}.")
        rng.shuffle(facts)
        ask_positive = rng.random() < 0.5
        query = f"{name} is {'' if ask_positive else 'not '}{prop}"
        answer = positive == ask_positive
        q = " ".join(facts) + f" {name} is a {chain[0]}. True or false: {query}. Answer with true or false."
        out.append(Problem(q, answer, "prontoqa", demo))
    return out


def chat_prompt(tokenizer, problem: Problem, *, one_shot: bool = True) -> str:
    """The prompt text: chat template (1-shot demo as a previous turn) when the tokenizer has one, else plain
    ``Q: … A:`` lines."""
    turns = []
    if one_shot and problem.demo is not None:
        turns += [{"role": "user", "content": problem.demo[0]}, {"role": "assistant", "content": problem.demo[1]}]
    turns.append({"role": "user", "content": problem.question})
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    lines = []
    for t in turns:
        lines.append(("Q: " if t["role"] == "user" else "A: ") + t["content"])
    return "\n".join(lines) + "\nA:"
