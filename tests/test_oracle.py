"""The sample-and-evaluate oracle: exact query accounting, adaptive stopping, budgets, rewards."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import sharpsim
from sharpsim import BudgetExceededError, SampleEvaluateOracle, TabularPolicy, rewards
from sharpsim.oracle import max_likelihood_stopping_rule

P = np.array([[0.5, 0.3, 0.2, 0.0], [0.1, 0.2, 0.3, 0.4]])
MU = np.array([0.25, 0.75])


def test_fixed_batch_counts_and_likelihoods():
    oracle = SampleEvaluateOracle(TabularPolicy.from_probs(P), MU)
    b = oracle.sample_and_evaluate(jax.random.key(0), n=50, N=7)
    assert b.responses.shape == (50, 7) and b.log_probs.shape == (50, 7)
    assert b.num_queries == 350
    with np.errstate(divide="ignore"):
        table = np.log(P.astype(np.float32))
    np.testing.assert_array_equal(b.log_probs, table[np.asarray(b.prompts)[:, None], b.responses])
    assert np.all(np.isfinite(b.log_probs))  # zero-probability responses are never drawn


def test_prompts_follow_mu():
    # Binomial test on the frequency of prompt 1 (two-sided p > 1e-4: false-failure rate 1e-4).
    oracle = SampleEvaluateOracle(TabularPolicy.from_probs(P), MU)
    x = np.asarray(oracle.sample_prompts(jax.random.key(1), 40_000))
    assert stats.binomtest(int((x == 1).sum()), 40_000, 0.75).pvalue > 1e-4


def test_oracle_is_a_pytree_and_vmaps_over_trials():
    oracle = SampleEvaluateOracle(TabularPolicy.from_probs(P), MU)
    run = jax.jit(jax.vmap(lambda k: oracle.sample_and_evaluate(k, 4, 3)))
    batches = run(jax.random.split(jax.random.key(0), 10))
    assert batches.responses.shape == (10, 4, 3) and batches.num_queries == 12


def test_budget_raises_before_drawing():
    oracle = SampleEvaluateOracle(TabularPolicy.from_probs(P), MU, budget=20)
    oracle.sample_and_evaluate(jax.random.key(0), 4, 5)  # exactly the budget is fine
    with pytest.raises(BudgetExceededError, match="needs 21 sample-and-evaluate queries but the oracle's budget is 20"):
        oracle.sample_and_evaluate(jax.random.key(0), 3, 7)
    with pytest.raises(ValueError, match="N must be >= 1"):
        oracle.sample_and_evaluate(jax.random.key(0), 3, 0)


def test_bad_mu_is_rejected():
    with pytest.raises(ValueError, match="mu has 3 entries but the policy has 2 prompts"):
        SampleEvaluateOracle(TabularPolicy.from_probs(P), np.ones(3) / 3)


def test_adaptive_stopping_time_matches_a_reference_on_the_same_draws():
    """N_μ of Eq. (10) recomputed in NumPy from the oracle's own draws (same key, same chunks)."""
    pi = TabularPolicy.from_probs(P)
    oracle = SampleEvaluateOracle(pi, MU)
    mu_stop = np.log(2 / 0.05)
    chunk = 4
    batch = oracle.sample_adaptive(jax.random.key(3), 200, max_likelihood_stopping_rule(mu_stop), chunk=chunk)
    # replay the draws: same key splitting as SampleEvaluateOracle.sample_adaptive / _adaptive_one
    key_x, key_y = jax.random.split(jax.random.key(3))
    keys = jax.random.split(key_y, 200)
    for i in range(0, 200, 17):
        x = int(batch.prompts[i])
        k = keys[i]
        draws = []
        while True:
            k, sub = jax.random.split(k)
            draws.extend(np.asarray(pi.sample(sub, x, chunk)).tolist())
            probs = P[x][draws]
            stops = [j + 1 for j in range(len(draws)) if 1 / probs[: j + 1].max() <= (j + 1) / mu_stop]
            if stops:
                break
        n_stop = stops[0]
        assert int(batch.num_drawn[i]) == n_stop
        assert P[x][int(batch.best_response[i])] == probs[:n_stop].max()
    assert int(batch.num_queries) == int(np.sum(batch.num_drawn))
    assert not bool(jnp.any(batch.truncated))


def test_adaptive_cap_and_budget():
    pi = TabularPolicy.from_probs(P)
    never = lambda k, best: jnp.asarray(False)  # noqa: E731
    b = SampleEvaluateOracle(pi, MU).sample_adaptive(jax.random.key(0), 5, never, chunk=3, max_per_prompt=10)
    np.testing.assert_array_equal(b.num_drawn, 10)
    assert bool(jnp.all(b.truncated))
    with pytest.raises(BudgetExceededError, match="spent the whole budget of 25"):
        SampleEvaluateOracle(pi, MU, budget=25).sample_adaptive(jax.random.key(0), 5, never, max_per_prompt=10)
    ok = SampleEvaluateOracle(pi, MU, budget=25).sample_adaptive(
        jax.random.key(0), 2, max_likelihood_stopping_rule(1.0)
    )
    assert int(ok.num_queries) <= 25


def test_evaluate_counts_pairs():
    oracle = SampleEvaluateOracle(TabularPolicy.from_probs(P), MU)
    lps, count = oracle.evaluate(jnp.array([0, 1, 1]), jnp.array([2, 3, 0]))
    assert count == 3
    np.testing.assert_allclose(lps, np.log([0.2, 0.4, 0.1]), rtol=1e-6)


def test_self_rewards():
    x = jnp.asarray(0)
    ys = jnp.array([0, 1, 1, 2])
    lps = jnp.log(jnp.array([0.5, 0.3, 0.3, 0.2]))
    np.testing.assert_array_equal(rewards.logprob_reward(x, ys, lps), lps)
    maj = rewards.majority(jnp.array([7, 9, 9, 7]))  # drawn answers: 7, 9, 9, 9 (a fraction of the N = 4)
    np.testing.assert_array_equal(maj(x, ys, lps), [0.25, 0.75, 0.75, 0.75])
    maj2 = rewards.majority(jnp.array([7, 9, 8, 8]))
    np.testing.assert_array_equal(maj2(x, ys, lps), [0.25, 0.5, 0.5, 0.25])
    ln = rewards.length_normalized(lengths=jnp.array([1, 2, 4, 8]))
    np.testing.assert_allclose(ln(x, ys, lps), np.asarray(lps) / np.array([1, 2, 2, 4]))
    toks = jnp.array([[3, 1, 0, 0], [3, 3, 3, 3]])  # eos = 1: lengths 2 and 4
    ln_tok = rewards.length_normalized(eos_id=1)
    np.testing.assert_allclose(ln_tok(x, toks, jnp.array([-2.0, -2.0])), [-1.0, -0.5])
    with pytest.raises(ValueError, match="needs `lengths`"):
        rewards.length_normalized()(x, ys, lps)


def test_best_of_n_with_majority_picks_the_most_common_answer():
    pi = TabularPolicy.from_probs(np.array([[0.3, 0.25, 0.25, 0.2]]))
    answer_of = jnp.array([0, 1, 1, 2])  # answer 1 has mass 0.5 although no single response is the mode
    picks = jax.vmap(lambda k: sharpsim.best_of_n(k, pi, 0, 256, reward=rewards.majority(answer_of)).response)(
        jax.random.split(jax.random.key(0), 200)
    )
    # count(answer 1) − count(answer 0) among 256 draws has mean 51.2 and sd 13.9, so answer 1 is the
    # plurality with probability ≈ 0.9999 (normal approx.); failing the 0.97 bar in 200 trials has prob < 1e-9.
    assert np.mean(np.isin(np.asarray(picks), [1, 2])) > 0.97


def test_oracle_survives_lowering_and_eval_shape():
    oracle = SampleEvaluateOracle(TabularPolicy.from_probs(P), MU, budget=100)
    f = jax.jit(lambda k, o: o.sample_and_evaluate(k, 3, 2).log_probs)
    assert f.lower(jax.random.key(0), oracle).compile() is not None
    assert jax.eval_shape(f, jax.random.key(0), oracle).shape == (3, 2)


def test_tabular_oracle_prepares_its_table_once_and_rebuilds_it_when_stale():
    import dataclasses

    from sharpsim.policies import InverseCDFTable

    rng = np.random.default_rng(7)
    P = rng.dirichlet(np.ones(300), size=4)
    pi = TabularPolicy.from_probs(P)
    oracle = SampleEvaluateOracle(pi, jnp.full(4, 0.25))
    assert isinstance(oracle.sampler, InverseCDFTable) and oracle.sampler.log_probs is pi.log_probs
    # Draws through the oracle equal the policy's own draws for the same keys.
    batch = oracle.respond(jax.random.key(1), jnp.arange(4), 50)
    keys = jax.random.split(jax.random.key(1), 4)
    ys, _ = jax.vmap(lambda k, x: pi.sample_and_log_prob(k, x, 50))(keys, jnp.arange(4))
    np.testing.assert_array_equal(batch.responses, ys)
    # Replacing pi_base must not keep the old table (it would sample the old policy).
    other = TabularPolicy.from_probs(np.eye(4, 300))  # point masses on y = x
    swapped = dataclasses.replace(oracle, pi_base=other)
    assert swapped.sampler.log_probs is other.log_probs
    drawn = swapped.respond(jax.random.key(2), jnp.arange(4), 8).responses
    np.testing.assert_array_equal(drawn, np.repeat(np.arange(4)[:, None], 8, axis=1))


def test_oracle_without_a_table_draws_the_same():
    pi = TabularPolicy.from_probs(np.random.default_rng(8).dirichlet(np.ones(50), size=3))
    plain = SampleEvaluateOracle(pi, jnp.full(3, 1 / 3), sampler=pi)  # opt out of the prepared table
    assert plain.sampler is pi
    prepared = SampleEvaluateOracle(pi, jnp.full(3, 1 / 3))
    a = plain.sample_and_evaluate(jax.random.key(4), n=5, N=20)
    b = prepared.sample_and_evaluate(jax.random.key(4), n=5, N=20)
    np.testing.assert_array_equal(a.responses, b.responses)
    np.testing.assert_array_equal(a.log_probs, b.log_probs)
