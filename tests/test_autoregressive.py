"""Autoregressive policies: teacher forcing vs enumeration vs sampling, EOS, jit/vmap, training, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.stats import chisquare

from sharpsim.benchmarks.autoregressive import numpy_transformer_sample
from sharpsim.policies import (
    LinearSoftmaxPolicy,
    MarkovPolicy,
    TabularPolicy,
    TransformerPolicy,
    index_to_sequences,
    project_to_norm_ball,
    sequence_lengths,
    sequences_to_index,
)

X, V, H = 2, 3, 4


def _features(x, y, h):
    """One-hot of the current token ⊕ one-hot of the previous token ⊕ prompt bit: d = 2V + 1."""
    prev = jnp.where(h > 0, y[jnp.maximum(h - 1, 0)], V)  # V = start: all-zero one-hot
    return jnp.concatenate([jax.nn.one_hot(y[h], V), jax.nn.one_hot(prev, V), jnp.array([1.0 * x]) * (y[h] == 0)])


def _make(kind: str, eos_id=None):
    key = jax.random.key({"markov": 0, "linear": 1, "transformer": 2}[kind])
    if kind == "markov":
        return MarkovPolicy.from_logits(1.5 * jax.random.normal(key, (X, H, V + 1, V)), eos_id=eos_id)
    if kind == "linear":
        return LinearSoftmaxPolicy.create(jax.random.normal(key, (H, 2 * V + 1)), _features, num_prompts=X,
                                          vocab_size=V, norm_bound=10.0, eos_id=eos_id)
    pol = TransformerPolicy.init(key, num_prompts=X, vocab_size=V, horizon=H, d_model=8, num_heads=2,
                                 num_layers=2, eos_id=eos_id)
    # Larger weights than the 0.02 init so the distribution is far from uniform (a sharper test).
    return pol.with_params(jax.tree_util.tree_map(lambda a: a * 30.0 if a.ndim == 2 else a, pol.params))


# Markov with and without EOS; the other families with EOS (the harder path). Few combinations: each compiles.
POLICIES = [("markov", None), ("markov", 2), ("linear", 2), ("transformer", 2)]


@pytest.fixture(scope="module", params=POLICIES, ids=lambda p: f"{p[0]}-eos{p[1]}")
def policy(request):
    return _make(*request.param)


def _canonical(seqs, eos):
    """True for sequences whose tokens after the first EOS are all EOS."""
    seqs = np.asarray(seqs)
    if eos is None:
        return np.ones(len(seqs), bool)
    L = np.asarray(sequence_lengths(seqs, eos))
    return np.array([np.all(s[l:] == eos) for s, l in zip(seqs, L)])


# -------------------------------------------------------------------------------------------- exactness
def test_to_tabular_sums_to_one_and_matches_teacher_forcing(policy):
    tab = policy.to_tabular()
    assert isinstance(tab, TabularPolicy) and tab.log_probs.shape == (X, V**H)
    np.testing.assert_allclose(np.exp(np.asarray(tab.log_probs, np.float64)).sum(-1), 1.0, atol=1e-5)
    seqs = policy.all_sequences()
    lp = policy.log_prob(jnp.arange(X)[:, None], seqs[None])  # broadcasting [X, 1] against [1, Y, H]
    np.testing.assert_allclose(lp, tab.log_probs, rtol=1e-6, atol=1e-6)
    # Non-canonical sequences (a non-EOS token after an EOS) carry exactly zero mass.
    bad = ~_canonical(seqs, policy.eos_id)
    assert bad.any() == (policy.eos_id is not None)
    assert np.all(np.asarray(tab.log_probs)[:, bad] == -np.inf)


def test_next_log_probs_chain_rule(policy):
    """Σ_h log π_h(y_h | y_<h) from the uncached next-token path equals the teacher-forced log π(y)."""
    seqs = np.asarray(policy.all_sequences())[::7]
    tab = np.asarray(policy.to_tabular().log_probs)
    for x in range(X):
        for y in seqs[:6]:
            total = sum(float(policy.next_log_probs(x, jnp.asarray(y[:h]))[y[h]]) for h in range(H))
            np.testing.assert_allclose(total, tab[x, int(sequences_to_index(y, V))], rtol=1e-5, atol=1e-5)


def test_next_log_probs_buffer_form_under_jit(policy):
    y = jnp.array([1, 0, 2, 1])
    f = jax.jit(lambda pi, buf, h: pi.next_log_probs(1, buf, h))
    for h in range(H):
        np.testing.assert_allclose(f(policy, y, h), policy.next_log_probs(1, y[:h]), atol=1e-6)


def test_sampling_log_probs_equal_teacher_forced(policy):
    """KV-cache / scan sampling returns log π(y|x) identical to teacher-forced scoring."""
    ys, lps = policy.sample_and_log_prob(jax.random.key(3), 1, 64)
    assert ys.shape == (64, H) and ys.dtype == jnp.int32 and lps.shape == (64,)
    np.testing.assert_allclose(lps, policy.log_prob(1, ys), rtol=1e-5, atol=1e-5)
    assert np.all(np.isfinite(np.asarray(lps)))
    assert np.all(_canonical(ys, policy.eos_id))


@pytest.mark.parametrize("kind", ["markov", "transformer"])
def test_sampler_frequencies_match_tabular(kind):
    """Chi-square goodness of fit of 20 000 draws against to_tabular (fixed seed; false-failure rate 1e-3)."""
    pol = _make(kind, eos_id=2)
    n = 20_000
    ys, _ = pol.sample_and_log_prob(jax.random.key(11), 0, n)
    counts = np.bincount(np.asarray(sequences_to_index(ys, V)), minlength=V**H)
    p = np.exp(np.asarray(pol.to_tabular().log_probs[0], np.float64))
    p /= p.sum()
    assert np.all(counts[p == 0] == 0)
    # Pool cells with expected count < 5 (chi-square validity) into one.
    exp_counts = n * p
    big = exp_counts >= 5
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(exp_counts[big], exp_counts[~big].sum())
    keep = exp > 0
    assert chisquare(obs[keep], exp[keep]).pvalue > 1e-3


def test_jit_and_no_jit_agree():
    """Op-by-op (jax.disable_jit), the internal jitted kernels, and an outer jit give the same answers."""
    pol = _make("markov", eos_id=2)
    key = jax.random.key(5)
    internal = pol.sample_and_log_prob(key, 1, 8)
    outer = jax.jit(lambda pi, k: pi.sample_and_log_prob(k, 1, 8))(pol, key)
    np.testing.assert_array_equal(internal[0], outer[0])
    np.testing.assert_allclose(internal[1], outer[1], atol=1e-5)
    with jax.disable_jit():
        eager_lp = pol.log_prob(1, internal[0])
        eager_next = pol.next_log_probs(1, internal[0][0, :2])
    np.testing.assert_allclose(eager_lp, internal[1], atol=1e-5)
    np.testing.assert_allclose(jax.jit(lambda pi, y: pi.log_prob(1, y))(pol, internal[0]), eager_lp, atol=1e-5)
    np.testing.assert_allclose(pol.next_log_probs(1, internal[0][0, :2]), eager_next, atol=1e-6)


def test_vmap_over_prompts_and_keys():
    pol = _make("markov")
    keys = jax.random.split(jax.random.key(0), X)
    ys, lps = jax.vmap(lambda k, x: pol.sample_and_log_prob(k, x, 8))(keys, jnp.arange(X))
    assert ys.shape == (X, 8, H)
    np.testing.assert_allclose(lps, pol.log_prob(jnp.arange(X)[:, None], ys), atol=1e-5)


def test_temperature_sampling_concentrates_on_greedy():
    """At T = 0.05 the Markov policy (logit gaps ≫ T) almost always samples the greedy sequence."""
    from sharpsim.decoding import greedy, temperature_sample

    pol = _make("markov")
    g, _ = greedy(pol, 0)
    ys, lps = temperature_sample(pol, 0, 200, key=jax.random.key(1), temperature=0.05)
    assert np.mean(np.all(np.asarray(ys) == np.asarray(g), axis=1)) > 0.9
    np.testing.assert_allclose(lps, pol.log_prob(0, ys), atol=1e-5)  # untempered log-probs


# -------------------------------------------------------------------------------------------- EOS, indices
def test_sequence_lengths():
    ys = jnp.array([[1, 2, 2, 2], [2, 2, 2, 2], [0, 1, 0, 1], [0, 1, 1, 2]])
    assert sequence_lengths(ys, 2).tolist() == [2, 1, 4, 4]
    assert sequence_lengths(ys, None).tolist() == [4, 4, 4, 4]
    assert sequence_lengths(ys[0], 2).tolist() == 2


def test_eos_padding_has_log_prob_zero():
    pol = _make("markov", eos_id=2)
    tok = pol.token_log_probs(0, jnp.array([1, 2, 2, 2]))
    np.testing.assert_array_equal(np.asarray(tok)[2:], 0.0)
    assert float(pol.log_prob(0, jnp.array([1, 2, 0, 2]))) == -np.inf
    assert pol.response_lengths(jnp.array([1, 2, 2, 2])).tolist() == 2


def test_index_roundtrip():
    idx = jnp.arange(V**H)
    seqs = index_to_sequences(idx, V, H)
    np.testing.assert_array_equal(sequences_to_index(seqs, V), idx)
    np.testing.assert_array_equal(seqs[V**H - 1], [V - 1] * H)
    np.testing.assert_array_equal(seqs[1], [0, 0, 0, 1])  # row-major: the last position varies fastest


# -------------------------------------------------------------------------------------------- families
def test_markov_closed_form_and_start_state():
    L = np.random.default_rng(0).normal(size=(1, 2, 3, 2))
    pol = MarkovPolicy.from_logits(L)
    sm = lambda r: np.exp(r - np.logaddexp.reduce(r))  # noqa: E731
    y = jnp.array([1, 0])
    expect = sm(L[0, 0, 2])[1] * sm(L[0, 1, 1])[0]  # start state prev = V = 2, then prev = 1
    np.testing.assert_allclose(float(jnp.exp(pol.log_prob(0, y))), expect, rtol=1e-5)
    P = np.exp(np.asarray(pol.log_probs))
    np.testing.assert_allclose(np.asarray(MarkovPolicy.from_probs(P).log_probs), pol.log_probs, atol=1e-6)


def test_linear_softmax_closed_form():
    pol = _make("linear")
    th = np.asarray(pol.theta)
    y = np.array([2, 0, 1, 1])
    total = 0.0
    for h in range(H):
        feats = np.stack([np.asarray(_features(1, jnp.asarray(np.r_[y[:h], v, np.zeros(H - h - 1, int)]), h))
                          for v in range(V)])
        logits = feats @ th[h]
        total += logits[y[h]] - np.logaddexp.reduce(logits)
    np.testing.assert_allclose(float(pol.log_prob(1, jnp.asarray(y))), total, rtol=1e-5)


def test_project_to_norm_ball():
    th = jnp.array([[3.0, 4.0], [0.3, 0.4]])
    out = project_to_norm_ball(th, 1.0)
    np.testing.assert_allclose(jnp.linalg.norm(out, axis=-1), [1.0, 0.5], rtol=1e-6)


def test_transformer_trains_with_optax():
    """Maximum likelihood on samples of a Markov policy: the NLL drops after 20 Adam steps."""
    teacher = _make("markov")
    ys, _ = teacher.sample_and_log_prob(jax.random.key(0), 0, 256)
    xs = jnp.zeros(256, jnp.int32)
    student = TransformerPolicy.init(jax.random.key(1), num_prompts=X, vocab_size=V, horizon=H, d_model=8, num_layers=1)
    opt = optax.adam(3e-2)

    @jax.jit
    def step(params, state):
        loss, g = jax.value_and_grad(lambda p: student.with_params(p).nll(xs, ys))(params)
        upd, state = opt.update(g, state)
        return optax.apply_updates(params, upd), state, loss

    params, state = student.params, opt.init(student.params)
    losses = []
    for _ in range(20):
        params, state, loss = step(params, state)
        losses.append(float(loss))
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0] - 0.5, losses


def test_numpy_reference_transformer_matches_jax():
    """The benchmark's NumPy implementation samples the same model: its log-probs equal JAX teacher forcing."""
    pol = _make("transformer", eos_id=None)
    ys, lps = numpy_transformer_sample(pol.params, num_heads=pol.num_heads, x=1, num=32,
                                       rng=np.random.default_rng(0))
    np.testing.assert_allclose(lps, pol.log_prob(1, jnp.asarray(ys)), rtol=1e-4, atol=1e-4)


# -------------------------------------------------------------------------------------------- errors
def test_errors_are_clear():
    pol = _make("markov")
    with pytest.raises(ValueError, match="horizon"):
        pol.next_log_probs(0, jnp.zeros(H, jnp.int32))  # a prefix of length H has no next token
    with pytest.raises(ValueError, match="horizon"):
        pol.next_log_probs(0, jnp.zeros(H + 1, jnp.int32))
    with pytest.raises(ValueError, match="outside"):
        pol.next_log_probs(0, jnp.array([0, V]))
    with pytest.raises(ValueError, match="outside"):
        pol.log_prob(0, jnp.array([0, 1, -1, 0]))
    with pytest.raises(ValueError, match="longer than the horizon"):
        pol.log_prob(0, jnp.zeros(H + 1, jnp.int32))
    with pytest.raises(ValueError, match="pad"):
        pol.log_prob(0, jnp.zeros(H - 1, jnp.int32))
    with pytest.raises(ValueError, match="prompt"):
        pol.sample_and_log_prob(jax.random.key(0), X, 2)
    with pytest.raises(ValueError, match="num"):
        pol.sample_and_log_prob(jax.random.key(0), 0, 0)
    with pytest.raises(ValueError, match=r"\[X, H, V\+1, V\]"):
        MarkovPolicy.from_logits(jnp.zeros((1, 2, 3, 3)))
    with pytest.raises(ValueError, match="eos_id"):
        MarkovPolicy.from_logits(jnp.zeros((1, 2, 4, 3)), eos_id=3)
    with pytest.raises(ValueError, match="max_size"):
        pol.to_tabular(max_size=10)
    with pytest.raises(ValueError, match=r"shape \[d\]"):
        LinearSoftmaxPolicy.create(jnp.zeros((H, 5)), _features, num_prompts=X, vocab_size=V)
    with pytest.raises(ValueError, match=r"shape \[d\]"):
        LinearSoftmaxPolicy.create(jnp.zeros((H, 7)), lambda x, y, h: jnp.zeros((7, 1)), num_prompts=X, vocab_size=V)
    with pytest.raises(ValueError, match="norm_bound"):
        LinearSoftmaxPolicy.create(jnp.full((H, 7), 5.0), _features, num_prompts=X, vocab_size=V, norm_bound=1.0)
    with pytest.raises(ValueError, match="divisible"):
        TransformerPolicy.init(jax.random.key(0), num_prompts=1, vocab_size=3, horizon=2, d_model=10, num_heads=3)
