"""TabularPolicy: construction, validation, sampler correctness, jit/vmap, tiny probabilities."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from sharpsim import TabularPolicy


def _random_table(rng, X, Y, zeros=0):
    P = rng.dirichlet(np.ones(Y) * 0.7, size=X)
    if zeros:
        P[:, rng.choice(Y, zeros, replace=False)] = 0.0
        P /= P.sum(1, keepdims=True)
    return P


def test_from_probs_and_from_logits_agree():
    rng = np.random.default_rng(0)
    L = rng.normal(size=(3, 7))
    P = np.exp(L) / np.exp(L).sum(1, keepdims=True)
    a, b = TabularPolicy.from_probs(P), TabularPolicy.from_logits(L)
    np.testing.assert_allclose(a.log_probs, b.log_probs, atol=1e-5)
    np.testing.assert_allclose(a.probs.sum(-1), 1.0, atol=1e-6)
    assert a.num_prompts == 3 and a.num_responses == 7


def test_sampler_frequencies_match_probabilities():
    # Chi-square goodness of fit at level 1e-4 per row (false-failure rate 3e-4 over the 3 rows).
    rng = np.random.default_rng(1)
    P = _random_table(rng, 3, 12, zeros=2)
    pi = TabularPolicy.from_probs(P)
    n = 200_000
    for x in range(3):
        ys = np.asarray(pi.sample(jax.random.key(x), x, n))
        counts = np.bincount(ys, minlength=12)
        support = P[x] > 0
        assert counts[~support].sum() == 0, "zero-probability responses were drawn"
        expected = n * P[x][support] / P[x][support].sum()
        chi2 = stats.chisquare(counts[support], expected)
        assert chi2.pvalue > 1e-4, (x, chi2)


def test_sample_and_log_prob_returns_log_prob_of_draws():
    pi = TabularPolicy.from_probs(_random_table(np.random.default_rng(2), 4, 9))
    for x in range(4):
        ys, lps = pi.sample_and_log_prob(jax.random.key(10 + x), x, 64)
        np.testing.assert_array_equal(lps, pi.log_prob(x, ys))
        assert ys.dtype == jnp.int32


def test_jit_vmap_over_prompts_keys_and_stacked_policies():
    rng = np.random.default_rng(3)
    pis = [TabularPolicy.from_probs(_random_table(rng, 2, 5)) for _ in range(3)]
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *pis)
    f = lambda pi, k: pi.sample_and_log_prob(k, 1, 4)  # noqa: E731
    keys = jax.random.split(jax.random.key(0), 3)
    ys, lps = jax.jit(jax.vmap(f))(stacked, keys)
    ys_eager = np.stack([np.asarray(f(p, k)[0]) for p, k in zip(pis, keys)])
    np.testing.assert_array_equal(ys, ys_eager)  # jit and eager agree draw for draw
    per_prompt = jax.vmap(lambda k, x: pis[0].sample(k, x, 3))(keys[:2], jnp.arange(2))
    assert per_prompt.shape == (2, 3)
    assert lps.shape == (3, 4)


def test_dtype_follows_x64_flag():
    P = np.array([[0.25, 0.75]])
    assert TabularPolicy.from_probs(P).log_probs.dtype == jnp.float32
    with jax.enable_x64(True):
        assert TabularPolicy.from_probs(P).log_probs.dtype == jnp.float64


def test_tiny_probabilities_sample_and_stay_finite():
    P = np.array([[1 - 2e-30, 1e-30, 1e-30, 0.0]], dtype=np.float32)
    pi = TabularPolicy.from_probs(P)
    assert np.all(np.isfinite(pi.log_probs[0, :3]))
    ys, lps = pi.sample_and_log_prob(jax.random.key(0), 0, 10_000)
    assert np.all(np.asarray(ys) == 0) and np.all(np.isfinite(lps))
    with jax.enable_x64(True):
        P64 = np.array([[1 - 2e-300, 1e-300, 1e-300, 0.0]])
        pi64 = TabularPolicy.from_probs(P64)
        np.testing.assert_allclose(pi64.log_probs[0, 1], np.log(1e-300), rtol=1e-12)


@pytest.mark.parametrize(
    "probs, match",
    [
        (np.array([[0.5, 0.6]]), "sum to 1 within"),
        (np.array([[1.5, -0.5]]), "negative"),
        (np.array([[np.nan, 1.0]]), "NaN"),
        (np.array([0.5, 0.5]), "2 dimensions"),
    ],
)
def test_from_probs_rejects_bad_tables(probs, match):
    with pytest.raises(ValueError, match=match):
        TabularPolicy.from_probs(probs)


def test_from_logits_rejects_nan_and_all_minus_inf():
    with pytest.raises(ValueError, match="NaN"):
        TabularPolicy.from_logits(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="all -inf"):
        TabularPolicy.from_logits(np.array([[-np.inf, -np.inf]]))


def test_sample_rejects_bad_num():
    pi = TabularPolicy.from_probs(np.array([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="num must be >= 1"):
        pi.sample(jax.random.key(0), 0, 0)
    with pytest.raises(ValueError, match="positive integer"):
        pi.sample(jax.random.key(0), 0, 2.5)


# ------------------------------------------------------------------ the prepared inverse-CDF table
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sharpsim.policies import InverseCDFTable  # noqa: E402
from sharpsim.policies._tabular import upper_bound  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(0, 6), min_size=1, max_size=300),
    queries=st.lists(st.floats(-1.0, 8.0), min_size=1, max_size=20),
    offset=st.integers(0, 5),
)
def test_upper_bound_is_searchsorted_right(values, queries, offset):
    # Sorted segments with many duplicates, at an offset inside a longer flat array.
    seg = np.sort(np.asarray(values, np.float32))
    flat = np.concatenate([np.full(offset, -10.0, np.float32), seg, np.full(3, 99.0, np.float32)])
    u = np.asarray(queries, np.float32)
    got = upper_bound(jnp.asarray(flat), jnp.int32(offset), len(seg), jnp.asarray(u))
    np.testing.assert_array_equal(got, np.searchsorted(seg, u, side="right"))


@pytest.mark.parametrize("Y", [1, 2, 7, 128, 129, 1000, 4096])
def test_table_draws_equal_the_policy_draws(Y):
    # Same key, same uniforms, same CDF: the prepared table must reproduce the one-shot sampler exactly
    # (this is what lets the oracle switch to it without changing any random stream).
    rng = np.random.default_rng(Y)
    P = _random_table(rng, 5, Y, zeros=Y // 3)
    pi = TabularPolicy.from_probs(P)
    table = pi.inverse_cdf_table()
    keys = jax.random.split(jax.random.key(Y), 5)
    xs = jnp.arange(5)
    a_y, a_lp = jax.vmap(lambda k, x: pi.sample_and_log_prob(k, x, 300))(keys, xs)
    b_y, b_lp = jax.jit(jax.vmap(lambda k, x: table.sample_and_log_prob(k, x, 300)))(keys, xs)
    np.testing.assert_array_equal(a_y, b_y)
    np.testing.assert_array_equal(a_lp, b_lp)
    assert np.all(P[np.arange(5)[:, None], np.asarray(b_y)] > 0), "a zero-probability response was drawn"
    assert isinstance(table, InverseCDFTable) and table.num_responses == Y


@pytest.mark.parametrize("kind", ["heavy_tail", "spike", "near_uniform", "traced"])
def test_table_draws_equal_the_policy_draws_on_hard_tables(kind):
    # Tables whose guide buckets are wide (deep searches) or degenerate, and a table built under jit
    # (its depth is not known at trace time, so it searches whole rows).
    rng = np.random.default_rng(3)
    X, Y = 4, 3000
    if kind == "heavy_tail":
        P = rng.dirichlet(np.full(Y, 0.02), size=X)
    elif kind == "spike":  # one response holds almost everything: one bucket spans ~all the others
        P = np.full((X, Y), 1e-9)
        P[:, 7] = 1.0
    elif kind == "near_uniform":
        P = np.exp(rng.normal(scale=1e-6, size=(X, Y)))
    else:
        P = rng.dirichlet(np.full(Y, 0.5), size=X)
    P = P / P.sum(1, keepdims=True)
    pi = TabularPolicy.from_probs(P)
    table = jax.jit(lambda p: p.inverse_cdf_table())(pi) if kind == "traced" else pi.inverse_cdf_table()
    assert 1 <= table.depth <= Y.bit_length()
    keys = jax.random.split(jax.random.key(9), X)
    a = jax.vmap(lambda k, x: pi.sample(k, x, 2000))(keys, jnp.arange(X))
    b = jax.jit(jax.vmap(lambda k, x: table.sample(k, x, 2000)))(keys, jnp.arange(X))
    np.testing.assert_array_equal(a, b)


def test_table_frequencies_match_probabilities():
    # Chi-square at level 1e-4 on one row of a 4096-response table (false-failure rate 1e-4).
    rng = np.random.default_rng(11)
    P = _random_table(rng, 2, 4096, zeros=100)
    P[1] = 0.0
    P[1, [3, 2000, 4095]] = [0.5, 0.3, 0.2]
    table = TabularPolicy.from_probs(P).inverse_cdf_table()
    n = 300_000
    ys = np.asarray(table.sample(jax.random.key(5), 1, n))
    counts = np.bincount(ys, minlength=4096)
    assert counts.sum() == counts[[3, 2000, 4095]].sum()
    assert stats.chisquare(counts[[3, 2000, 4095]], n * np.array([0.5, 0.3, 0.2])).pvalue > 1e-4
