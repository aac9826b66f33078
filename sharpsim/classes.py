"""Policy classes Π over which sharpening algorithms fit (theory.md §6, §9, §10, §13).

Four families, all frozen dataclass pytrees (so a class can be passed through ``jit``/``vmap``):

* :class:`FiniteClass` — a finite class with an exact log|Π|. Two shapes share one representation
  ``log_probs [X, K, Y]`` (K candidate conditionals per prompt):

  - ``product=True``: Π = every choice of one candidate per prompt (e.g. [M]^d of the Theorem 3.1′ hard
    instance), log|Π| = Σ_x log K_x. A member is an index vector ``[X]``; fitting decouples per prompt.
  - ``product=False``: a *stack* of K whole policies (e.g. π^BoN_N among distractors), log|Π| = log K.
    A member is one index, broadcast to ``[X]``; fitting sums per-prompt scores first.

  Every fitting routine is exact through sufficient statistics: per-candidate scores ``[X, K]`` (an
  einsum of counts with the log-prob tensor for MLE, scatter-added residuals for Eq. 8 / XPO), then
  :meth:`FiniteClass.select`.
* :class:`TabularClass` — the full softmax class over ``[X, Y]`` (every conditional distribution).
  Exact MLE = normalised counts; exact Eq. (8) minimiser in closed form; gradient fitting on logits.
* :class:`LogLinearClass` — Π_{φ,B} of Definition J.3: π_θ(y|x) ∝ π_zero(y|x)·exp⟨φ(x,y), θ⟩ with
  ‖θ‖₂ ≤ B, fitted by projected gradient steps (optax). Covering surrogate d·log(6B/ε) (Lemma J.4).
* :class:`ParametricClass` — any differentiable ``log_prob(params, x, y)`` (autoregressive policies:
  :meth:`ParametricClass.from_policy`), fitted by projected gradient steps.

Every class implements :class:`sharpsim.protocols.PolicyClass` (log-probs, members, log|Π| or a cover, the
exact or gradient MLE, the Eq. 8 / DPO minimiser, the XPO round-by-round minimiser): the algorithms call these
methods and never branch on the class's type. The gradient classes share their fits through
:class:`_GradientFits` (``init_params()``, ``log_prob(params, x, y)``, ``project(params)``, ``member(params)``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from sharpsim._validation import (
    as_numeric_array,
    check_log_prob_table,
    check_positive,
    check_positive_int,
    is_concrete,
)
from sharpsim.exact import bon_log_probs
from sharpsim.fitting import FitConfig, gradient_fit, select_with_ties, tie_priority
from sharpsim.policies import TabularPolicy, inverse_cdf_sample
from sharpsim.protocols import Policy, PolicyClass, is_policy_class

#: Full float32 contractions: GPUs otherwise default to TF32 (10-bit mantissa), enough to reorder the
#: likelihoods of nearby class members in the exact MLE.
_HIGHEST = jax.lax.Precision.HIGHEST

__all__ = [
    "PolicyClass",
    "Policy",
    "FiniteClass",
    "TabularClass",
    "LogLinearClass",
    "ParametricClass",
    "is_finite_class",
    "is_gradient_class",
    "check_class_matches",
    "count_table",
    "tabular_eq8_minimizer",
]


def _float_dtype():
    return jnp.result_type(float)


# ============================================================================================ finite
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FiniteClass:
    """A finite policy class with candidate conditionals ``log_probs[x, k, y] = log π_k(y|x)``.

    ``valid[x, k]`` marks real candidates (padding rows are never selected). With ``product=True`` the
    class is the product over prompts (one free choice per prompt); with ``product=False`` it is a stack
    of K whole policies (candidate k uses row k at every prompt).

    >>> import jax.numpy as jnp
    >>> cls = FiniteClass.stack(jnp.log(jnp.array([[[0.9, 0.1]], [[0.2, 0.8]]])))  # K=2 policies, X=1, Y=2
    >>> round(float(cls.log_class_size), 4), cls.mle_index(jnp.array([[1.0, 3.0]])).tolist()
    (0.6931, [1])
    """

    log_probs: Float[Array, "X K Y"]
    valid: Bool[Array, "X K"]
    product: bool = dataclasses.field(default=True, metadata=dict(static=True))

    # ------------------------------------------------------------------ construction
    @classmethod
    def product_class(cls, log_probs: Float[Array, "X K Y"], num_candidates=None) -> "FiniteClass":
        """Π = ∏_x {candidates at x}; ``num_candidates[x]`` real candidates (the rest padding)."""
        if is_concrete(log_probs):
            as_numeric_array(log_probs, "log_probs")
        lp = jnp.asarray(log_probs, _float_dtype())
        if lp.ndim != 3:
            raise ValueError(f"log_probs must have shape [X, K, Y], got {lp.shape}.")
        X, K, _ = lp.shape
        if num_candidates is None:
            valid = jnp.ones((X, K), bool)
        else:
            nc = as_numeric_array(num_candidates, "num_candidates")
            if nc.dtype.kind not in "iu":
                raise ValueError(f"num_candidates must hold integers, got dtype {nc.dtype}.")
            if nc.shape != (X,) or np.any(nc < 1) or np.any(nc > K):
                raise ValueError(f"num_candidates must be [X] = ({X},) with entries in [1, {K}], got {nc.tolist()}.")
            valid = jnp.asarray(np.arange(K)[None, :] < nc[:, None])
        _check_rows(lp, "log_probs")
        return cls(log_probs=lp, valid=valid, product=True)

    @classmethod
    def stack(cls, policies) -> "FiniteClass":
        """A stack of K whole policies: ``policies`` is ``[K, X, Y]`` log-probs or a sequence of policies."""
        if isinstance(policies, (list, tuple)):
            if not policies:
                raise ValueError("FiniteClass.stack needs at least one policy.")
            tables = [_as_log_probs(p) for p in policies]
            shapes = [tuple(np.shape(t)) for t in tables]
            if len(set(shapes)) > 1:
                i = next(i for i, s in enumerate(shapes) if s != shapes[0])
                raise ValueError(
                    f"FiniteClass.stack: policy {i} has shape {shapes[i]} but policy 0 has {shapes[0]}; every "
                    "policy must be [X, Y] over the same prompts and responses."
                )
            policies = jnp.stack(tables)
        elif is_concrete(policies):
            as_numeric_array(policies, "policies")
        lp = jnp.asarray(policies, _float_dtype())
        if lp.ndim != 3:
            raise ValueError(f"a stack of policies must have shape [K, X, Y], got {lp.shape}.")
        _check_rows(lp, "policies")
        lp = jnp.swapaxes(lp, 0, 1)
        return cls(log_probs=lp, valid=jnp.ones(lp.shape[:2], bool), product=False)

    @classmethod
    def from_instance(cls, instance) -> "FiniteClass":
        """The instance's finite product class (e.g. [M]^d of :func:`~sharpsim.instances.hard_instance`)."""
        if instance.class_log_probs is None:
            raise ValueError(f"instance {instance.name!r} has no finite class (class_log_probs is None).")
        return cls.product_class(instance.class_log_probs, instance.num_candidates)

    def bon_closure(self, N: int) -> "FiniteClass":
        """{π^BoN_N : π ∈ Π}: every candidate replaced by its exact best-of-N law (same log|Π|).

        Realizability (Assumption 4.1) for SFT-sharpening needs π_base^BoN_N ∈ Π; when π_base ∈ Π this
        class satisfies it. (The law is the BoN law under r_self = log π_k, i.e. under each candidate's own
        likelihood, which is the law of π_base^BoN_N for the true candidate.)
        """
        N = check_positive_int(N, "N")
        return dataclasses.replace(self, log_probs=_bon_rows(self.log_probs, N))

    # ------------------------------------------------------------------ views
    @property
    def num_prompts(self) -> int:
        return self.log_probs.shape[0]

    @property
    def num_candidates(self) -> int:
        return self.log_probs.shape[1]

    @property
    def num_responses(self) -> int:
        return self.log_probs.shape[2]

    @property
    def log_class_size(self) -> float:
        """log|Π| exactly: Σ_x log K_x (product) or log K (stack)."""
        counts = np.asarray(self.valid).sum(axis=1).astype(np.float64)
        return float(np.sum(np.log(counts))) if self.product else float(np.log(counts[0]))

    def log_covering_number(self, eps: float = 0.0) -> float:
        """A finite class is its own ε-net for every ε: log N(Π, ε) ≤ log|Π|."""
        del eps
        return self.log_class_size

    def member(self, index: Int[Array, " X"]) -> TabularPolicy:
        """The member policy with candidate ``index[x]`` at prompt x (a scalar index for a stack)."""
        index = jnp.broadcast_to(jnp.asarray(index, jnp.int32), (self.num_prompts,))
        return TabularPolicy(log_probs=self.log_probs[jnp.arange(self.num_prompts), index])

    def candidate_log_probs(self, x: Int[Array, "..."], y: Int[Array, "..."]) -> Float[Array, "... K"]:
        """log π_k(y|x) for every candidate k (the per-candidate evaluation used by all sufficient statistics)."""
        return self.log_probs[x, :, y]

    def select(self, scores: Float[Array, "X K"], *, maximize: bool) -> Int[Array, " X"]:
        """Exact arg-optimum of a per-(prompt, candidate) additive objective; NaN counts as the worst value.

        Product class: per-prompt argmax/argmin over valid candidates. Stack: the objective is summed over
        prompts first, then one candidate is chosen for all prompts. Ties go to the lowest index.
        """
        worst = -jnp.inf if maximize else jnp.inf
        s = jnp.where(jnp.isnan(scores), worst, scores)
        s = jnp.where(self.valid, s, worst)
        if not self.product:
            s = jnp.sum(s, axis=0)  # [K]; invalid entries never occur for a stack
            k = jnp.argmax(s) if maximize else jnp.argmin(s)
            return jnp.full((self.num_prompts,), k, jnp.int32)
        k = jnp.argmax(s, axis=1) if maximize else jnp.argmin(s, axis=1)
        return k.astype(jnp.int32)

    def log_likelihood_scores(self, counts: Float[Array, "X Y"]) -> Float[Array, "X K"]:
        """Σ_y counts[x, y]·log π_k(y|x) per (prompt, candidate), exact: −inf when a counted y has π_k(y|x) = 0.

        One einsum over [X, K, Y] for the finite part and one for the "impossible" indicator, so the
        ``0·(−inf) = NaN`` trap never arises.
        """
        lp = self.log_probs
        finite = jnp.isfinite(lp)
        ll = jnp.einsum("xky,xy->xk", jnp.where(finite, lp, 0.0), counts.astype(lp.dtype), precision=_HIGHEST)
        impossible = jnp.einsum("xky,xy->xk", (~finite).astype(lp.dtype), counts.astype(lp.dtype), precision=_HIGHEST)
        return jnp.where(impossible > 0, -jnp.inf, ll)

    def mle_index(self, counts: Float[Array, "X Y"]) -> Int[Array, " X"]:
        """argmax_{π∈Π} Σ_i log π(y_i|x_i) from the count table of the (x_i, y_i) (exact; sufficient statistics)."""
        return self.select(self.log_likelihood_scores(counts), maximize=True)

    # ------------------------------------------------------------------ PolicyClass protocol (exact fits)
    #: :meth:`fit_counts` is the exact MLE (the one-draw SFT sweeps need it).
    exact_mle = True

    def init_params(self) -> Int[Array, " X"]:
        return jnp.zeros((self.num_prompts,), jnp.int32)

    def log_prob(self, params, x, y):
        """log π_params(y|x) of the member with candidate ``params[x]`` at prompt x."""
        index = jnp.broadcast_to(jnp.asarray(params, jnp.int32), (self.num_prompts,))
        return self.log_probs[x, index[x], y]

    def draw(self, params, key, x):
        """One y ~ π_params(·|x) (inverse CDF on the member's row; XPO's learner draw)."""
        return inverse_cdf_sample(key, self.log_probs[x, params[x]], 1)[0]

    def fit_counts(self, counts: Float[Array, "X Y"]):
        """Exact MLE from a count table: ``(member policy, candidate indices [X])``."""
        index = self.mle_index(counts)
        return self.member(index), index

    def fit_mle(self, prompts, responses, fit=None, weights=None):
        """argmax_{π∈Π} Σ_i w_i log π(y_i|x_i), exact through the count table: ``(policy, index, info)``."""
        del fit
        policy, index = self.fit_counts(count_table(self.num_prompts, self.num_responses, prompts, responses, weights))
        return policy, index, {"nonfinite_step": jnp.asarray(-1, jnp.int32)}

    def pair_scores(self, pair_loss: Callable, x, y, yp) -> Float[Array, "n K"]:
        """Per-(pair, candidate) loss ``pair_loss(log π_k(y|x), log π_k(y'|x))`` ``[n, K]``; +inf where a
        candidate gives an observed response zero probability (it is then never selected)."""
        lp_y = self.candidate_log_probs(x, y)  # [n, K]
        lp_yp = self.candidate_log_probs(x, yp)
        per = jax.vmap(pair_loss, in_axes=(1, 1), out_axes=1)(lp_y, lp_yp)
        return jnp.where(jnp.isfinite(lp_y) & jnp.isfinite(lp_yp), per, jnp.inf)

    def fit_pairs(self, pair_loss: Callable, x, y, yp, *, tie_key, tie_break: str = "first", fit=None, eq8=None):
        """Exact argmin_{π∈Π} Σ_i pair_loss(log π(y_i|x_i), log π(y'_i|x_i)) (Eq. 8 / DPO) from per-candidate
        sums ``[X, K]``; ties (within ``TIE_RTOL``) by ``tie_break`` with the order drawn from ``tie_key``."""
        del fit, eq8
        per = self.pair_scores(pair_loss, x, y, yp)
        scores = jnp.zeros((self.num_prompts, self.num_candidates), per.dtype).at[x].add(per)
        index, _ = select_with_ties(self, scores, tie_priority(tie_key, self, tie_break))
        return self.member(index), index, {"nonfinite_step": jnp.asarray(-1, jnp.int32)}

    def xpo_rounds(self, objective, first, next_triple: Callable, round_keys, ts, *, T: int, tie_key,
                   tie_break: str = "first", fit=None, steps: int = 1):
        """Rounds 1..T of Algorithm 1's argmin, exact: running per-candidate sums ``[X, K]`` of
        ``objective.per_triple`` inside ``lax.scan``. Returns ``(iterates [T, X], objective [T], info)``."""
        del ts, T, fit, steps
        priority = tie_priority(tie_key, self, tie_break)

        def contrib(x, y, yt, r_y, r_yt, n_y, n_yt):
            return objective.per_triple(self.candidate_log_probs(x, y), self.candidate_log_probs(x, yt),
                                        r_y, r_yt, n_y, n_yt)

        def value(S, index):
            return jnp.sum(jnp.take_along_axis(S, index[:, None], axis=1)[:, 0])

        x1 = first[0]
        S = jnp.zeros((self.num_prompts, self.num_candidates), self.log_probs.dtype)
        S = S.at[x1].add(contrib(*first))
        index, _ = select_with_ties(self, S, priority)  # π^(2)

        def round_(carry, k):
            S, index = carry
            triple = next_triple(k, index)
            S = S.at[triple[0]].add(contrib(*triple))
            index, _ = select_with_ties(self, S, priority)
            return (S, index), (index, value(S, index))

        obj1 = value(S, index)
        (S, _), (hist, objs) = jax.lax.scan(round_, (S, index), round_keys)
        iterates = jnp.concatenate([index[None], hist], axis=0)  # [T, X]: π^(2), …, π^(T+1)
        return iterates, jnp.concatenate([obj1[None], objs]), {"nonfinite_step": jnp.asarray(-1, jnp.int32)}

    def select_iterate(self, iterates, selected):
        """``(member, params)`` of iterate ``selected`` (0 = π^(1), reported as params −1 everywhere)."""
        last = iterates[jnp.maximum(selected - 1, 0)]
        return self.member(last), jnp.where(selected == 0, -1, last)

    def __repr__(self) -> str:
        X, K, Y = self.log_probs.shape
        return f"FiniteClass(X={X}, K={K}, Y={Y}, product={self.product})"


@functools.partial(jax.jit, static_argnums=(1,))
def _bon_rows(log_probs, N):
    rows = log_probs.reshape(-1, log_probs.shape[-1])
    return jax.vmap(lambda r: bon_log_probs(r, N))(rows).reshape(log_probs.shape)


def _as_log_probs(p) -> Array:
    if isinstance(p, TabularPolicy):
        return p.log_probs
    if hasattr(p, "to_tabular"):
        return p.to_tabular().log_probs
    if is_concrete(p):
        as_numeric_array(p, "policies")
    return jnp.asarray(p)


def _check_rows(lp, name: str) -> None:
    check_log_prob_table(lp, name)


# ============================================================================================ gradient fits
def _first(tree):
    return jax.tree_util.tree_map(lambda a: a[0], tree)


class _GradientFits:
    """The PolicyClass fits of the gradient classes, written once against ``init_params``, ``log_prob``,
    ``project`` and ``member``: projected optax steps (:func:`sharpsim.fitting.gradient_fit`), an approximation
    to the exact argmin/argmax. :class:`TabularClass` overrides the fits it has in closed form."""

    exact_mle = False
    #: Whether :meth:`fit_pairs` has Eq. 8's exact closed-form minimiser (TabularClass).
    closed_form_eq8 = False

    def draw(self, params, key, x):
        """One y ~ π_params(·|x) from the member policy (XPO's learner draw)."""
        ys, _ = self.member(params).sample_and_log_prob(key, x, 1)
        return _first(ys)

    def fit_counts(self, counts):
        raise ValueError(
            f"{type(self).__name__} has no exact MLE from counts; the one-draw sweeps need an exact-MLE class "
            "(FiniteClass or TabularClass). Fit gradient classes per grid point with fit_mle."
        )

    def fit_mle(self, prompts, responses, fit=None, weights=None):
        """argmax Σ_i w_i log π(y_i|x_i) by projected optax steps on the weighted mean NLL."""
        fit = FitConfig() if fit is None else fit
        w = jnp.ones(jnp.shape(prompts), jnp.result_type(float)) if weights is None else weights

        def nll(params):
            return -jnp.sum(w * self.log_prob(params, prompts, responses)) / jnp.maximum(jnp.sum(w), 1.0)

        params, _, info = gradient_fit(nll, self.project(self.init_params()), self.project, fit)
        return self.member(params), params, info

    def fit_pairs(self, pair_loss: Callable, x, y, yp, *, tie_key=None, tie_break: str = "first", fit=None, eq8=None):
        """argmin of the mean pair loss by projected optax steps (``tie_key``/``tie_break``/``eq8`` unused)."""
        del tie_key, tie_break, eq8
        fit = FitConfig() if fit is None else fit

        def loss_fn(params):
            return jnp.mean(pair_loss(self.log_prob(params, x, y), self.log_prob(params, x, yp)))

        params, _, info = gradient_fit(loss_fn, self.project(self.init_params()), self.project, fit)
        return self.member(params), params, info

    def xpo_rounds(self, objective, first, next_triple: Callable, round_keys, ts, *, T: int, tie_key=None,
                   tie_break: str = "first", fit=None, steps: int = 10):
        """Rounds 1..T of Algorithm 1: ``steps`` projected optax steps per round on ``objective.batch_loss`` over
        the growing dataset (a buffer of T triples, masked to the first t), warm-started across rounds."""
        del tie_key, tie_break
        x1, y1, yt1, r1, rt1, n1, nt1 = first
        dtype = jnp.result_type(float)

        def buffer(a):
            return jnp.zeros((T,) + jnp.shape(a), jnp.asarray(a).dtype).at[0].set(a)

        buf = dict(x=buffer(x1), y=jax.tree_util.tree_map(buffer, y1), yt=jax.tree_util.tree_map(buffer, yt1),
                   r=buffer(r1).astype(dtype), rt=buffer(rt1).astype(dtype), n=buffer(n1).astype(dtype),
                   nt=buffer(nt1).astype(dtype))
        fit = dataclasses.replace(FitConfig() if fit is None else fit, steps=steps)

        def objective_fn(buf, t):
            mask = (jnp.arange(T) < t).astype(dtype)

            def loss(params):
                lp_y = self.log_prob(params, buf["x"], buf["y"])
                lp_yt = self.log_prob(params, buf["x"], buf["yt"])
                return objective.batch_loss(lp_y, lp_yt, buf, mask, t)

            return loss

        params0 = self.project(self.init_params())
        opt_state0 = fit.make().init(params0)
        params, opt_state, info = gradient_fit(objective_fn(buf, 1), params0, self.project, fit, opt_state=opt_state0)
        obj1 = objective_fn(buf, 1)(params)

        def round_(carry, inp):
            params, opt_state, buf = carry
            k, t = inp  # t = 1-based round index (2..T)
            x, y, yt, r_y, r_yt, n_y, n_yt = next_triple(k, params)
            i = t - 1
            setter = lambda b, a: b.at[i].set(a)  # noqa: E731
            buf = dict(x=setter(buf["x"], x), y=jax.tree_util.tree_map(setter, buf["y"], y),
                       yt=jax.tree_util.tree_map(setter, buf["yt"], yt), r=setter(buf["r"], r_y),
                       rt=setter(buf["rt"], r_yt), n=setter(buf["n"], n_y), nt=setter(buf["nt"], n_yt))
            params, opt_state, info = gradient_fit(objective_fn(buf, t), params, self.project, fit, opt_state=opt_state)
            return (params, opt_state, buf), (params, info, objective_fn(buf, t)(params))

        (_, _, buf), (hist, infos, objs) = jax.lax.scan(round_, (params, opt_state, buf), (round_keys, ts))
        iterates = jax.tree_util.tree_map(lambda a, h: jnp.concatenate([a[None], h], axis=0), params, hist)
        cat = lambda k: jnp.concatenate([info[k][None], infos[k]])  # noqa: E731
        extra = {"nonfinite_step": cat("nonfinite_step"), "nonfinite_loss": cat("nonfinite_loss"),
                 "nonfinite_grad_norm": cat("nonfinite_grad_norm")}
        return iterates, jnp.concatenate([obj1[None], objs]), extra

    def select_iterate(self, iterates, selected):
        """``(member, params)`` of iterate ``selected`` (0 = π^(1) maps to the first fitted iterate's params)."""
        last = jax.tree_util.tree_map(lambda a: a[jnp.maximum(selected - 1, 0)], iterates)
        return self.member(last), last


# ============================================================================================ tabular
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TabularClass(_GradientFits):
    """The full tabular softmax class: every conditional π(·|x) ∈ Δ(Y), parametrised by logits ``[X, Y]``.

    * Exact MLE (:meth:`mle`): π̂(y|x) = counts[x, y] / Σ_y counts[x, y]. Prompts never seen in the data
      carry no likelihood, so the MLE is not identified there; the documented rule ``unseen="uniform"``
      puts the uniform distribution on them (``unseen="zero_logits"`` is the same thing).
    * log|Π| is infinite; :meth:`log_covering_number` gives the surrogate X·Y·log(6B/ε) for logits in a
      box of half-width B (Lemma J.4 with d = X·Y).
    """

    num_prompts: int = dataclasses.field(metadata=dict(static=True))
    num_responses: int = dataclasses.field(metadata=dict(static=True))
    logit_bound: float = dataclasses.field(default=30.0, metadata=dict(static=True))

    def __post_init__(self):
        check_positive_int(self.num_prompts, "num_prompts")
        check_positive_int(self.num_responses, "num_responses")
        check_positive(self.logit_bound, "logit_bound")

    @classmethod
    def like(cls, policy) -> "TabularClass":
        """The tabular class over the same prompts and responses as ``policy``."""
        lp = _as_log_probs(policy)
        return cls(num_prompts=int(lp.shape[0]), num_responses=int(lp.shape[1]))

    log_class_size = None

    def log_covering_number(self, eps: float) -> float:
        check_positive(eps, "eps")
        return self.num_prompts * self.num_responses * math.log(max(6.0 * self.logit_bound / eps, 1.0))

    def mle(self, counts: Float[Array, "X Y"]) -> TabularPolicy:
        """Exact MLE: normalised counts; uniform at prompts with no data."""
        c = counts.astype(_float_dtype())
        tot = jnp.sum(c, axis=1, keepdims=True)
        probs = jnp.where(tot > 0, c / jnp.where(tot > 0, tot, 1.0), 1.0 / self.num_responses)
        return TabularPolicy(log_probs=jnp.log(probs))

    exact_mle = True
    closed_form_eq8 = True

    def fit_counts(self, counts: Float[Array, "X Y"]):
        """Exact MLE from counts: ``(policy, 0)`` (no compact index: the sweeps keep a scalar placeholder)."""
        return self.mle(counts), jnp.zeros((), jnp.int32)

    def fit_mle(self, prompts, responses, fit=None, weights=None):
        """Exact MLE (normalised counts): ``(policy, its log-prob table, info)``."""
        del fit
        policy = self.mle(count_table(self.num_prompts, self.num_responses, prompts, responses, weights))
        return policy, policy.log_probs, {"nonfinite_step": jnp.asarray(-1, jnp.int32)}

    def fit_pairs(self, pair_loss: Callable, x, y, yp, *, tie_key=None, tie_break: str = "first", fit=None, eq8=None):
        """With ``eq8 = (β, r_y, r_y')``: Eq. 8's exact minimiser in closed form (:func:`tabular_eq8_minimizer`);
        otherwise projected optax steps on the logits."""
        if eq8 is None:
            return super().fit_pairs(pair_loss, x, y, yp, fit=fit)
        beta, r_y, r_yp = eq8
        policy_lp = tabular_eq8_minimizer(self.num_prompts, self.num_responses, x, y, yp, r_y, r_yp, beta)
        policy = self.member(jnp.where(jnp.isfinite(policy_lp), policy_lp, -jnp.inf))
        return policy, policy_lp, {"nonfinite_step": jnp.asarray(-1, jnp.int32)}

    # gradient protocol: params are logits [X, Y]
    def init_params(self) -> Float[Array, "X Y"]:
        return jnp.zeros((self.num_prompts, self.num_responses), _float_dtype())

    def log_prob(self, params, x, y):
        return jax.nn.log_softmax(params, axis=-1)[x, y]

    def project(self, params):
        return jnp.clip(params, -self.logit_bound, self.logit_bound)

    def member(self, params) -> TabularPolicy:
        return TabularPolicy(log_probs=jax.nn.log_softmax(params, axis=-1))


# ============================================================================================ log-linear
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LogLinearClass(_GradientFits):
    """Π_{φ,B} of Definition J.3: π_θ(y|x) ∝ π_zero(y|x)·exp⟨φ(x,y), θ⟩, ‖θ‖₂ ≤ B, π_zero uniform.

    ``features`` is ``[X, Y, d]`` (a ``[Y, d]`` table is broadcast over prompts). Optimisation is projected
    gradient descent (optax), an approximation to the exact argmin. log N(Π, ε) ≤ d·log(6B/ε) (Lemma J.4).
    """

    features: Float[Array, "X Y d"]
    norm_bound: float = dataclasses.field(metadata=dict(static=True))

    @classmethod
    def create(cls, features, norm_bound: float, num_prompts: Optional[int] = None) -> "LogLinearClass":
        check_positive(norm_bound, "norm_bound")
        if num_prompts is not None:
            num_prompts = check_positive_int(num_prompts, "num_prompts")
        if is_concrete(features):
            fa = as_numeric_array(features, "features")
            if not np.all(np.isfinite(fa)):
                raise ValueError("features contain NaN or inf; every φ(x, y) must be a finite vector with ‖φ‖₂ ≤ 1.")
        f = jnp.asarray(features, _float_dtype())
        if f.ndim == 2:
            f = jnp.broadcast_to(f[None], (num_prompts or 1,) + f.shape)
        if f.ndim != 3:
            raise ValueError(f"features must be [X, Y, d] or [Y, d], got shape {f.shape}.")
        if is_concrete(f):
            norms = np.linalg.norm(np.asarray(f, np.float64), axis=-1)
            if np.any(norms > 1 + 1e-5):
                raise ValueError(f"Definition J.3 needs ‖φ(x, y)‖₂ ≤ 1; the largest feature norm is {norms.max():.6g}.")
        return cls(features=f, norm_bound=float(norm_bound))

    @classmethod
    def from_instance(cls, instance, norm_bound: Optional[float] = None) -> "LogLinearClass":
        """The log-linear class of a log-linear instance (e.g. Example J.1); B defaults to the instance's B."""
        if instance.features is None:
            raise ValueError(f"instance {instance.name!r} has no features; it is not log-linear.")
        B = norm_bound if norm_bound is not None else dict(instance.params).get("B", 1.0)
        return cls.create(instance.features, B, num_prompts=instance.pi_base.num_prompts)

    @property
    def num_prompts(self) -> int:
        return self.features.shape[0]

    @property
    def num_responses(self) -> int:
        return self.features.shape[1]

    @property
    def dim(self) -> int:
        return self.features.shape[2]

    log_class_size = None

    def log_covering_number(self, eps: float) -> float:
        """Lemma J.4: an ε-net of size (6B/ε)^d."""
        check_positive(eps, "eps")
        return self.dim * math.log(max(6.0 * self.norm_bound / eps, 1.0))

    def init_params(self) -> Float[Array, " d"]:
        return jnp.zeros((self.dim,), self.features.dtype)

    def table(self, theta) -> Float[Array, "X Y"]:
        return jax.nn.log_softmax(jnp.matmul(self.features, theta, precision=_HIGHEST), axis=-1)

    def log_prob(self, theta, x, y):
        return self.table(theta)[x, y]

    def project(self, theta):
        norm = jnp.linalg.norm(theta)
        return theta * jnp.minimum(1.0, self.norm_bound / jnp.maximum(norm, jnp.finfo(theta.dtype).tiny))

    def member(self, theta) -> TabularPolicy:
        return TabularPolicy(log_probs=self.table(theta))


# ============================================================================================ generic
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ParametricClass(_GradientFits):
    """Any differentiable class: ``log_prob_fn(params, x, y)`` plus a starting point ``params``.

    ``make_policy(params)`` returns a policy (anything with ``sample_and_log_prob``; needed by XPO, which
    samples from its iterates); ``project_fn`` is the constraint projection (identity by default).
    """

    params: Any
    log_prob_fn: Callable = dataclasses.field(metadata=dict(static=True))
    make_policy: Optional[Callable] = dataclasses.field(default=None, metadata=dict(static=True))
    project_fn: Optional[Callable] = dataclasses.field(default=None, metadata=dict(static=True))
    log_covering: Optional[Callable] = dataclasses.field(default=None, metadata=dict(static=True))

    @classmethod
    def from_policy(cls, policy, *, get_params: Callable = None, with_params: Callable = None,
                    project_fn: Optional[Callable] = None) -> "ParametricClass":
        """Wrap a parametric (e.g. autoregressive) policy: ``with_params(policy, p).log_prob(x, y)`` is the class.

        Defaults cover the autoregressive families: :class:`~sharpsim.policies.LinearSoftmaxPolicy`
        (``.theta`` / ``.with_theta``, with the per-position norm-ball projection when the policy has a
        ``norm_bound``), :class:`~sharpsim.policies.TransformerPolicy` (``.params`` / ``.with_params``) and
        :class:`~sharpsim.policies.MarkovPolicy` (its table as logits, normalised by ``log_softmax``). Any
        other policy needs ``get_params`` and ``with_params``; without them a ``ValueError`` says so.
        """
        if get_params is None or with_params is None:
            default = _default_param_access(policy)
            if default is None:
                raise ValueError(
                    f"ParametricClass.from_policy: no default parameter access for {type(policy).__name__}; give "
                    "get_params(policy) -> params and with_params(policy, params) -> policy."
                )
            get_params = get_params or default[0]
            with_params = with_params or default[1]
        B = getattr(policy, "norm_bound", None)
        if project_fn is None and B is not None:
            def project_fn(th, _B=float(B)):
                norms = jnp.linalg.norm(th, axis=-1, keepdims=True)
                return th * jnp.minimum(1.0, _B / jnp.maximum(norms, jnp.finfo(th.dtype).tiny))
        return cls(
            params=get_params(policy),
            log_prob_fn=lambda th, x, y: with_params(policy, th).log_prob(x, y),
            make_policy=lambda th: with_params(policy, th),
            project_fn=project_fn,
        )

    log_class_size = None

    def log_covering_number(self, eps: float) -> Optional[float]:  # noqa: D102
        return None if self.log_covering is None else float(self.log_covering(eps))

    def init_params(self):
        return self.params

    def log_prob(self, params, x, y):
        return self.log_prob_fn(params, x, y)

    def project(self, params):
        return params if self.project_fn is None else self.project_fn(params)

    def member(self, params):
        if self.make_policy is None:
            raise ValueError("this ParametricClass has no make_policy(params); give one to sample from its members.")
        return self.make_policy(params)


# ============================================================================================ helpers
def count_table(num_prompts: int, num_responses: int, prompts, picks, weights=None) -> Float[Array, "X Y"]:
    """counts[x, y] = Σ_i w_i [x_i = x, y_i = y]: the sufficient statistic of the exact MLE."""
    w = jnp.ones(prompts.shape, jnp.result_type(float)) if weights is None else weights
    return jnp.zeros((num_prompts, num_responses), w.dtype).at[prompts, picks].add(w)


def tabular_eq8_minimizer(num_prompts, num_responses, prompts, y, yp, r_y, r_yp, beta):
    """An exact minimiser of Eq. (8) over the tabular class, in closed form (zero empirical loss).

    The residual vanishes iff log π(y|x) − log π(y'|x) = (1 + 1/β)(r(y) − r(y')) on every observed pair, so
    logits (1 + 1/β)·r(x, y) on every *observed* response zero every residual. Responses never observed
    at x are not identified by the loss; the documented rule gives them probability 0 (the data-supported
    minimiser), and prompts never seen get the uniform distribution. As n grows every response with
    positive mass is observed and the minimiser tends to π*_β ∝ π_base^{1+1/β}.
    """
    dtype = jnp.result_type(float)
    logits = jnp.full((num_prompts, num_responses), -jnp.inf, dtype)
    scale = 1.0 + 1.0 / beta
    logits = logits.at[prompts, y].set(scale * r_y).at[prompts, yp].set(scale * r_yp)
    seen = jnp.any(jnp.isfinite(logits), axis=1, keepdims=True)
    logits = jnp.where(seen, logits, 0.0)
    return jax.nn.log_softmax(logits, axis=-1)


def _default_param_access(policy):
    """``(get_params, with_params)`` for the autoregressive families, or None."""
    if hasattr(policy, "theta") and hasattr(policy, "with_theta"):
        return (lambda p: p.theta), (lambda p, th: p.with_theta(th))
    if hasattr(policy, "params") and hasattr(policy, "with_params"):
        return (lambda p: p.params), (lambda p, params: p.with_params(params))
    from sharpsim.policies import MarkovPolicy

    if isinstance(policy, MarkovPolicy):  # the table as logits; log_softmax keeps every member normalised
        return (lambda p: p.log_probs), (
            lambda p, logits: dataclasses.replace(p, log_probs=jax.nn.log_softmax(logits, axis=-1)))
    return None


def is_finite_class(cls) -> bool:
    return isinstance(cls, FiniteClass)


def is_gradient_class(cls) -> bool:
    return isinstance(cls, (TabularClass, LogLinearClass, ParametricClass))


def check_class_matches(cls, pi_base, what: str) -> None:
    """Raise a clear ``ValueError`` when ``cls`` cannot represent policies over π_base's prompts/responses."""
    X = getattr(pi_base, "num_prompts", None)
    Y = getattr(pi_base, "num_responses", None)
    if not is_policy_class(cls):
        raise ValueError(f"{what}: unsupported policy class {type(cls).__name__}; use FiniteClass, TabularClass, "
                         "LogLinearClass, ParametricClass or another class implementing sharpsim.protocols.PolicyClass.")
    if getattr(cls, "num_prompts", None) is None:  # e.g. ParametricClass: no fixed prompt/response tables
        return
    if isinstance(X, int) and cls.num_prompts != X or isinstance(Y, int) and cls.num_responses != Y:
        raise ValueError(
            f"{what}: the class represents policies over X={cls.num_prompts} prompts and Y={cls.num_responses} "
            f"responses, but π_base has X={X}, Y={Y}; build the class over π_base's prompt and response spaces."
        )
