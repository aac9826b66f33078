"""Synthetic reasoning tasks with exact answer checking (pure Python, no downloads).

* :func:`arithmetic_problems`: "What is 23 + 58?"-style sums/differences, integer answers;
* :func:`prontoqa_problems`: ProntoQA-style syllogism chains over made-up concepts ("Every wumpus is a
  yumpus. ... Max is a wumpus. True or false: Max is bright."), boolean answers, exact by construction;
* :func:`lookup_problems`: a short key–value list and a question about one key (copy/lookup), integer answers.

:data:`TASK_FAMILIES` and :func:`task_problems` give the three families of the SmolLM2 studies by name, each
with a difficulty ``level`` and its answer extractor (:func:`extractor`); every prompt asks for a short answer
(the 1-shot demonstration answers in a few tokens), so ``max_new_tokens`` can stay small.

:func:`chat_prompt` renders a problem with a 1-shot demonstration (the paper's protocol) through the tokenizer's
chat template when it has one.
"""

from __future__ import annotations

import dataclasses
import random
import re

__all__ = ["Problem", "TASK_FAMILIES", "arithmetic_problems", "chat_prompt", "check_answer", "extract_bool",
           "extract_number", "extractor", "lookup_problems", "prontoqa_problems", "task_problems"]


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


_ARITH_TEMPLATES = ("What is {a} {op} {b}? Answer with just the number.",
                    "Compute {a} {op} {b}. Reply with the number only.",
                    "{a} {op} {b} = ? Give only the number.")


def arithmetic_problems(num: int, *, seed: int = 0, max_value: int = 20, ops: str = "+-",
                        templates: int = 1) -> list[Problem]:
    """``num`` problems ``a op b`` with ``0 <= a, b <= max_value``; differences are kept non-negative.
    ``templates``: how many of the question wordings to draw from (1 = the first only)."""
    rng = random.Random(seed)
    out = []
    demo = ("What is 3 + 4? Answer with just the number.", "7")
    for _ in range(num):
        a, b, op = rng.randint(0, max_value), rng.randint(0, max_value), rng.choice(ops)
        if op == "-" and b > a:
            a, b = b, a
        ans = a + b if op == "+" else a - b
        tpl = _ARITH_TEMPLATES[rng.randrange(max(1, min(templates, len(_ARITH_TEMPLATES))))]
        out.append(Problem(tpl.format(a=a, op=op, b=b), ans, "arithmetic", demo))
    return out


_CONCEPTS = ["wumpus", "yumpus", "zumpus", "dumpus", "rompus", "numpus", "tumpus", "vumpus", "impus", "jompus",
             "gorpus", "shumpus", "lempus", "sterpus", "grimpus", "lorpus", "brimpus", "fompus"]
_PROPS = ["bright", "cold", "happy", "large", "red", "sour", "fast", "shy", "wooden", "loud"]
_NAMES = ["Max", "Alex", "Sam", "Rex", "Sally", "Wren", "Polly", "Fae"]


def _plural(c: str) -> str:
    return c + "es"


def prontoqa_problems(num: int, *, seed: int = 0, hops: int = 2, distractors: int = 1,
                      short_demo: bool = False) -> list[Problem]:
    """ProntoQA-style problems: a chain ``c0 ⊂ c1 ⊂ … ⊂ c_hops``, a property (or its negation) of the last
    concept, an entity of ``c0``, and a query about the property; the answer follows by modus ponens.
    Distractor facts about unrelated concepts are shuffled in."""
    rng = random.Random(seed)
    demo = ("Every gorpus is a lempus. Lempuses are not cold. Fae is a gorpus. True or false: Fae is cold. "
            "Answer with true or false.", "Fae is a gorpus. Every gorpus is a lempus. Lempuses are not cold. "
            "So Fae is not cold. The answer is false.")
    if short_demo:  # a one-word answer, so the response fits in a few tokens
        demo = (demo[0], "false")
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


_KEYS = ["apple", "pear", "plum", "fig", "lime", "kiwi", "date", "peach", "grape", "mango", "lemon", "melon",
         "berry", "olive", "cherry", "guava"]


def lookup_problems(num: int, *, seed: int = 0, num_pairs: int = 4, max_value: int = 99) -> list[Problem]:
    """Copy/lookup: ``num_pairs`` distinct ``key = value`` pairs (values in [0, max_value]) and a question about
    one key; the answer is its value (exact by construction)."""
    rng = random.Random(seed)
    demo = ("Values: lime = 12, fig = 5, kiwi = 40. What is the value of fig? Answer with just the number.", "5")
    out = []
    for _ in range(num):
        keys = rng.sample(_KEYS, num_pairs)
        vals = [rng.randint(0, max_value) for _ in keys]
        k = rng.randrange(num_pairs)
        listing = ", ".join(f"{a} = {v}" for a, v in zip(keys, vals))
        out.append(Problem(f"Values: {listing}. What is the value of {keys[k]}? Answer with just the number.",
                           vals[k], "lookup", demo))
    return out


#: The task families of the SmolLM2 studies: name → (generator(num, seed, level), extractor). ``level`` is the
#: difficulty (1 = easiest); the chosen levels put SmolLM2-135M-Instruct's greedy accuracy inside [0.1, 0.9]
#: (measured: docs/bridge.md).
TASK_FAMILIES = {
    "arithmetic": (lambda num, seed, level: arithmetic_problems(
        num, seed=seed, max_value={1: 9, 2: 20, 3: 50}[level], ops="+-", templates=3), extract_number),
    "entailment": (lambda num, seed, level: prontoqa_problems(num, seed=seed, hops=level, distractors=1,
                                                              short_demo=True), extract_bool),
    "lookup": (lambda num, seed, level: lookup_problems(num, seed=seed, num_pairs={1: 3, 2: 5, 3: 8}[level]),
               extract_number),
}


def task_problems(family: str, num: int, *, seed: int = 0, level: int = 1) -> list[Problem]:
    """``num`` problems of a family of :data:`TASK_FAMILIES` at difficulty ``level`` ∈ {1, 2, 3}."""
    if family not in TASK_FAMILIES:
        raise ValueError(f"family must be one of {sorted(TASK_FAMILIES)}, got {family!r}")
    if level not in (1, 2, 3):
        raise ValueError(f"level must be 1, 2 or 3, got {level!r}")
    return TASK_FAMILIES[family][0](num, seed, level)


def extractor(family: str):
    """The answer extractor of a family (text → answer or ``None``)."""
    if family not in TASK_FAMILIES:
        raise ValueError(f"family must be one of {sorted(TASK_FAMILIES)}, got {family!r}")
    return TASK_FAMILIES[family][1]
