"""Policy classes: exact sufficient-statistics MLE against brute force, log|Π|, BoN closure, shapes/errors."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sharpsim import SampleEvaluateOracle, TabularPolicy, exact, instances
from sharpsim.algorithms import SFTConfig, sft_sharpening
from sharpsim.classes import FiniteClass, LogLinearClass, ParametricClass, TabularClass
from _features import unit_features  # tests/ is on sys.path (pytest prepend import mode)


def _random_log_probs(rng, shape, zero_frac=0.2):
    p = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
    p = np.where(rng.uniform(size=p.shape) < zero_frac, 0.0, p)
    p[..., 0] += 1e-3  # every row keeps some mass
    p /= p.sum(-1, keepdims=True)
    with np.errstate(divide="ignore"):
        return np.log(p)


def _brute_force_product(log_probs, counts):
    """max over all K^X members of Σ counts·log π (Python loop over the whole product class)."""
    X, K, _ = log_probs.shape
    best, best_val = None, -np.inf
    for choice in itertools.product(range(K), repeat=X):
        val = 0.0
        for x, k in enumerate(choice):
            row = log_probs[x, k]
            c = counts[x]
            if np.any((c > 0) & ~np.isfinite(row)):
                val = -np.inf
                break
            val += float(np.sum(c * np.where(c > 0, row, 0.0)))
        if val > best_val:
            best, best_val = choice, val
    return best, best_val


def _ll_member(log_probs, index, counts):
    rows = log_probs[np.arange(log_probs.shape[0]), index]
    if np.any((counts > 0) & ~np.isfinite(rows)):
        return -np.inf
    return float(np.sum(counts * np.where(counts > 0, rows, 0.0)))


@pytest.mark.parametrize("seed", range(6))
def test_product_mle_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    X, K, Y = 3, 3, 4
    lp = _random_log_probs(rng, (X, K, Y))
    counts = rng.integers(0, 4, size=(X, Y)).astype(np.float32)
    cls = FiniteClass.product_class(jnp.asarray(lp, jnp.float32))
    index = np.asarray(cls.mle_index(jnp.asarray(counts)))
    _, best_val = _brute_force_product(lp, counts)
    got = _ll_member(lp, index, counts)
    assert got == pytest.approx(best_val, rel=1e-5, abs=1e-4) or (got == best_val == -np.inf)


@pytest.mark.parametrize("seed", range(4))
def test_stack_mle_equals_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    K, X, Y = 5, 3, 4
    pols = _random_log_probs(rng, (K, X, Y), zero_frac=0.1)
    counts = rng.integers(0, 5, size=(X, Y)).astype(np.float32)
    cls = FiniteClass.stack(jnp.asarray(pols, jnp.float32))
    k = int(cls.mle_index(jnp.asarray(counts))[0])
    assert np.all(np.asarray(cls.mle_index(jnp.asarray(counts))) == k)
    vals = [_ll_member(pols[j][:, None, :], np.zeros(X, int), counts) for j in range(K)]
    assert vals[k] == pytest.approx(max(vals), rel=1e-5, abs=1e-4) or vals[k] == max(vals) == -np.inf


def test_sft_uses_the_brute_force_mle_on_its_own_draws():
    """SFT's params = brute-force argmax of the likelihood of the best-of-N picks it drew (same key)."""
    inst = instances.hard_instance(jax.random.key(3), d=3, M=4, Delta=0.6)
    cls = FiniteClass.from_instance(inst).bon_closure(3)
    oracle = SampleEvaluateOracle(inst.pi_base, inst.mu)
    key = jax.random.key(11)
    res = sft_sharpening(key, oracle, cls, SFTConfig(n=12, N=3))
    batch = jax.jit(lambda k: oracle.sample_and_evaluate(k, 12, 3))(key)
    picks = np.asarray(batch.responses)[np.arange(12), np.argmax(np.asarray(batch.log_probs), axis=1)]
    counts = np.zeros((4, 5))
    np.add.at(counts, (np.asarray(batch.prompts), picks), 1.0)
    lp = np.asarray(cls.log_probs, np.float64)
    _, best_val = _brute_force_product(lp, counts)
    assert _ll_member(lp, np.asarray(res.params), counts) == pytest.approx(best_val, rel=1e-5)
    assert int(res.num_queries) == 36


def test_log_class_size_and_bon_closure():
    inst = instances.hard_instance(jax.random.key(0), d=5, M=6, Delta=0.5)
    cls = FiniteClass.from_instance(inst)
    assert cls.log_class_size == pytest.approx(5 * np.log(6))
    assert FiniteClass.stack([inst.pi_base] * 7).log_class_size == pytest.approx(np.log(7))
    bon = cls.bon_closure(9)
    bon_policy = jax.jit(exact.bon_policy, static_argnums=1)
    for k in range(6):
        member = cls.member(jnp.full((6,), k))
        np.testing.assert_allclose(bon.member(jnp.full((6,), k)).probs, bon_policy(member, 9).probs, atol=1e-6)
    # the true member's BoN law is π_base^BoN_N: realizability (Assumption 4.1)
    np.testing.assert_allclose(bon.member(inst.true_index).probs, bon_policy(inst.pi_base, 9).probs, atol=1e-6)


def test_tabular_mle_is_normalised_counts_and_maximises_likelihood():
    counts = jnp.array([[3.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    pol = TabularClass(2, 3).mle(counts)
    np.testing.assert_allclose(pol.probs, [[0.75, 0.25, 0.0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-6)
    rng = np.random.default_rng(0)
    ll = float(jnp.sum(jnp.where(counts > 0, counts * pol.log_probs, 0.0)))
    for _ in range(20):  # no perturbed distribution does better
        q = rng.dirichlet(np.ones(3), size=2)
        assert float(np.sum(np.where(counts > 0, counts * np.log(q), 0.0))) <= ll + 1e-6


def test_log_linear_class():
    f = unit_features(0, 6, 3)
    cls = LogLinearClass.create(f, norm_bound=2.0)
    theta = cls.project(jnp.array([3.0, 4.0, 0.0]))
    assert float(jnp.linalg.norm(theta)) == pytest.approx(2.0, rel=1e-5)
    np.testing.assert_allclose(jnp.sum(cls.member(theta).probs, axis=1), 1.0, atol=1e-6)
    assert float(cls.log_prob(theta, 0, 2)) == pytest.approx(float(cls.member(theta).log_probs[0, 2]), abs=1e-6)
    assert cls.log_covering_number(0.1) == pytest.approx(3 * np.log(120.0))
    with pytest.raises(ValueError, match="‖φ"):
        LogLinearClass.create(f * 2.0, norm_bound=1.0)


def test_parametric_class_wraps_a_differentiable_log_prob():
    cls = ParametricClass(params=jnp.zeros((1, 3)), log_prob_fn=lambda p, x, y: jax.nn.log_softmax(p, -1)[x, y],
                          make_policy=lambda p: TabularPolicy.from_logits(p))
    g = jax.grad(lambda p: cls.log_prob(p, 0, 1))(cls.init_params())
    np.testing.assert_allclose(g, [[-1 / 3, 2 / 3, -1 / 3]], atol=1e-6)


def test_class_shape_mismatch_is_a_clear_error():
    inst = instances.hard_instance(jax.random.key(0), d=3, M=4, Delta=0.5)
    oracle = SampleEvaluateOracle(inst.pi_base, inst.mu)
    with pytest.raises(ValueError, match=r"X=2 prompts and Y=5 responses, but π_base has X=4, Y=5"):
        sft_sharpening(jax.random.key(0), oracle, TabularClass(2, 5), SFTConfig(n=2, N=2))
    with pytest.raises(ValueError, match="shape \\[X, K, Y\\]"):
        FiniteClass.product_class(jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match="normalised"):
        FiniteClass.stack(jnp.zeros((2, 1, 3)))


# ------------------------------------------------------------------------------ the PolicyClass protocol
def _protocol_instances():
    """One small instance of every class in sharpsim.classes (X = 2 prompts, Y = 3 responses)."""
    rng = np.random.default_rng(7)
    lp = _random_log_probs(rng, (2, 4, 3), zero_frac=0.0)
    feats = rng.normal(size=(2, 3, 2))
    feats /= np.maximum(np.linalg.norm(feats, axis=-1, keepdims=True), 1.0)
    param = ParametricClass(params=jnp.zeros((2, 3)), log_prob_fn=lambda th, x, y: jax.nn.log_softmax(th, -1)[x, y],
                            make_policy=lambda th: TabularPolicy(log_probs=jax.nn.log_softmax(th, -1)))
    return {
        "finite_product": FiniteClass.product_class(lp),
        "finite_stack": FiniteClass.stack(np.swapaxes(lp, 0, 1)),
        "tabular": TabularClass(2, 3),
        "loglinear": LogLinearClass.create(feats, norm_bound=3.0),
        "parametric": param,
    }


def test_every_class_in_the_module_satisfies_the_protocol():
    """Every public class of sharpsim.classes is a PolicyClass (runtime_checkable isinstance and the type-level
    check the algorithms use). Catches a new class that misses a protocol method (an algorithm would then fail
    with an AttributeError deep inside a trace) and a protocol member that one class spells differently."""
    import inspect

    import sharpsim.classes as C
    from sharpsim.protocols import PolicyClass, is_policy_class

    public = [getattr(C, n) for n in C.__all__ if inspect.isclass(getattr(C, n))]
    public = [c for c in public if c.__module__ == C.__name__]
    assert {c.__name__ for c in public} >= {"FiniteClass", "TabularClass", "LogLinearClass", "ParametricClass"}
    instances_ = _protocol_instances()
    covered = {type(v) for v in instances_.values()}
    assert set(public) <= covered, f"no protocol instance for {set(public) - covered}"
    for name, cls in instances_.items():
        assert isinstance(cls, PolicyClass), name
        assert is_policy_class(cls), name
    assert not isinstance(object(), PolicyClass) and not is_policy_class(object())
    assert not is_policy_class(TabularClass)  # the type itself is not a class instance


@pytest.mark.parametrize("name", ["finite_product", "finite_stack", "tabular", "loglinear", "parametric"])
def test_protocol_behaviour_mle_matches_brute_force(name):
    """Each class's ``fit_mle`` on a tiny data set attains the brute-force maximum of the log-likelihood, and
    ``log_prob(params, x, y)`` agrees with ``member(params).log_prob(x, y)``.

    Brute force: every member for the finite classes (exact); for the continuous classes a fine grid over the
    member space (the MLE must be at least as likely as every grid point, up to 1e-3 nats — the gradient fits
    run 2000 adam steps on a strictly concave problem). Catches a fit that maximises the wrong objective
    (e.g. drops the weights, or picks per prompt in a stack), and a ``log_prob`` indexing the wrong member."""
    from sharpsim.fitting import FitConfig

    cls = _protocol_instances()[name]
    x = jnp.asarray([0, 0, 0, 1, 1, 0, 1], jnp.int32)
    y = jnp.asarray([0, 2, 2, 1, 1, 1, 2], jnp.int32)
    w = jnp.asarray([1.0, 2.0, 1.0, 1.0, 3.0, 0.5, 1.0])
    policy, params, _ = cls.fit_mle(x, y, FitConfig(steps=2000, learning_rate=0.05), w)

    def loglik(lp_table):
        return float(np.sum(np.asarray(w) * np.asarray(lp_table)[np.asarray(x), np.asarray(y)]))

    got = loglik(policy.log_probs)
    np.testing.assert_allclose(np.asarray(cls.log_prob(params, x, y)), np.asarray(policy.log_prob(x, y)), rtol=1e-5,
                               atol=1e-6)
    if name.startswith("finite"):
        lp = np.asarray(cls.log_probs)
        choices = itertools.product(range(4), repeat=2) if cls.product else ((k, k) for k in range(4))
        best = max(loglik(lp[[0, 1], list(c)]) for c in choices)
        assert got == pytest.approx(best, rel=1e-6)
        return
    if name == "loglinear":
        grid = np.linspace(-3.0, 3.0, 121)
        thetas = [np.array([a, b]) for a in grid for b in grid if a * a + b * b <= 9.0]
        f = np.asarray(cls.features, np.float64)
        best = max(loglik(jax.nn.log_softmax(jnp.asarray(f @ th), -1)) for th in thetas)
    else:  # tabular / parametric: every conditional on a grid of the simplex (per prompt, independent)
        g = np.linspace(0.005, 0.99, 120)
        simplex = np.array([(a, b, 1 - a - b) for a in g for b in g if a + b < 0.995])
        best = 0.0
        for xx in (0, 1):
            sel = np.asarray(x) == xx
            cnt = np.bincount(np.asarray(y)[sel], weights=np.asarray(w)[sel], minlength=3)
            best += float(np.max(np.log(simplex) @ cnt))
    assert got >= best - 1e-3, (got, best)
