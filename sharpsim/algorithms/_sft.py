"""SFT-sharpening: best-of-N selection under a self-reward, then maximum likelihood over Π (theory.md §6).

    y_i^BoN = argmax_{j ≤ N} r_self(y_{i,j}|x_i),   π̂ = argmax_{π∈Π} Σ_i log π(y_i^BoN | x_i),   m = n·N.

For finite and tabular classes the MLE is exact through sufficient statistics: the count table
``counts[x, y]`` of the selected pairs, contracted with the class's log-prob tensor (one einsum) or
normalised (tabular). Parametric classes are fitted by projected optax steps on the mean NLL.

:func:`sft_sharpening_sweep` runs the whole (n, N) grid from ONE draw of ``[n_max, N_max]``: best-of-prefix
is a running argmax along the N axis and the counts for prefix n are a masked scatter, so a sweep is one
compile and never materialises ``[n, N, Y]``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

import bounds as _bounds
from sharpsim import metrics
from sharpsim import rewards as _rewards
from sharpsim._validation import check_key, check_open_unit, check_positive, check_positive_int
from sharpsim.algorithms._best_of_n import running_best, select_best
from sharpsim.algorithms._common import (
    FitConfig,
    SharpeningResult,
    as_int,
    check_budget_field,
    raise_if_nonfinite,
    run_core,
)
from sharpsim.classes import check_class_matches, count_table
from sharpsim.protocols import PolicyClass, is_policy_class

__all__ = ["SFTConfig", "sft_sharpening", "SFTSweep", "sft_sharpening_sweep", "sft_parameters", "fit_mle", "THEOREM_4_1_C"]

#: The absolute constant c of Theorem 4.1 fixed by this toolkit (its one home: ``bounds.THEOREM_4_1_C``).
THEOREM_4_1_C = _bounds.THEOREM_4_1_C


@dataclasses.dataclass(frozen=True)
class SFTConfig:
    """SFT-sharpening with n prompts and N responses per prompt (m = n·N queries).

    ``reward`` is the self-reward (default log π_base, Eq. 2); ``fit`` configures gradient fitting for
    parametric classes (ignored for finite/tabular classes, whose MLE is exact); ``budget`` (optional)
    must cover n·N.
    """

    n: int
    N: int
    reward: Callable = _rewards.logprob_reward
    fit: FitConfig = FitConfig()
    budget: Optional[int] = None

    def __post_init__(self):
        check_positive_int(self.n, "n")
        check_positive_int(self.N, "N")
        check_budget_field(self.budget, self.n * self.N, f"SFTConfig(n={self.n}, N={self.N})")

    @property
    def num_queries(self) -> int:
        return self.n * self.N

    @classmethod
    def from_budget(cls, budget: int, N: int, **kw) -> "SFTConfig":
        """n = budget / N prompts; the budget must be a positive multiple of N (m = n·N exactly)."""
        budget = check_positive_int(budget, "budget")
        N = check_positive_int(N, "N")
        if budget % N or budget < N:
            raise ValueError(
                f"budget {budget} is inconsistent with N = {N}: SFT-sharpening spends exactly m = n·N queries, so "
                f"the budget must be a positive multiple of N (e.g. {max(1, budget // N) * N})."
            )
        return cls(n=budget // N, N=N, budget=budget, **kw)


def sft_parameters(
    epsilon: float, delta: float, rho: float, C_cov: float, log_class_size: float, c: float = THEOREM_4_1_C
) -> tuple[int, int]:
    """Theorem 4.1's n and N with the absolute constant c made explicit (rounded up):

        n = ⌈c·log(|Π|/ρ)/(δ ε)⌉,    N = ⌈c·C_cov·log(2/δ)/ε⌉.

    Delegates to ``bounds.sft_parameters`` (the recipe's one home; c defaults to ``bounds.THEOREM_4_1_C`` = 1:
    the smallest round constant for which the miniature Theorem 4.1 tests show ≥ 1 − ρ of trials sharpened;
    at c = 0.05 (hard) / 0.01 (planted) they fail, tests/test_sft.py). C_cov below 1 is raised to 1 (a coverage
    coefficient is ≥ 1).
    """
    for v, name in ((epsilon, "epsilon"), (delta, "delta"), (rho, "rho")):
        check_open_unit(v, name)
    check_positive(C_cov, "C_cov")
    check_positive(c, "c")
    n, N = _bounds.sft_parameters(epsilon, delta, rho, max(float(C_cov), 1.0), max(float(log_class_size), 0.0), c=c)
    return max(int(n), 1), max(int(N), 1)


_counts = count_table  # the count table's home is sharpsim.classes


def fit_mle(cls: PolicyClass, prompts, responses, fit: FitConfig = FitConfig(), weights=None):
    """argmax_{π∈Π} Σ_i w_i log π(y_i|x_i) (Eq. 5): ``cls.fit_mle`` — exact for finite/tabular classes,
    projected optax otherwise. Returns ``(policy, params, info)``.
    """
    return cls.fit_mle(prompts, responses, fit, weights)


def _validate(oracle, cls, what):
    check_class_matches(cls, oracle.pi_base, what)


def sft_sharpening(key: PRNGKeyArray, oracle, cls, config: SFTConfig) -> SharpeningResult:
    """SFT-sharpening (theory.md §6): best-of-N under ``config.reward``, then MLE over ``cls``.

    Draws n prompts and N responses each (exactly ``n·N`` sample-and-evaluate queries), keeps the
    highest-reward response per prompt (first maximiser: uniform over likelihood ties), and fits by
    maximum likelihood. Diagnostics: ``selected_log_prob`` (mean log π_base of the kept responses),
    ``final_loss``/``nonfinite_step`` for gradient fits.

    >>> import jax, jax.numpy as jnp
    >>> from sharpsim import SampleEvaluateOracle, TabularPolicy
    >>> from sharpsim.classes import TabularClass
    >>> oracle = SampleEvaluateOracle(TabularPolicy.from_probs(jnp.array([[0.5, 0.3, 0.2]])), jnp.ones(1))
    >>> res = sft_sharpening(jax.random.key(0), oracle, TabularClass(1, 3), SFTConfig(n=200, N=8))
    >>> int(res.num_queries), float(res.policy.probs[0, 0]) > 0.9
    (1600, True)
    """
    check_key(key)
    _validate(oracle, cls, "sft_sharpening")
    oracle.check_budget(config.num_queries, f"sft_sharpening(n={config.n}, N={config.N})")
    return raise_if_nonfinite(run_core(_sft_core, key, oracle, cls, config), "sft_sharpening")


def _sft_core(key, oracle, cls, config: SFTConfig) -> SharpeningResult:
    batch = oracle.sample_and_evaluate(key, config.n, config.N)
    j, _ = jax.vmap(lambda x, ys, lps: select_best(x, ys, lps, config.reward))(
        batch.prompts, batch.responses, batch.log_probs
    )
    picks = jax.tree_util.tree_map(lambda a: jnp.take_along_axis(a, j.reshape((-1,) + (1,) * (a.ndim - 1)), 1)[:, 0],
                                   batch.responses)
    picked_lp = jnp.take_along_axis(batch.log_probs, j[:, None], 1)[:, 0]
    policy, params, info = fit_mle(cls, batch.prompts, picks, config.fit)
    diagnostics = dict(info, selected_log_prob=jnp.mean(picked_lp))
    return SharpeningResult(policy=policy, params=params, num_queries=as_int(batch.num_queries), diagnostics=diagnostics)


def exact_mle_evaluated(cls: PolicyClass, counts: Float[Array, "X Y"], evaluate: metrics.SharpnessEvaluation):
    """The exact MLE of an exact-MLE class on (weighted) pick counts (``cls.fit_counts``), scored by the caller's
    ``evaluate``: ``(sharpness error, μ-mean mass on y*, params)`` — the shared step of the one-draw sweeps
    (prefix weights select which picks count)."""
    pol, params = cls.fit_counts(counts)
    err, mass = evaluate(pol)
    return err, mass, params


def check_evaluation(evaluate, what: str) -> metrics.SharpnessEvaluation:
    """The sweeps' scorer must be the caller's :class:`~sharpsim.metrics.SharpnessEvaluation`: evaluation stays
    outside the algorithms, which see π_base only through the oracle's queries."""
    if not isinstance(evaluate, metrics.SharpnessEvaluation):
        raise ValueError(
            f"{what}: evaluate must be a metrics.SharpnessEvaluation (build it with "
            f"SharpnessEvaluation.of(pi_base, mu, delta, gamma)), got {type(evaluate).__name__}.")
    return evaluate


# ------------------------------------------------------------------------------------ sweep
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SFTSweep:
    """SFT-sharpening at every (n, N) of a grid, from one draw of [n_max, N_max].

    ``sharpness_error[g, h]`` = P_{x~μ}[π̂_{g,h}(y*_γ(x)|x) ≤ 1 − δ] (exact, metrics.sharpness_error) for
    the MLE fitted on the first ``n_grid[g]`` prompts with best-of-``N_grid[h]`` (the first N_h responses);
    ``num_queries[g, h] = n_g·N_h`` is exactly what that run consumed. ``target_mass[g, h]`` is the
    μ-weighted mean of π̂(y*_γ(x)|x). ``total_drawn = n_max·N_max``.
    """

    sharpness_error: Float[Array, "G H"]
    num_queries: Int[Array, "G H"]
    target_mass: Float[Array, "G H"]
    params: Any
    total_drawn: Int[Array, ""]


def _running_argmax(scores: Float[Array, "n N"]) -> Int[Array, "n N"]:
    """idx[i, k] = first argmax of scores[i, :k+1]: :func:`sharpsim.algorithms._best_of_n.running_best` (the one
    home of "best of the first N draws")."""
    return running_best(scores)[1]


def _stack_classes(classes):
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *classes)


def sft_sharpening_sweep(
    key: PRNGKeyArray,
    oracle,
    cls: Union[PolicyClass, Callable[[int], Any]],
    n_grid: Sequence[int],
    N_grid: Sequence[int],
    *,
    evaluate: metrics.SharpnessEvaluation,
    reward: Callable = _rewards.logprob_reward,
) -> SFTSweep:
    """SFT-sharpening over a whole (n, N) grid from ONE draw, with exact sharpness per grid point.

    Draws ``n_max × N_max`` evaluated responses once (``total_drawn`` queries); grid point (g, h) is the
    SFT run that uses the first ``n_grid[g]`` prompts and, per prompt, the best of the first ``N_grid[h]``
    responses (a coupling of the runs, each with its exact law). ``cls`` is a finite or tabular class, or a
    function ``N -> class`` for classes that depend on N (e.g. ``base.bon_closure`` for realizability,
    Assumption 4.1). ``reward`` must score each response on its own (log-prob, length-normalised); group
    rewards (majority) are not prefix-consistent. Designed for ``jit(vmap(...))`` over trial keys.

    Scoring is the caller's: ``evaluate`` (a :class:`~sharpsim.metrics.SharpnessEvaluation` built from π_base,
    μ, the threshold δ and the slack γ, e.g. ``SharpnessEvaluation.of(pi_base, mu, delta, gamma)``; δ and γ may be
    traced). The algorithm sees π_base only through the oracle's queries.
    """
    n_grid = tuple(check_positive_int(v, "n_grid entry") for v in n_grid)
    N_grid = tuple(check_positive_int(v, "N_grid entry") for v in N_grid)
    if not n_grid or not N_grid:
        raise ValueError("n_grid and N_grid must be non-empty.")
    evaluate = check_evaluation(evaluate, "sft_sharpening_sweep")
    n_max, N_max = max(n_grid), max(N_grid)
    classes = [cls(N) for N in N_grid] if callable(cls) and not is_policy_class(cls) else None
    first_class = classes[0] if classes else cls
    if not getattr(first_class, "exact_mle", False):
        raise ValueError(
            "sft_sharpening_sweep needs an exact-MLE class (FiniteClass or TabularClass, or N -> such a class); "
            f"got {type(first_class).__name__}. Use sft_sharpening per grid point for gradient-fitted classes."
        )
    for c_ in classes or [cls]:
        check_class_matches(c_, oracle.pi_base, "sft_sharpening_sweep")
    stacked = _stack_classes(classes) if classes else None

    batch = oracle.sample_and_evaluate(key, n_max, N_max)
    scores = jax.vmap(reward)(batch.prompts, batch.responses, batch.log_probs)
    run_idx = _running_argmax(scores)
    cols = jnp.asarray(N_grid, jnp.int32) - 1
    picks = jnp.take_along_axis(batch.responses, run_idx[:, cols], 1).T  # [H, n]
    n_arr = jnp.asarray(n_grid, jnp.int32)
    ar = jnp.arange(n_max)
    X, Y = first_class.num_prompts, first_class.num_responses

    def fit_grid_point(n_g, h):  # the run on the first n_g prompts with best of the first N_grid[h] draws
        w = (ar < n_g).astype(jnp.result_type(float))
        counts = count_table(X, Y, batch.prompts, picks[h], w)
        cls_h = jax.tree_util.tree_map(lambda a: a[h], stacked) if stacked is not None else cls
        return exact_mle_evaluated(cls_h, counts, evaluate)

    H = len(N_grid)
    err, mass, params = jax.vmap(lambda n_g: jax.vmap(lambda h: fit_grid_point(n_g, h))(jnp.arange(H)))(n_arr)
    nq = jnp.asarray(np.outer(n_grid, N_grid), jnp.int32)
    return SFTSweep(sharpness_error=err, num_queries=nq, target_mass=mass, params=params,
                    total_drawn=as_int(batch.num_queries))
