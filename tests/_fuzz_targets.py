"""Bad-input targets shared by ``tests/test_fuzz_inputs.py`` and ``tools/bad_inputs_census.py``.

A *target* is one argument slot of one public constructor, config or metric of the core library, with the
other arguments valid: ``call(bad_value)``. ``kind`` says what a bad value must give:

* ``"index"``: only out-of-range or non-integer indices are thrown at it, so it must raise;
* ``"value"``: it must raise, or return a result without NaN (a valid value, e.g. γ = 0, is allowed).

:func:`classify` sorts an outcome into ``clear error`` (a ``ValueError``/``TypeError`` raised by sharpsim's
own code), ``deep traceback`` (any other exception, or one raised inside NumPy/JAX), ``silent wrong``
(accepted, with NaN in the result or an out-of-range index accepted) or ``accepted``.
"""

from __future__ import annotations

import math
import os
import traceback
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

import sharpsim
from sharpsim import FiniteClass, SampleEvaluateOracle, TabularPolicy, instances
from sharpsim import algorithms as alg
from sharpsim import exact, metrics
from sharpsim.classes import LogLinearClass, ParametricClass, TabularClass

_PKG = os.path.dirname(os.path.abspath(sharpsim.__file__))

X, Y = 2, 3
P = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
MU = np.array([0.5, 0.5])
KEY = jax.random.key(0)


def _fixtures():
    pi = TabularPolicy.from_probs(P)
    return dict(
        pi=pi,
        table=pi.inverse_cdf_table(),
        oracle=SampleEvaluateOracle(pi, jnp.asarray(MU)),
        markov=sharpsim.MarkovPolicy.from_logits(jnp.zeros((X, 2, 4, 3))),
        correct=jnp.array([[True, False, False], [False, False, True]]),
    )


F: dict[str, Any] = {}


def fx(name):
    if not F:
        F.update(_fixtures())
    return F[name]


# ------------------------------------------------------------------------------------------------ bad values
NAN, INF = math.nan, math.inf
BAD_SCALARS = [NAN, INF, -INF, -1.0, 0.0, 1.0, -1e300, 1e300, 1e-300, 2**40, -(2**40), "0.5", None,
               [0.5, 0.5], np.zeros((2, 2)), 1 + 1j, np.float32(NAN), np.array([NAN])]
BAD_INTS = [0, -1, -(2**40), 2**40, 2**70, 2.5, 3.0, NAN, INF, "3", None, np.array([1, 2]), np.float32(3)]
BAD_INDICES = [X + 5, 7, 9, -1, -7, 2**31, -(2**40), 1.0, 0.5, NAN, "0", None, np.array([[[9]]]),
               np.array([0.0, 1.0]), np.array([0, 100])]


def bad_arrays(shape):
    """Arrays of the right shape with bad entries, plus wrong rank, wrong dtype, empty and ragged inputs."""
    out = []
    for fill in (NAN, INF, -INF, -1.0, 1e300, 3.0, 0.0):
        a = np.full(shape, 1.0 / shape[-1])
        a.flat[0] = fill
        out.append(a)
    out += [np.full(shape, NAN), np.zeros(shape), np.ones(shape)]  # all NaN, all zero, unnormalised
    out += [np.ones(shape[:-1]), np.ones(shape + (2,)), np.float64(0.5), np.zeros((0,) + shape[1:])]
    out += [np.full(shape, "a"), np.full(shape, 1 + 1j), [[0.5, 0.5], [1.0]], None]
    return out


# ------------------------------------------------------------------------------------------------ targets
Target = tuple[str, str, Callable[[Any], Any], list]


def _targets() -> list[Target]:
    pi = lambda: fx("pi")  # noqa: E731
    o = lambda: fx("oracle")  # noqa: E731
    T: list[Target] = []

    def add(name, kind, call, values):
        T.append((name, kind, call, values))

    # policies
    add("TabularPolicy.from_probs(probs)", "value", lambda v: TabularPolicy.from_probs(v), bad_arrays((X, Y)))
    add("TabularPolicy.from_logits(logits)", "value", lambda v: TabularPolicy.from_logits(v),
        [a for a in bad_arrays((X, Y)) if not (isinstance(a, np.ndarray) and a.dtype == float and a.shape == (X, Y)
                                               and np.all(np.isfinite(a)))] + [np.full((X, Y), -INF)])
    add("TabularPolicy.log_prob(x)", "index", lambda v: pi().log_prob(v, 0), BAD_INDICES)
    add("TabularPolicy.log_prob(y)", "index", lambda v: pi().log_prob(0, v), BAD_INDICES)
    add("TabularPolicy.sample(key)", "value", lambda v: pi().sample(v, 0, 3), [0, 1.5, "k", None, np.zeros(2)])
    add("TabularPolicy.sample(x)", "index", lambda v: pi().sample(KEY, v, 3), BAD_INDICES)
    add("TabularPolicy.sample(num)", "value", lambda v: pi().sample(KEY, 0, v), BAD_INTS)
    add("TabularPolicy.sample_and_log_prob(x)", "index", lambda v: pi().sample_and_log_prob(KEY, v, 3), BAD_INDICES)
    add("InverseCDFTable.sample(x)", "index", lambda v: fx("table").sample(KEY, v, 3), BAD_INDICES)
    add("InverseCDFTable.sample_and_log_prob(x)", "index", lambda v: fx("table").sample_and_log_prob(KEY, v, 3),
        BAD_INDICES)
    add("MarkovPolicy.from_logits(logits)", "value", lambda v: sharpsim.MarkovPolicy.from_logits(v),
        bad_arrays((X, 2, 4, 3))[:1] + [np.full((X, 2, 4, 3), INF), np.zeros((X, 2, 3, 3)), "a", None])
    add("MarkovPolicy.from_probs(probs)", "value", lambda v: sharpsim.MarkovPolicy.from_probs(v), bad_arrays((X, 2, 4, 3)))
    add("AutoregressivePolicy.log_prob(x)", "index", lambda v: fx("markov").log_prob(v, jnp.array([0, 1])), BAD_INDICES)
    add("AutoregressivePolicy.log_prob(y)", "index", lambda v: fx("markov").log_prob(0, np.array([0, v]) if
        isinstance(v, int) else v), BAD_INDICES)
    add("AutoregressivePolicy.sample_and_log_prob(temperature)", "value",
        lambda v: fx("markov").sample_and_log_prob(KEY, 0, 4, temperature=v), BAD_SCALARS)
    add("TransformerPolicy.init(sizes)", "value",
        lambda v: sharpsim.TransformerPolicy.init(KEY, num_prompts=v, vocab_size=3, horizon=2, d_model=8), BAD_INTS)
    # oracle
    add("SampleEvaluateOracle(pi_base)", "value", lambda v: SampleEvaluateOracle(v, jnp.asarray(MU)),
        [P, P.tolist(), None, "pi", np.zeros((2, 2, 2))])
    add("SampleEvaluateOracle(mu)", "value", lambda v: SampleEvaluateOracle(pi(), v), bad_arrays((X,)))
    add("SampleEvaluateOracle(budget)", "value", lambda v: SampleEvaluateOracle(pi(), MU, budget=v), BAD_INTS)
    add("oracle.sample_and_evaluate(n)", "value", lambda v: o().sample_and_evaluate(KEY, v, 2), BAD_INTS)
    add("oracle.sample_and_evaluate(N)", "value", lambda v: o().sample_and_evaluate(KEY, 2, v), BAD_INTS)
    add("oracle.sample_and_evaluate(key)", "value", lambda v: o().sample_and_evaluate(v, 2, 2), [0, 2.0, None, "0"])
    add("oracle.respond(prompts)", "index", lambda v: o().respond(KEY, np.atleast_1d(np.asarray(v, dtype=object))
                                                              if v is None else np.atleast_1d(v), 2), BAD_INDICES)
    add("oracle.evaluate(prompts)", "index", lambda v: o().evaluate(v, 0), BAD_INDICES)
    add("oracle.evaluate(responses)", "index", lambda v: o().evaluate(0, v), BAD_INDICES)
    add("oracle.sample_adaptive(chunk)", "value",
        lambda v: o().sample_adaptive(KEY, 2, sharpsim.max_likelihood_stopping_rule(2.0), chunk=v), BAD_INTS)
    add("max_likelihood_stopping_rule(mu_stop)", "value", lambda v: sharpsim.max_likelihood_stopping_rule(v), BAD_SCALARS)
    # metrics
    add("argmax_set(gamma)", "value", lambda v: metrics.argmax_set(pi(), v), BAD_SCALARS)
    add("argmax_set(pi)", "value", lambda v: metrics.argmax_set(v), bad_arrays((X, Y)))
    add("mass_on(mask)", "value", lambda v: metrics.mass_on(pi(), v), bad_arrays((X, Y)))
    add("sharpness_error(delta)", "value", lambda v: metrics.sharpness_error(pi(), pi(), MU, v), BAD_SCALARS)
    add("sharpness_error(gamma)", "value", lambda v: metrics.sharpness_error(pi(), pi(), MU, 0.1, v), BAD_SCALARS)
    add("sharpness_error(mu)", "value", lambda v: metrics.sharpness_error(pi(), pi(), v, 0.1), bad_arrays((X,)))
    add("sharpness_error(pi_hat)", "value", lambda v: metrics.sharpness_error(v, pi(), MU, 0.1), bad_arrays((X, Y)))
    add("sharpness_error(raw TabularPolicy)", "value",
        lambda v: metrics.sharpness_error(TabularPolicy(log_probs=jnp.asarray(v, jnp.float32)), pi(), MU, 0.1),
        [np.zeros((X, Y)), np.full((X, Y), NAN), np.full((X, Y), INF), np.log(np.full((X, Y), 0.5))])
    add("is_sharpened(epsilon)", "value", lambda v: metrics.is_sharpened(pi(), pi(), MU, v, 0.1), BAD_SCALARS)
    add("coverage(gamma)", "value", lambda v: metrics.coverage(pi(), MU, gamma=v), BAD_SCALARS)
    add("coverage(p)", "value", lambda v: metrics.coverage(pi(), MU, p=v), BAD_INTS)
    add("coverage(mu)", "value", lambda v: metrics.coverage(pi(), v), bad_arrays((X,)))
    add("coverage_bar(mu)", "value", lambda v: metrics.coverage_bar(pi(), v), bad_arrays((X,)))
    add("concentrability(pi)", "value", lambda v: metrics.concentrability(v, pi(), MU), bad_arrays((X, Y)))
    add("concentrability_beta(beta)", "value", lambda v: metrics.concentrability_beta(pi(), pi(), MU, v), BAD_SCALARS)
    add("margin(mu)", "value", lambda v: metrics.margin(pi(), v), bad_arrays((X,)))
    add("pass_at_n(N)", "value", lambda v: metrics.pass_at_n(pi(), fx("correct"), MU, v), BAD_INTS)
    add("pass_at_n(correct)", "value", lambda v: metrics.pass_at_n(pi(), v, MU, 4), bad_arrays((X, Y)))
    # closed forms
    add("bon_policy(N)", "value", lambda v: exact.bon_policy(pi(), v), BAD_INTS)
    add("bon_success_probability(gamma)", "value", lambda v: exact.bon_success_probability(pi(), 4, v), BAD_SCALARS)
    add("kl_regularized_optimum(beta)", "value", lambda v: exact.kl_regularized_optimum(pi(), v), BAD_SCALARS)
    add("best_of_n(x)", "index", lambda v: sharpsim.best_of_n(KEY, pi(), v, 4), BAD_INDICES)
    add("best_of_n(N)", "value", lambda v: sharpsim.best_of_n(KEY, pi(), 0, v), BAD_INTS)
    add("best_of_n(key)", "value", lambda v: sharpsim.best_of_n(v, pi(), 0, 4), [0, 1.0, None, "k"])
    # instances
    add("planted_mode(coverage)", "value", lambda v: instances.planted_mode(KEY, 2, 10, v, 0.5), BAD_SCALARS)
    add("planted_mode(margin)", "value", lambda v: instances.planted_mode(KEY, 2, 10, 2.0, v), BAD_SCALARS)
    add("planted_mode(num_responses)", "value", lambda v: instances.planted_mode(KEY, 2, v, 2.0, 0.5), BAD_INTS)
    add("planted_mode(key)", "value", lambda v: instances.planted_mode(v, 2, 10, 2.0, 0.5), [0, None, "k", 1.5])
    add("hard_instance(Delta)", "value", lambda v: instances.hard_instance(KEY, 2, 4, v), BAD_SCALARS)
    add("hard_instance(gamma)", "value", lambda v: instances.hard_instance(KEY, 2, 4, 0.1, gamma=v), BAD_SCALARS)
    add("hard_instance(M)", "value", lambda v: instances.hard_instance(KEY, 2, v, 0.1), BAD_INTS)
    add("hard_instance_for(epsilon)", "value", lambda v: instances.hard_instance_for(KEY, v, 1.0, 2), BAD_SCALARS)
    add("hard_instance_for(C)", "value", lambda v: instances.hard_instance_for(KEY, 0.01, v, 2), BAD_SCALARS)
    add("example_j1(min_distance)", "value", lambda v: instances.example_j1(KEY, 3, 4, min_distance=v, max_tries=2000),
        BAD_SCALARS)
    # classes
    def _log(v):
        if isinstance(v, np.ndarray) and v.dtype == float:
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.log(v)
        return v

    add("FiniteClass.product_class(log_probs)", "value", lambda v: FiniteClass.product_class(_log(v)),
        bad_arrays((X, 2, Y)))
    add("FiniteClass.product_class(num_candidates)", "value", lambda v: FiniteClass.product_class(
        np.log(np.full((X, 2, Y), 1.0 / Y)), v), [np.array([NAN, 1.0]), np.array([0, 1]), np.array([3, 1]),
                                                   np.array([1.5, 1.0]), "a", np.array([1])])
    add("FiniteClass.stack(policies)", "value", lambda v: FiniteClass.stack(v),
        [[pi(), TabularPolicy.from_probs(np.full((X, 4), 0.25))], [], [P, "a"], np.zeros((2, X, Y)),
         np.full((2, X, Y), NAN)])
    add("TabularClass(logit_bound)", "value", lambda v: TabularClass(2, 3, v), BAD_SCALARS)
    add("TabularClass(num_prompts)", "value", lambda v: TabularClass(v, 3), BAD_INTS)
    add("LogLinearClass.create(features)", "value", lambda v: LogLinearClass.create(v, 1.0),
        bad_arrays((Y, 2))[:11] + ["a", None])
    add("LogLinearClass.create(norm_bound)", "value", lambda v: LogLinearClass.create(np.zeros((Y, 2)), v), BAD_SCALARS)
    add("ParametricClass.from_policy(policy)", "value", lambda v: ParametricClass.from_policy(v), [None, P, "a", object()])
    # configs
    add("SFTConfig(n)", "value", lambda v: alg.SFTConfig(n=v, N=2), BAD_INTS)
    add("SFTConfig(N)", "value", lambda v: alg.SFTConfig(n=2, N=v), BAD_INTS)
    add("FitConfig(learning_rate)", "value", lambda v: alg.FitConfig(learning_rate=v), BAD_SCALARS)
    add("FitConfig(steps)", "value", lambda v: alg.FitConfig(steps=v), BAD_INTS)
    add("AdaptiveSFTConfig(delta)", "value", lambda v: alg.AdaptiveSFTConfig(n=2, delta=v), BAD_SCALARS)
    add("AdaptiveSFTConfig(mu_stop)", "value", lambda v: alg.AdaptiveSFTConfig(n=2, mu_stop=v), BAD_SCALARS)
    add("sft_sharpening(key)", "value", lambda v: alg.sft_sharpening(v, o(), TabularClass(2, 3), alg.SFTConfig(2, 2)),
        [0, None, "k", 2.0])
    return T


# XPOConfig / RLHFConfig finiteness belongs to another part of issue 12 (sharpsim/algorithms/_xpo.py, _rlhf.py).
def config_targets_elsewhere() -> list[Target]:
    return [
        ("XPOConfig(alpha)", "value", lambda v: alg.XPOConfig(T=2, beta=0.5, alpha=v), BAD_SCALARS),
        ("XPOConfig(beta)", "value", lambda v: alg.XPOConfig(T=2, beta=v, alpha=0.1), BAD_SCALARS),
        ("RLHFConfig(beta)", "value", lambda v: alg.RLHFConfig(n=4, beta=v), BAD_SCALARS),
    ]


TARGETS = _targets()


def _from_sharpsim(err: BaseException) -> bool:
    tb = traceback.extract_tb(err.__traceback__)
    return bool(tb) and os.path.abspath(tb[-1].filename).startswith(_PKG)


def _non_finite_field(out) -> str | None:
    """A scalar float field of a returned dataclass (config, class) that is NaN or ±inf, or a string field."""
    import dataclasses

    if not dataclasses.is_dataclass(out) or isinstance(out, type):
        return None
    for f in dataclasses.fields(out):
        v = getattr(out, f.name)
        if isinstance(v, (float, np.floating)) and not math.isfinite(v):
            return f"{f.name}={v!r} stored"
        if isinstance(v, str) and f.name not in ("name", "loss", "tabular_method", "optimizer", "tie_break"):
            return f"{f.name}={v!r} (a string) stored"
        sub = _non_finite_field(v)
        if sub:
            return f"{f.name}.{sub}"
    return None


def _has_nan(out) -> bool:
    for leaf in jax.tree_util.tree_leaves(out):
        try:
            a = np.asarray(leaf)
        except Exception:  # noqa: BLE001 - typed PRNG keys and other non-numeric leaves
            continue
        if a.dtype.kind in "fc" and np.any(np.isnan(a)):
            return True
    return False


def classify(kind: str, call: Callable[[Any], Any], value: Any) -> tuple[str, str]:
    """``(outcome, detail)`` with outcome in {"clear error", "deep traceback", "silent wrong", "accepted"}."""
    try:
        out = call(value)
        out = jax.block_until_ready(out) if out is not None else out
    except (ValueError, TypeError) as err:
        if _from_sharpsim(err):
            return "clear error", f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
        return "deep traceback", f"{type(err).__name__} from {traceback.extract_tb(err.__traceback__)[-1].filename}: {err}"
    except Exception as err:  # noqa: BLE001 - the point is to catch what escapes
        return "deep traceback", f"{type(err).__name__}: {str(err)[:200]}"
    if kind == "index":
        return "silent wrong", f"out-of-range index {value!r} accepted"
    if _has_nan(out):
        return "silent wrong", f"NaN in the result for {value!r}"
    bad_field = _non_finite_field(out)
    if bad_field:
        return "silent wrong", f"accepted {value!r}: {bad_field}"
    if isinstance(value, (str, bytes)):
        return "silent wrong", f"the string {value!r} was accepted where a number or array belongs"
    return "accepted", repr(value)[:80]
