"""Self-rewards: the registry, the fraction scale of majority, prefix consistency, and the one-draw best-of-N sweep."""

from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sharpsim import SampleEvaluateOracle, TabularPolicy, rewards
from sharpsim.algorithms import best_of_n_sweep, select_best

ANSWER_OF = np.array([0, 1, 1, 2, -1, 2, 0, 1])  # response id -> answer id (-1: no answer)
LENGTHS = np.array([1, 2, 3, 4, 5, 6, 7, 8])


def _registry():
    return {name: rewards.make(name, answer_of=ANSWER_OF, lengths=LENGTHS) for name in rewards.NAMES}


_JITTED = {}


def _jitted(name):
    """One compiled call per reward (the machine is shared: eager ops compile one by one)."""
    if name not in _JITTED:
        _JITTED[name] = jax.jit(lambda ys, lps: _registry()[name](0, ys, lps))
    return _JITTED[name]


def _draw(seed, N=40, Y=8):
    k1, k2 = jax.random.split(jax.random.key(seed))
    ys = jax.random.randint(k1, (N,), 0, Y)
    return ys, jax.random.normal(k2, (N,))


def test_registry_names_and_context_errors():
    # Catches: a renamed or missing registry entry (the bridge and the sweeps use these names), and a reward
    # built without the context it needs (would fail later, inside a trace, with an obscure error).
    assert rewards.NAMES == ("logprob", "lennorm", "majority")
    assert rewards.make("logprob") is rewards.logprob_reward
    with pytest.warns(DeprecationWarning, match="logprob_reward"):  # the old name: same object, with a warning
        assert rewards.log_prob is rewards.logprob_reward
    with pytest.raises(AttributeError, match="no attribute 'logprob'"):
        rewards.logprob  # noqa: B018
    with pytest.raises(ValueError, match="unknown self-reward 'mean_logprob'"):
        rewards.make("mean_logprob")
    with pytest.raises(ValueError, match="'lennorm' needs `eos_id`"):
        rewards.make("lennorm", answer_of=ANSWER_OF)
    with pytest.raises(ValueError, match="'majority' needs `answer_of`"):
        rewards.make("majority", lengths=LENGTHS)
    ys, lps = _draw(0, N=5)
    np.testing.assert_allclose(_jitted("lennorm")(ys, lps), np.asarray(lps) / LENGTHS[np.asarray(ys)], rtol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_majority_is_a_fraction_brute_force(seed):
    # Catches: majority on the count scale (N times too large), counting "no answer" responses as one answer,
    # or dividing by the number of answered responses instead of N. Reference: collections.Counter.
    ys, lps = _draw(seed, N=13)
    got = np.asarray(_jitted("majority")(ys, lps))
    answers = ANSWER_OF[np.asarray(ys)]
    counts = Counter(a for a in answers.tolist() if a >= 0)
    want = [counts[a] / len(answers) if a >= 0 else 0.0 for a in answers.tolist()]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert np.all((got >= 0) & (got <= 1))


def test_majority_fraction_estimates_the_answer_mass():
    # The fraction is the sample estimate of Σ_{ans(y')=ans(y)} π(y'|x). n = 2000 draws: each answer's fraction
    # is within 5 standard deviations sqrt(p(1-p)/n) of its mass (false-failure rate < 1e-5 for the 3 answers).
    # Catches: a scale other than the fraction (count, or normalised over distinct answers).
    p = np.array([0.05, 0.15, 0.1, 0.2, 0.1, 0.1, 0.2, 0.1])
    ys, lps = TabularPolicy.from_probs(p[None]).sample_and_log_prob(jax.random.key(1), 0, 2000)
    frac = np.asarray(_jitted("majority")(ys, lps))
    answers = ANSWER_OF[np.asarray(ys)]
    for a in range(3):
        mass = p[ANSWER_OF == a].sum()
        got = frac[answers == a]
        assert np.all(got == got[0])
        assert abs(got[0] - mass) < 5 * np.sqrt(mass * (1 - mass) / ys.shape[0]), (a, got[0], mass)


def _group_rank(x, responses, log_probs):
    """A user group reward without prefix support: rank of the log-prob within the group, over the group size."""
    return jnp.argsort(jnp.argsort(log_probs)).astype(log_probs.dtype) / log_probs.shape[0]


@pytest.mark.parametrize("name", [*rewards.NAMES, "user group reward"])
def test_prefix_scores_equal_the_reward_on_each_prefix(name):
    # Catches: a prefix row that sees responses past N_g (majority counting later draws), a per-response
    # reward whose masked entries leak into the argmax, or an off-by-one in the prefix mask.
    reward = _group_rank if name == "user group reward" else _registry()[name]
    ys, lps = _draw(3)
    Ns = (1, 2, 7, 40)
    scores = np.asarray(jax.jit(lambda y, lp: rewards.prefix_scores(reward, 0, y, lp, Ns))(ys, lps))
    assert scores.shape == (len(Ns), 40)
    heads = jax.jit(lambda y, lp: [reward(0, y[:n], lp[:n]) for n in Ns])(ys, lps)  # the reward on each prefix
    for g, n in enumerate(Ns):
        np.testing.assert_allclose(scores[g, :n], np.asarray(heads[g]), rtol=1e-6)
        assert np.all(scores[g, n:] == -np.inf)


def test_prefix_scores_refuse_a_bad_grid():
    ys, lps = _draw(0, N=4)
    for Ns, match in [((0, 2), "Ns must be >= 1"), ((2, 5), "contains 5, more than the 4"), ((), "empty"),
                      ((1.5,), "positive integer")]:
        with pytest.raises(ValueError, match=match):
            rewards.prefix_scores(rewards.logprob_reward, 0, ys, lps, Ns)


def _numpy_pick(name, ys, lps):
    """Best-of-n by brute force in NumPy (first maximiser), independent of sharpsim.rewards."""
    if name == "logprob":
        scores = lps
    elif name == "lennorm":
        scores = lps / LENGTHS[ys]
    else:
        answers = ANSWER_OF[ys]
        counts = Counter(a for a in answers.tolist() if a >= 0)
        scores = np.array([counts[a] if a >= 0 else 0 for a in answers.tolist()])  # the count scale: same pick
    return int(np.argmax(scores))


def test_best_of_n_sweep_equals_best_of_each_prefix():
    # Catches: the sweep picking among more (or fewer) than the first N_g draws, a reward scale that changes
    # the pick (majority as a fraction must pick as the count does), or ties not going to the first draw.
    P = np.array([[0.3, 0.1, 0.1, 0.2, 0.05, 0.1, 0.1, 0.05], [0.05, 0.05, 0.4, 0.1, 0.1, 0.1, 0.1, 0.1]])
    oracle = SampleEvaluateOracle(TabularPolicy.from_probs(P), np.array([0.5, 0.5]))
    Ns = (1, 2, 5, 9, 30)
    xs = jnp.array([0, 1, 1])
    sweep = jax.jit(lambda k: best_of_n_sweep(k, oracle, xs, Ns, _registry()))(jax.random.key(4))
    assert sweep.responses.shape == (3, 30)
    np.testing.assert_array_equal(sweep.num_queries, [3 * n for n in Ns])
    ys_all, lps_all = np.asarray(sweep.responses), np.asarray(sweep.log_probs)
    for i in range(3):
        for g, n in enumerate(Ns):
            for name in rewards.NAMES:
                assert int(sweep.index[name][i, g]) == _numpy_pick(name, ys_all[i, :n], lps_all[i, :n]), (name, i, n)
    np.testing.assert_array_equal(sweep.picked(sweep.log_probs, "logprob"),
                                  np.take_along_axis(lps_all, np.asarray(sweep.index["logprob"]), 1))
    one = select_best(xs[0], sweep.responses[0, :9], sweep.log_probs[0, :9])[0]  # the library's one-N selection
    assert int(one) == int(sweep.index["logprob"][0, 3])
