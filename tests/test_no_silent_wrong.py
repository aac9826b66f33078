"""Issue 12 (core library): bad inputs give a clear error, never a silently wrong result.

Each test names the old behaviour it catches; every one of them failed before the fix.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sharpsim
from sharpsim import FiniteClass, SampleEvaluateOracle, TabularPolicy
from sharpsim import instances
from sharpsim.classes import LogLinearClass, ParametricClass
from sharpsim.exact import kl_regularized_optimum
from sharpsim.metrics import mass_on, pass_at_n, sharpness_error

P = jnp.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def pi():
    return TabularPolicy.from_probs(P)


@pytest.fixture(scope="module")
def oracle(pi):
    return SampleEvaluateOracle(pi, jnp.array([0.5, 0.5]))


# ------------------------------------------------------------------------------------ clamped indices
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda pi, o: pi.log_prob(0, 7), r"y has response id 7 outside \[0, 3\)"),  # old: log 0.2
        (lambda pi, o: pi.log_prob(0, -1), r"response id -1 outside"),  # old: wrapped to log 0.2
        (lambda pi, o: pi.log_prob(2, 0), r"x has prompt id 2 outside \[0, 2\)"),  # old: row 1
        (lambda pi, o: pi.log_prob(0, 1.0), "integer response ids"),  # old: a float index
        (lambda pi, o: pi.sample(KEY, 5, 4), r"prompt id 5 outside \[0, 2\)"),  # old: [2 2 2 2]
        (lambda pi, o: pi.sample_and_log_prob(KEY, -1, 4), "prompt id -1"),  # old: row 1
        (lambda pi, o: pi.inverse_cdf_table().sample(KEY, 2, 3), "prompt id 2"),  # old: clamped row
        (lambda pi, o: o.respond(KEY, jnp.array([7, 7]), 3), r"prompts has prompt id 7"),  # old: wrong log-probs
        (lambda pi, o: o.evaluate(jnp.array([0, 1]), jnp.array([9, 9])), "response id 9"),  # old: values
        (lambda pi, o: o.evaluate(jnp.array([3, 1]), jnp.array([0, 0])), "prompt id 3"),
        (lambda pi, o: sharpsim.best_of_n(KEY, pi, 9, 4), "prompt id 9"),  # old: a best-of-4 from row 1
    ],
)
def test_out_of_range_indices_raise(pi, oracle, call, match):
    with pytest.raises(ValueError, match=match):
        call(pi, oracle)


def test_valid_indices_still_work(pi, oracle):
    np.testing.assert_allclose(pi.log_prob(jnp.array([0, 1]), jnp.array([2, 2])), np.log([0.2, 0.8]), rtol=1e-6)
    batch = oracle.respond(KEY, jnp.array([0, 1]), 5)
    np.testing.assert_array_equal(batch.log_probs, pi.log_prob(batch.prompts[:, None], batch.responses))


def test_checked_mode_catches_traced_out_of_range_indices(pi, oracle):
    # Under jit the values are unknown; old: the clamped entry came back, and there was no checked mode.
    f = jax.jit(lambda x, y: pi.log_prob(x, y))
    assert float(f(0, 2)) == pytest.approx(np.log(0.2), rel=1e-6)
    from jax.experimental.checkify import JaxRuntimeError

    with pytest.raises(JaxRuntimeError, match="out-of-bounds"):
        sharpsim.checked(f)(0, 7)
    with pytest.raises(JaxRuntimeError, match="out-of-bounds"):  # negative ids are not wrapped around
        sharpsim.checked(f)(-1, 0)
    with pytest.raises(JaxRuntimeError, match="out-of-bounds"):
        sharpsim.checked(jax.jit(lambda x: oracle.sampler.sample(KEY, x, 3)))(5)
    assert sharpsim.checked(f)(1, 2) == f(1, 2)


# ------------------------------------------------------------------------------------ NaN / garbage from accepted parameters
def test_kl_regularized_optimum_tiny_beta_is_the_argmax_limit():
    # Old: all NaN in float32 ((1 + 1/β) overflows to inf and inf·0 = NaN).
    Q = TabularPolicy.from_probs(jnp.array([[0.5, 0.3, 0.2], [0.4, 0.4, 0.2]]))
    for beta in (1e-39, 1e-37, 1e-300):
        probs = np.asarray(kl_regularized_optimum(Q, beta).probs)
        assert np.all(np.isfinite(probs)), beta
        np.testing.assert_allclose(probs, [[1, 0, 0], [0.5, 0.5, 0]], atol=1e-6)  # ties split evenly


def test_metrics_reject_unnormalised_raw_policies(pi):
    raw = TabularPolicy(log_probs=jnp.zeros((2, 3)))  # rows sum to 3; old: sharpness_error returned 0
    mu = jnp.array([0.5, 0.5])
    with pytest.raises(ValueError, match="pi_hat.log_probs.*sums to 3"):
        sharpness_error(raw, pi, mu, 0.1)
    with pytest.raises(ValueError, match="pi_base.log_probs"):
        sharpness_error(pi, raw, mu, 0.1)
    with pytest.raises(ValueError, match="NaN"):
        sharpsim.coverage(TabularPolicy(log_probs=jnp.full((2, 3), jnp.nan)), mu)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda pi: sharpsim.concentrability_beta(pi, pi, jnp.array([0.5, 0.5]), np.inf), "beta"),  # old: accepted
        (lambda pi: kl_regularized_optimum(pi, np.inf), "beta"),
        (lambda pi: instances.hard_instance_for(KEY, 0.01, np.nan, 2), "C"),  # old: int(nan) deep error
        (lambda pi: instances.hard_instance_for(KEY, 0.01, -1.0, 2), "C"),  # old: silently M = 3
        (lambda pi: instances.planted_mode(KEY, 2, 10, np.inf, 0.5), "coverage"),  # guard (raised before too)
        (lambda pi: instances.planted_mode(KEY, 2, 10, 2.0, np.inf), "margin"),  # guard (raised before too)
        (lambda pi: instances.planted_mode(KEY, 2, 10, 2.0, 0.5, mu=[np.nan, 1.0]), "mu"),  # old: accepted
        (lambda pi: instances.example_j1(KEY, 3, 4, min_distance=np.nan), "min_distance"),
        (lambda pi: LogLinearClass.create(jnp.full((3, 2), jnp.nan), 1.0), "features"),  # old: accepted
        (lambda pi: FiniteClass.product_class(jnp.log(jnp.ones((2, 2, 2)) / 2), [np.nan, 1]), "num_candidates"),
        (lambda pi: sharpsim.max_likelihood_stopping_rule(np.inf), "mu_stop"),
    ],
)
def test_non_finite_parameters_raise(pi, call, match):
    with pytest.raises(ValueError, match=match):
        call(pi)


def test_pass_at_n_keeps_precision_for_tiny_probabilities():
    # Old: 1 − exp(N·log1p(−p)) in float32 gave 0 for p = 1e-9, N = 10 (true value 1e-8 to 5e-17).
    p = 1e-9
    Q = TabularPolicy.from_probs(jnp.array([[p, 1.0 - p]]))
    got = float(pass_at_n(Q, jnp.array([[True, False]]), jnp.ones(1), 10))
    expected = float(np.exp(Q.log_probs[0, 0])) * 10  # 1 − (1 − p)^10 = 10p to relative 5e-9
    assert got == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------------------------ float32 sampler resolution
def test_float32_sampler_resolves_probabilities_below_the_uniform_grid():
    # 2^17 responses of mass 5e-8 (below the 2^-23 ≈ 1.2e-7 grid of one float32 uniform) ahead of one heavy
    # response. Old: only ~42% of the light responses could ever be drawn, so the draws that land there
    # collide far more often than uniform draws over all of them (870 collisions against 371 expected for
    # this key). Collisions among D uniform draws over T cells have mean D − T(1 − (1 − 1/T)^D) and, in this
    # sparse regime, a variance below that mean; a 6-sigma band has false-failure rate < 1e-8.
    T, eps = 1 << 17, 5e-8
    p = np.full(T + 1, eps)
    p[-1] = 1.0 - T * eps
    Q = TabularPolicy.from_probs(p[None])
    if Q.log_probs.dtype != jnp.float32:
        pytest.skip("the two-level sampler is for float32 tables")
    ys = np.asarray(Q.sample(jax.random.key(1), 0, 1_500_000))
    tail = ys[ys < T]
    D = tail.size
    collisions = D - np.unique(tail).size
    expected = D - T * (1.0 - (1.0 - 1.0 / T) ** D)
    assert abs(collisions - expected) < 6 * np.sqrt(expected), (collisions, expected)
    # the prepared table draws exactly the same responses, with their own log-probabilities
    table = Q.inverse_cdf_table()
    assert table.two_level
    ys2, lps2 = table.sample_and_log_prob(jax.random.key(1), 0, 1000)
    np.testing.assert_array_equal(ys2, ys[:1000])
    np.testing.assert_array_equal(lps2, Q.log_prob(0, ys2))


def test_small_tables_keep_their_random_streams():
    # Pinned draws of the one-level sampler before the two-level change (commit e08ed06): experiments that
    # sample from tables with at most 2^16 responses must reproduce their old rows exactly.
    P1 = np.random.default_rng(0).dirichlet(np.full(1000, 0.5), size=2)
    Q = TabularPolicy.from_probs(P1)
    if Q.log_probs.dtype != jnp.float32:
        pytest.skip("pinned in float32")
    assert Q.sample(jax.random.key(3), 1, 8).tolist() == [70, 960, 688, 986, 267, 626, 94, 388]
    P2 = np.random.default_rng(0).dirichlet(np.full(65536, 0.5), size=1)
    Q2 = TabularPolicy.from_probs(P2)
    assert Q2.sample(jax.random.key(3), 0, 8).tolist() == [4869, 61503, 42385, 63937, 18147, 38092, 6952, 24891]
    assert Q2.inverse_cdf_table().sample(jax.random.key(3), 0, 8).tolist() == Q2.sample(jax.random.key(3), 0, 8).tolist()


# ------------------------------------------------------------------------------------ one-line errors instead of deep tracebacks
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda pi, o: pi.sample(0, 0, 4), r"key must be a JAX PRNG key, e\.g\. jax\.random\.key\(seed\)"),
        (lambda pi, o: o.sample_and_evaluate(3, 2, 2), "key must be a JAX PRNG key"),
        (lambda pi, o: sharpsim.best_of_n(1.5, pi, 0, 4), "key must be a JAX PRNG key"),
        (lambda pi, o: instances.planted_mode(0, 2, 10, 2.0, 0.5), "key must be a JAX PRNG key"),
        (lambda pi, o: mass_on(pi, jnp.ones((3, 3), bool)), r"mask has shape \(3, 3\) but pi has shape \(2, 3\)"),
        (lambda pi, o: FiniteClass.stack([pi, TabularPolicy.from_probs(jnp.ones((2, 4)) / 4)]), "policy 1 has shape"),
        (lambda pi, o: SampleEvaluateOracle(P, jnp.array([0.5, 0.5])), "pi_base must be a policy"),
        (lambda pi, o: TabularPolicy.from_probs([["a", "b"]]), "probs must hold real numbers"),
        (lambda pi, o: TabularPolicy.from_probs([[0.5, 0.5], [1.0]]), "probs must be a rectangular array"),
        (lambda pi, o: sharpness_error(pi, pi, jnp.array([0.5, 0.5]), "0.1"), "delta must be a real number"),
        (lambda pi, o: pi.sample(KEY, 0, 2**40), "too large"),
    ],
)
def test_bad_arguments_give_one_line_errors(pi, oracle, call, match):
    with pytest.raises(ValueError, match=match):
        call(pi, oracle)


# ------------------------------------------------------------------------------------ docs that match the code
def test_parametric_class_from_every_autoregressive_policy():
    # Old: ParametricClass.from_policy(TransformerPolicy) raised AttributeError 'theta' (docs said it works).
    tp = sharpsim.TransformerPolicy.init(KEY, num_prompts=2, vocab_size=3, horizon=2, d_model=8)
    mp = sharpsim.MarkovPolicy.from_logits(jax.random.normal(KEY, (2, 2, 4, 3)))
    y = jnp.array([[0, 1], [2, 2]])
    x = jnp.array([0, 1])
    for policy in (tp, mp):
        cls = ParametricClass.from_policy(policy)
        np.testing.assert_allclose(cls.log_prob(cls.init_params(), x, y), policy.log_prob(x, y), rtol=1e-5)
        assert cls.member(cls.init_params()).log_prob(0, y[0]) == policy.log_prob(0, y[0])
    with pytest.raises(ValueError, match="get_params"):
        ParametricClass.from_policy(object())


def test_documented_cumulative_sum_imports():
    from sharpsim.policies import cumulative_sum  # old: ImportError though docs/api.md lists it

    np.testing.assert_allclose(cumulative_sum(jnp.arange(5.0)), np.cumsum(np.arange(5.0)))


def test_extreme_temperatures_draw_from_the_limit_not_from_nan():
    # Old: T = 1e-30 made lp / T all -inf, so log_softmax was NaN and every draw was token 0 whatever the
    # policy; T = 1e-40 (subnormal, flushed to 0) and 1e300 (inf in float32) gave NaN too: now they raise.
    logits = jnp.log(jnp.array([[[[0.2, 0.8], [0.2, 0.8], [0.2, 0.8]]]]))  # X=1, H=1, V=2: token 1 is the mode
    mp = sharpsim.MarkovPolicy.from_logits(logits)
    for T in (1e-37, 1e-30):
        ys, lps = mp.sample_and_log_prob(KEY, 0, 64, temperature=T)
        assert np.all(np.asarray(ys) == 1), T  # T -> 0: greedy
        np.testing.assert_allclose(lps, np.log(0.8), rtol=1e-6)
    for T in (1e-40, 1e-300, 1e300):
        if mp.log_probs.dtype == jnp.float32:  # all three lie outside float32's normal range
            with pytest.raises(ValueError, match="temperature"):
                mp.sample_and_log_prob(KEY, 0, 4, temperature=T)
    mp_eos = sharpsim.MarkovPolicy.from_logits(jnp.zeros((1, 3, 4, 3)), eos_id=0)
    ys, lps = mp_eos.sample_and_log_prob(KEY, 0, 256, temperature=1e30)
    assert np.all(np.isfinite(np.asarray(lps)))
    np.testing.assert_array_equal(lps, mp_eos.log_prob(0, ys))  # canonical sequences only (EOS forcing kept)
