"""The two interfaces the algorithms program against: :class:`Policy` and :class:`PolicyClass`.

Both are ``typing.Protocol``\\ s marked ``runtime_checkable`` (``isinstance`` checks that the methods exist;
their behaviour is pinned by tests/test_classes.py: ``test_every_class_in_the_module_satisfies_the_protocol``
and ``test_protocol_behaviour_mle_matches_brute_force``). The algorithms in
:mod:`sharpsim.algorithms` never branch on the concrete type of a class: every class-specific step (exact or
gradient MLE, the Eq. 8 / DPO minimiser, the XPO objective's round-by-round minimiser, the learner's own draw)
is a method of the class. See docs/architecture.md ("Policy classes") for how to add a class.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Protocol, runtime_checkable

__all__ = ["Policy", "PolicyClass", "is_policy_class"]


@runtime_checkable
class Policy(Protocol):
    """What the sample-and-evaluate oracle (Definition 3.2) needs from π_base, and what a class member is.

    ``sample_and_log_prob(key, x, num)`` draws ``num`` responses y ~ π(·|x) with their log π(y|x);
    ``log_prob(x, y)`` evaluates log π(y|x) (broadcasting over leading axes).
    """

    def log_prob(self, x, y): ...

    def sample_and_log_prob(self, key, x, num: int): ...


@runtime_checkable
class PolicyClass(Protocol):
    """A policy class Π as the sharpening algorithms use it (theory.md §6, §9, §10).

    Attributes / methods (``params`` is the class's representation of a member: candidate indices ``[X]`` for
    a finite class, logits or θ for gradient classes):

    * ``log_class_size`` — log|Π| (``None`` when Π is infinite) and ``log_covering_number(eps)`` — a cover's log
      size (Lemma J.4 for the continuous classes; ``None`` when unknown).
    * ``init_params()``, ``log_prob(params, x, y)``, ``member(params) -> Policy``.
    * ``draw(params, key, x)`` — one response y ~ π_params(·|x) (the learner's own draw in XPO, Algorithm 1).
    * ``exact_mle`` — True when :meth:`fit_counts` is exact (the one-draw SFT sweeps need it).
    * ``fit_counts(counts)`` — the exact MLE from a count table ``[X, Y]`` (SFT, Eq. 5): ``(policy, index)``.
    * ``fit_mle(prompts, responses, fit, weights)`` — argmax Σ_i w_i log π(y_i|x_i): ``(policy, params, info)``.
    * ``fit_pairs(pair_loss, x, y, yp, *, key, tie_break, fit, eq8_beta)`` — argmin over Π of
      Σ_i pair_loss(log π(y_i|x_i), log π(y'_i|x_i)) (Eq. 8 or the logistic DPO loss; ``pair_loss`` is
      elementwise over pairs): ``(policy, params, info)``.
    * ``xpo_rounds(objective, first, next_triple, round_keys, ts, *, T, key, tie_break, fit, steps)`` —
      rounds 1..T of Algorithm 1's argmin: ``(iterates [T, ...], objective [T], info)``.
    * ``select_iterate(iterates, selected)`` — ``(member policy, params)`` of iterate ``selected`` (0 = π^(1)).
    """

    log_class_size: Optional[float]
    exact_mle: bool

    def log_covering_number(self, eps: float) -> Optional[float]: ...

    def init_params(self) -> Any: ...

    def log_prob(self, params, x, y): ...

    def member(self, params) -> Policy: ...

    def draw(self, params, key, x): ...

    def fit_counts(self, counts): ...

    def fit_mle(self, prompts, responses, fit=None, weights=None): ...

    def fit_pairs(self, pair_loss: Callable, x, y, yp, *, key, tie_break: str, fit, eq8_beta=None): ...

    def xpo_rounds(self, objective, first, next_triple: Callable, round_keys, ts, *, T: int, key, tie_break: str,
                   fit, steps: int): ...

    def select_iterate(self, iterates, selected): ...


_CLASS_MEMBERS = ("log_class_size", "exact_mle", "log_covering_number", "init_params", "log_prob", "member", "draw",
                  "fit_counts", "fit_mle", "fit_pairs", "xpo_rounds", "select_iterate")


def is_policy_class(obj) -> bool:
    """``isinstance(obj, PolicyClass)`` decided on the type, so it never evaluates a property (``log_class_size``
    reads concrete arrays and would fail on a class traced through ``jit``/``vmap``)."""
    return not isinstance(obj, type) and all(hasattr(type(obj), m) for m in _CLASS_MEMBERS)
