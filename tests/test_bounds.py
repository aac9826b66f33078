"""Tests for the ``bounds`` package: expressions, numerics, exponents, constant fits, and the explicit bounds
checked by simulation on random instances.

Statistical tests use fixed seeds (NumPy ``default_rng(seed)``; hypothesis is derandomised in conftest.py),
so each is deterministic; the quoted false-failure rates are what a fresh seed would give if the code is
correct.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

import bounds
from bounds import REGISTRY

# ---------------------------------------------------------------------------------------------------------
# Domains of the symbols (where the paper's results are stated) and a strategy for points in them
# ---------------------------------------------------------------------------------------------------------

DOMAINS = {
    "epsilon": (0.01, 0.99), "delta": (0.01, 0.99), "rho": (0.01, 0.99), "gamma_margin": (0.01, 0.99),
    "mass": (0.01, 1.0), "P_star": (0.01, 1.0), "beta": (0.001, 1.0), "gamma": (0.0, 0.99),
    "C_cov": (1.0, 1e3), "C_cov_gamma": (1.0, 1e3), "C_cov_bar": (1.0, 1e3), "C_conc": (1.0, 1e3),
    "C_loss": (1.0, 1e3), "log_class_size": (0.1, 100.0), "log_cover_size": (0.1, 100.0),
    "n": (1.0, 1e5), "N": (1.0, 1e4), "N_star": (1.0, 1e4), "p": (1.0, 6.0), "n_argmax": (1.0, 10.0),
    "mu_stop": (0.05, 10.0), "R_max": (1.0, 50.0), "SEC": (1.0, 1e3), "d": (1.0, 100.0), "B": (1.0, 100.0),
    "Y_size": (2.0, 1e4),
}
INTEGER = {"p", "N", "n", "N_star", "n_argmax", "d"}


def value_in(name):
    lo, hi = DOMAINS[name]
    if name in INTEGER:
        return st.integers(int(lo), int(hi)).map(float)
    return st.floats(lo, hi, allow_nan=False, exclude_min=lo == 0.01 or lo == 0.001)


def point_for(bound):
    return st.fixed_dictionaries({k: value_in(k) for k in bound.symbol_names})


ALL = sorted(REGISTRY)

# ---------------------------------------------------------------------------------------------------------
# Structure
# ---------------------------------------------------------------------------------------------------------


def test_registry_lists_every_result_of_issue_5():
    expected = {
        "thm_3_1", "thm_3_1_prime", "thm_3_1_prime_adaptive", "thm_D_2", "thm_4_1", "thm_4_1_prime", "thm_D_1",
        "prop_C_1", "lemma_F_1", "lemma_I_1_stop", "lemma_I_1_error", "thm_4_2", "thm_J_2", "thm_4_3", "thm_J_3",
    }
    assert expected <= set(REGISTRY)
    assert bounds.get("thm_4_1") is bounds.THM_4_1
    with pytest.raises(ValueError, match="unknown bound"):
        bounds.get("thm_9_9")


@pytest.mark.parametrize("name", ALL)
def test_bound_fields(name):
    b = REGISTRY[name]
    assert b.kind in ("lower", "upper")
    assert b.reference and b.quantity
    assert all(isinstance(s, sympy.Symbol) and s.is_positive for s in b.symbols.values())
    assert set(b.symbols) == {s.name for s in b.symbols.values()}
    if b.explicit_constant:
        assert b.constant is None and b.shape == b.expr
    else:
        assert b.constant in b.expr.free_symbols
    assert isinstance(b.latex, str) and b.latex
    # the LaTeX is sympy's rendering of the very same expression
    assert b.latex == sympy.latex(b.expr, symbol_names={s: bounds._core.LATEX_NAMES[s.name] for s in b.expr.free_symbols})


def test_explicit_flags_follow_the_paper():
    explicit = {k for k, b in REGISTRY.items() if b.explicit_constant}
    assert explicit == {"prop_C_1", "prop_C_1_budget", "lemma_F_1", "lemma_I_1_stop", "lemma_I_1_error",
                        "thm_D_1_queries"}
    assert bounds.THM_3_1.kind == "lower" and bounds.THM_D_2.kind == "lower"
    assert bounds.THM_4_1.kind == "upper"


def test_faithful_formulas_spot_values():
    """Hand-computed values of the printed formulas (theory.md §5–§11) at one point."""
    e, dl, r, C, L = 0.1, 0.2, 0.05, 4.0, 7.0
    assert bounds.THM_3_1.numeric(C_cov=C, log_class_size=L, epsilon=e) == pytest.approx(
        C * L / (e**2 * (1 + math.log(C / e))))
    assert bounds.THM_D_2.numeric(C_cov=C, log_class_size=L, epsilon=e) == pytest.approx(
        C * L / (e * (1 + math.log(C / e))))
    assert bounds.THM_3_1_PRIME.numeric(C_cov=C, log_class_size=L, epsilon=e, p=2) == pytest.approx(
        C * L / (e**1.5 * (1 + math.log(C * e**-0.5))))
    assert bounds.THM_4_1.numeric(C_cov=C, log_class_size=L, rho=r, delta=dl, epsilon=e, constant=3.0) == pytest.approx(
        3.0 * C * (L + math.log(1 / r)) * math.log(1 / dl) / (dl * e**2))
    assert bounds.THM_D_1.numeric(C_cov_bar=C, log_class_size=L, rho=r, delta=dl, epsilon=e) == pytest.approx(
        C * (L + math.log(1 / r)) * math.log(1 / dl) / (dl * e))
    assert bounds.LEMMA_F_1.numeric(log_class_size=L, rho=r, n=50) == pytest.approx(2 * (L + math.log(1 / r)) / 50)
    assert bounds.LEMMA_I_1_STOP.numeric(mu_stop=2.0, n_argmax=3, P_star=0.25) == pytest.approx((2 + 1 / 3) / 0.25)
    assert bounds.LEMMA_I_1_ERROR.numeric(mu_stop=2.0, n_argmax=3) == pytest.approx(math.exp(-6))
    assert bounds.PROP_C_1.numeric(N=7, mass=0.3) == pytest.approx(math.exp(-2.1))
    assert bounds.PROP_C_1_BUDGET.numeric(rho=r, mass=0.3) == pytest.approx(math.log(1 / r) / 0.3)
    assert bounds.THM_4_2.numeric(C_conc=C, C_loss=10, log_class_size=L, rho=r, gamma_margin=0.5, delta=dl,
                                  epsilon=e) == pytest.approx(C * math.log(10 * math.exp(L) / r) ** 3 / (0.25 * dl**2 * e**2))
    assert bounds.THM_J_2.numeric(R_max=3, SEC=5, log_cover_size=L, rho=r, Y_size=100, delta=dl, gamma_margin=0.5,
                                  epsilon=e) == pytest.approx(9 * 5 * (L + math.log(1 / r)) * math.log(100 / dl) ** 2
                                                              / (0.25 * e**2 * dl**2))
    assert bounds.THM_4_3.numeric(SEC=5, log_class_size=L, rho=r, gamma_margin=0.5, delta=dl, epsilon=e) == pytest.approx(
        5 * (L + math.log(1 / r)) / (0.25 * dl**2 * e**2))
    assert bounds.THM_D_1_QUERIES.numeric(n=10, mu_stop=math.log(2 / dl), C_cov_bar=C) == pytest.approx(
        10 * (1 + math.log(2 / dl)) * C)


# ---------------------------------------------------------------------------------------------------------
# numeric: agrees with sympy substitution, broadcasts, and names bad arguments
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_numeric_matches_subs(name):
    b = REGISTRY[name]

    @settings(max_examples=10)
    @given(point_for(b), st.floats(0.1, 10.0))
    def check(point, const):
        kw = {} if b.explicit_constant else {"constant": const}
        got = float(b.numeric(**point, **kw))
        subs = {b.symbols[k]: sympy.Float(v, 30) for k, v in point.items()}
        if b.constant is not None:
            subs[b.constant] = sympy.Float(const, 30)
        want = float(b.expr.subs(subs).evalf(30))
        assert got == pytest.approx(want, rel=1e-9, abs=1e-300)

    check()


def test_numeric_broadcasts():
    eps = np.array([0.05, 0.1, 0.2])
    cov = np.array([[1.0], [10.0]])
    out = bounds.THM_4_1.numeric(C_cov=cov, log_class_size=5.0, rho=0.1, delta=0.1, epsilon=eps)
    assert out.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            assert out[i, j] == pytest.approx(float(bounds.THM_4_1.numeric(
                C_cov=cov[i, 0], log_class_size=5.0, rho=0.1, delta=0.1, epsilon=eps[j])))
    # scalar-only inputs give a 0-d array
    assert bounds.LEMMA_F_1.numeric(log_class_size=1.0, rho=0.5, n=3).shape == ()


def test_numeric_errors_name_the_symbol():
    with pytest.raises(ValueError, match="missing.*'epsilon'"):
        bounds.THM_3_1.numeric(C_cov=2.0, log_class_size=3.0)
    with pytest.raises(ValueError, match="unknown symbol.*'delta'"):
        bounds.THM_3_1.numeric(C_cov=2.0, log_class_size=3.0, epsilon=0.1, delta=0.1)
    with pytest.raises(ValueError, match="explicit constant"):
        bounds.LEMMA_F_1.numeric(log_class_size=1.0, rho=0.5, n=3, constant=2.0)


def test_numeric_constant_scales_linearly():
    kw = dict(C_cov=3.0, log_class_size=2.0, epsilon=0.2)
    assert bounds.THM_3_1.numeric(**kw, constant=5.0) == pytest.approx(5.0 * bounds.THM_3_1.numeric(**kw))


# ---------------------------------------------------------------------------------------------------------
# Monotone in the right directions (derived by hand from the formulas in theory.md)
# ---------------------------------------------------------------------------------------------------------

MONOTONE = {
    "thm_3_1": {"C_cov": +1, "log_class_size": +1, "epsilon": -1},
    "thm_3_1_prime": {"C_cov": +1, "log_class_size": +1, "epsilon": -1},
    "thm_3_1_prime_adaptive": {"C_cov": +1, "log_class_size": +1, "epsilon": -1},
    "thm_D_2": {"C_cov": +1, "log_class_size": +1, "epsilon": -1},
    "thm_4_1": {"C_cov": +1, "log_class_size": +1, "rho": -1, "delta": -1, "epsilon": -1},
    "thm_4_1_prime": {"log_class_size": +1, "rho": -1, "delta": -1, "n": -1, "N_star": -1, "C_cov_gamma": +1},
    "thm_D_1": {"C_cov_bar": +1, "log_class_size": +1, "rho": -1, "delta": -1, "epsilon": -1},
    "thm_D_1_error": {"log_class_size": +1, "rho": -1, "delta": -1, "n": -1},
    "thm_D_1_queries": {"n": +1, "mu_stop": +1, "C_cov_bar": +1},
    "prop_C_1": {"N": -1, "mass": -1},
    "prop_C_1_budget": {"rho": -1, "mass": -1},
    "lemma_F_1": {"log_class_size": +1, "rho": -1, "n": -1},
    "lemma_I_1_stop": {"mu_stop": +1, "n_argmax": -1, "P_star": -1},
    "lemma_I_1_error": {"mu_stop": -1, "n_argmax": -1},
    "thm_4_2": {"C_conc": +1, "C_loss": +1, "log_class_size": +1, "rho": -1, "gamma_margin": -1, "delta": -1,
                "epsilon": -1},
    "thm_4_2_prime": {"C_conc": +1, "C_loss": +1, "log_class_size": +1, "rho": -1, "n": -1, "beta": +1, "gamma": +1,
                      "gamma_margin": -1, "delta": -1},
    "thm_J_2": {"R_max": +1, "SEC": +1, "log_cover_size": +1, "rho": -1, "Y_size": +1, "delta": -1,
                "gamma_margin": -1, "epsilon": -1},
    "thm_4_3": {"SEC": +1, "log_class_size": +1, "rho": -1, "gamma_margin": -1, "delta": -1, "epsilon": -1},
    "thm_J_3": {"B": +1, "Y_size": +1, "d": +1, "rho": -1, "delta": -1, "epsilon": -1, "gamma_margin": -1},
}


def test_monotone_table_covers_registry():
    assert set(MONOTONE) == set(REGISTRY)


@pytest.mark.parametrize("name,var", [(k, v) for k, vs in MONOTONE.items() for v in vs])
def test_monotone(name, var):
    b = REGISTRY[name]
    direction = MONOTONE[name][var]

    @settings(max_examples=15)
    @given(point_for(b), value_in(var), value_in(var))
    def check(point, v1, v2):
        lo, hi = min(v1, v2), max(v1, v2)
        f_lo = float(b.numeric(**{**point, var: lo}))
        f_hi = float(b.numeric(**{**point, var: hi}))
        if direction > 0:
            assert f_hi >= f_lo * (1 - 1e-12)
        else:
            assert f_hi <= f_lo * (1 + 1e-12)
        if hi > lo * (1 + 1e-6) and direction > 0 and not (name == "thm_4_2_prime" and var == "beta"):
            # strictly (β log C_conc vanishes at C_conc = 1, hence the exclusion), unless the variable's term is
            # absorbed by float64 rounding next to a much larger one (seen: γ added to a ~1e9 sum)
            assert f_hi > f_lo or abs(f_hi - f_lo) <= 1e-9 * abs(f_lo)

    check()


# ---------------------------------------------------------------------------------------------------------
# Theorem 3.1′ at p = 1 is Theorem 3.1 (and its adaptive form is Theorem D.2)
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prime,base", [("thm_3_1_prime", "thm_3_1"), ("thm_3_1_prime_adaptive", "thm_D_2")])
def test_thm_3_1_prime_at_p1_is_thm_3_1_symbolically(prime, base):
    p = REGISTRY[prime].symbols["p"]
    assert sympy.simplify(REGISTRY[prime].expr.subs(p, 1) - REGISTRY[base].expr) == 0


@given(C=value_in("C_cov"), L=value_in("log_class_size"), eps=value_in("epsilon"))
def test_thm_3_1_prime_at_p1_is_thm_3_1_numerically(C, L, eps):
    assert float(bounds.THM_3_1_PRIME.numeric(C_cov=C, log_class_size=L, epsilon=eps, p=1)) == pytest.approx(
        float(bounds.THM_3_1.numeric(C_cov=C, log_class_size=L, epsilon=eps)), rel=1e-12)
    assert float(bounds.THM_3_1_PRIME_ADAPTIVE.numeric(C_cov=C, log_class_size=L, epsilon=eps, p=1)) == pytest.approx(
        float(bounds.THM_D_2.numeric(C_cov=C, log_class_size=L, epsilon=eps)), rel=1e-12)


# ---------------------------------------------------------------------------------------------------------
# Exponents (predicted log-log slopes ignoring log factors; theory.md §13 "scaling laws to reproduce")
# ---------------------------------------------------------------------------------------------------------

EXPONENTS = {
    ("thm_3_1", "epsilon"): -2, ("thm_3_1", "C_cov"): 1, ("thm_3_1", "log_class_size"): 1,
    ("thm_D_2", "epsilon"): -1, ("thm_D_2", "C_cov"): 1,
    ("thm_4_1", "epsilon"): -2, ("thm_4_1", "delta"): -1, ("thm_4_1", "C_cov"): 1, ("thm_4_1", "log_class_size"): 1,
    ("thm_4_1", "rho"): 0,
    ("thm_D_1", "epsilon"): -1, ("thm_D_1", "delta"): -1, ("thm_D_1", "C_cov_bar"): 1,
    ("thm_D_1_error", "n"): -1, ("lemma_F_1", "n"): -1, ("prop_C_1_budget", "mass"): -1,
    ("lemma_I_1_stop", "P_star"): -1, ("lemma_I_1_stop", "mu_stop"): 1,
    ("thm_4_2", "epsilon"): -2, ("thm_4_2", "delta"): -2, ("thm_4_2", "gamma_margin"): -2, ("thm_4_2", "C_conc"): 1,
    ("thm_4_2", "C_loss"): 0, ("thm_4_2", "log_class_size"): 3,
    ("thm_J_2", "epsilon"): -2, ("thm_J_2", "delta"): -2, ("thm_J_2", "gamma_margin"): -2, ("thm_J_2", "SEC"): 1,
    ("thm_J_2", "R_max"): 2, ("thm_J_2", "Y_size"): 0,
    ("thm_4_3", "epsilon"): -2, ("thm_4_3", "SEC"): 1,
    ("thm_J_3", "d"): 2, ("thm_J_3", "B"): 2, ("thm_J_3", "epsilon"): -2, ("thm_J_3", "gamma_margin"): -2,
}


@pytest.mark.parametrize("name,var", sorted(EXPONENTS))
def test_exponents_as_predicted(name, var):
    assert REGISTRY[name].exponent(var) == EXPONENTS[(name, var)]


def test_exponent_of_thm_3_1_prime_in_epsilon():
    p = bounds.THM_3_1_PRIME.symbols["p"]
    assert sympy.simplify(bounds.THM_3_1_PRIME.exponent("epsilon") - (-1 - 1 / p)) == 0
    assert sympy.simplify(bounds.THM_3_1_PRIME_ADAPTIVE.exponent("epsilon") + 1 / p) == 0


@pytest.mark.parametrize("name,var", [("thm_3_1", "epsilon"), ("thm_4_1", "delta"), ("thm_4_2", "log_class_size"),
                                      ("thm_J_3", "gamma_margin"), ("prop_C_1", "N"), ("thm_4_1_prime", "n")])
def test_exponent_with_logs_is_the_local_slope(name, var):
    """include_logs=True is the elasticity of the full expression: compare with a finite difference of numeric."""
    b = REGISTRY[name]
    rng = np.random.default_rng(3)
    for _ in range(5):
        # moderate values (e^{-Np} must not underflow)
        point = {k: float(rng.uniform(DOMAINS[k][0], min(DOMAINS[k][1], 50.0)))
                 if k not in ("epsilon", "delta", "rho", "gamma_margin", "mass") else float(rng.uniform(0.02, 0.5))
                 for k in b.symbol_names}
        h = 1e-6
        up = float(b.numeric(**{**point, var: point[var] * (1 + h)}))
        down = float(b.numeric(**{**point, var: point[var] * (1 - h)}))
        fd = (math.log(up) - math.log(down)) / (math.log1p(h) - math.log1p(-h))
        assert b.exponent(var, include_logs=True, at=point) == pytest.approx(fd, rel=1e-5, abs=1e-7)


def test_exponent_errors():
    with pytest.raises(ValueError, match="no symbol"):
        bounds.THM_3_1.exponent("delta")
    with pytest.raises(ValueError, match="not a power law"):
        bounds.PROP_C_1.exponent("N")  # e^{-N p} has no log-log slope
    with pytest.raises(ValueError, match="pass at="):
        bounds.THM_3_1.exponent("epsilon", include_logs=True)


# ---------------------------------------------------------------------------------------------------------
# fit_constant recovers a planted constant
# ---------------------------------------------------------------------------------------------------------


def test_fit_constant_recovers_planted_constant_with_nominal_coverage():
    """log measured = log(c·g) + N(0, σ²): the t-interval is exact, so coverage ~ Binomial(R, 0.95).

    The acceptance threshold is the 1e-4 quantile of Binomial(200, 0.95): false-failure rate 1e-4.
    """
    b = bounds.THM_4_1
    rng = np.random.default_rng(12345)
    c_true, sigma, k, reps = 3.7, 0.2, 30, 200
    covered = 0
    for _ in range(reps):
        pts = dict(C_cov=rng.uniform(1, 100, k), log_class_size=rng.uniform(1, 50, k), rho=rng.uniform(0.01, 0.5, k),
                   delta=rng.uniform(0.01, 0.5, k), epsilon=rng.uniform(0.01, 0.5, k))
        g = (pts["C_cov"] * (pts["log_class_size"] + np.log(1 / pts["rho"])) * np.log(1 / pts["delta"])
             / (pts["delta"] * pts["epsilon"] ** 2))  # the shape, written out independently
        measured = c_true * g * np.exp(sigma * rng.standard_normal(k))
        fit = b.fit_constant(measured, **pts)
        covered += fit.lower <= c_true <= fit.upper
        # the point estimate is within 5 standard errors of the truth (false-failure < 1e-6 per rep)
        assert abs(math.log(fit.constant) - math.log(c_true)) <= 5 * sigma / math.sqrt(k)
    assert covered >= scipy.stats.binom.ppf(1e-4, reps, 0.95)


def test_fit_constant_bootstrap_and_errors():
    rng = np.random.default_rng(0)
    eps = rng.uniform(0.01, 0.5, 40)
    g = 5.0 / (eps**2 * (1 + np.log(5.0 / eps)))  # THM_3_1 shape at C=5, log|Π|=1
    measured = 0.25 * g * np.exp(0.1 * rng.standard_normal(40))
    fit = bounds.THM_3_1.fit_constant(measured, method="bootstrap", seed=1, C_cov=5.0, log_class_size=1.0, epsilon=eps)
    assert fit.lower <= 0.25 <= fit.upper and fit.method == "bootstrap"
    again = bounds.THM_3_1.fit_constant(measured, method="bootstrap", seed=1, C_cov=5.0, log_class_size=1.0, epsilon=eps)
    assert again == fit
    with pytest.raises(ValueError, match="> 0"):
        bounds.THM_3_1.fit_constant(-measured, C_cov=5.0, log_class_size=1.0, epsilon=eps)
    with pytest.raises(ValueError, match="missing"):
        bounds.THM_3_1.fit_constant(measured, C_cov=5.0, epsilon=eps)


# ---------------------------------------------------------------------------------------------------------
# Conditions and recipes
# ---------------------------------------------------------------------------------------------------------


def test_dpo_beta_satisfies_theorem_4_2_condition():
    cond = bounds.THM_4_2.conditions[1]
    beta = bounds.dpo_beta(0.1, 0.2, 0.5, c_beta=0.5)
    assert beta == pytest.approx(0.5 * 0.5 * 0.2 * 0.1)
    vals = dict(c_beta=0.5, gamma_margin=0.5, delta=0.2, epsilon=0.1)
    assert cond.holds(beta=beta, **vals)
    assert not cond.holds(beta=2 * beta, **vals)


def test_xpo_recipes():
    beta = bounds.xpo_beta(0.5, 0.1, 100)
    assert beta == pytest.approx(0.5 / (2 * math.log(2000)))
    cond = bounds.THM_J_2.conditions[3]  # β^{-1} ≥ 2 γ^{-1} log(2|Y|/δ): the recipe is on the boundary
    assert cond.holds(beta=beta * (1 - 1e-9), gamma_margin=0.5, delta=0.1, Y_size=100)
    assert not cond.holds(beta=beta * 1.01, gamma_margin=0.5, delta=0.1, Y_size=100)
    # α in the toolkit's normalisation (unit-weight squared loss): α_thm·(R_max + V_max)², V_max = β R_max by
    # default (Theorem J.2's proof). Catches a recipe that forgets the (V_max+R_max)² rescaling (128x too weak).
    alpha = bounds.xpo_alpha(beta, 4.0, 10.0, 1000, 3.0, 0.05)
    root = math.sqrt((10.0 + math.log(2 * 1000 / 0.05)) / (3.0 * 1000))
    alpha_thm = beta / (4.0 + beta * 4.0) * root
    assert alpha == pytest.approx(alpha_thm * (4.0 + beta * 4.0) ** 2)
    assert bounds.xpo_alpha(beta, 4.0, 10.0, 1000, 3.0, 0.05, V_max=1.0) == pytest.approx(beta * 5.0 * root)
    T = bounds.xpo_iterations(0.2, 0.2, 0.1, 0.1, 2.0, 3.0, 5.0, C=1.0)
    rhs = 4.0 * 3.0 * (5.0 + math.log(2 * T / 0.1)) / (0.04 * 0.04 * 0.01)
    assert T >= rhs * (1 - 1e-9) and T - 1 < rhs * 1.001
    assert bounds.xpo_eps_disc(0.1, 0.2, 4.0, 100) == pytest.approx(0.02 / 20)


def test_sft_and_adaptive_recipes():
    n, N = bounds.sft_parameters(0.1, 0.2, 0.05, 8.0, 10.0, c=2.0)
    assert n == math.ceil(2 * (10 + math.log(20)) / (0.2 * 0.1))
    assert N == math.ceil(2 * 8 * math.log(10) / 0.1)
    n2, mu = bounds.adaptive_sft_parameters(0.1, 0.2, 0.05, 10.0)
    assert n2 == math.ceil((10 + math.log(20)) / 0.02) and mu == pytest.approx(math.log(10))
    assert bounds.adaptive_stop_parameter(0.5) == pytest.approx(math.log(4))
    # recipes broadcast over arrays (one sweep axis)
    n_arr, _ = bounds.adaptive_sft_parameters(np.array([0.1, 0.2]), 0.2, 0.05, 10.0)
    assert list(n_arr) == [math.ceil((10 + math.log(20)) / (0.2 * e)) for e in (0.1, 0.2)]
    n_arr, N_arr = bounds.sft_parameters(0.1, 0.2, 0.05, np.array([1.0, 8.0]), 10.0)
    assert list(N_arr) == [math.ceil(cv * math.log(10) / 0.1) for cv in (1.0, 8.0)]
    with pytest.raises(ValueError, match="epsilon"):
        bounds.sft_parameters(1.5, 0.2, 0.05, 8.0, 10.0)


def test_loglinear_recipes():
    assert bounds.loglinear_R_max(0.1, 2.0, 100) == pytest.approx(math.sqrt(4 * 0.01 * 4 + (4 + math.log(100)) ** 2))
    assert bounds.loglinear_norm_limit(0.5, 0.1, 100, 3.0) == pytest.approx(0.5 * 3 / (3 * math.log(2000)))
    assert bounds.loglinear_log_cover_size(4, 2.0, 0.1) == pytest.approx(4 * math.log(120))


def test_hard_instance_parameters():
    Delta, M = bounds.hard_instance_parameters(0.01, 2.0, p=2)
    assert Delta == pytest.approx(0.16) and M == math.ceil(1 + 2.0 * 0.01 ** -0.5)


@given(rho=value_in("rho"), mass=value_in("mass"))
def test_bon_budget_is_the_smallest_sufficient_N(rho, mass):
    N = bounds.bon_budget(rho, mass)
    assert N >= math.log(1 / rho) / mass * (1 - 1e-9)
    assert N == 1 or N - 1 < math.log(1 / rho) / mass
    assert scipy.stats.binom.pmf(0, N, mass) <= rho * (1 + 1e-9)  # the guarantee itself


# ---------------------------------------------------------------------------------------------------------
# Every explicit bound holds on random instances
# ---------------------------------------------------------------------------------------------------------

Z_ONE_SIDED = scipy.stats.norm.ppf(1 - 1e-4)  # CLT tolerance: one-sided false-failure 1e-4 per instance
BINOM_Q = 1 - 1e-4  # binomial tolerance: false-failure ≤ 1e-4 per instance


@given(N=st.integers(1, 2000), mass=st.floats(1e-6, 1.0))
def test_prop_C_1_exact(N, mass):
    """P[no sample in a set of mass p] = (1 − p)^N (scipy's binomial pmf at 0) ≤ e^{−Np}."""
    assert scipy.stats.binom.pmf(0, N, mass) <= float(bounds.PROP_C_1.numeric(N=N, mass=mass)) * (1 + 1e-12) + 1e-300


def _random_table(rng, Y, ties):
    """A random distribution on Y points whose top `ties` entries are exactly equal (mixed with uniform)."""
    w = rng.dirichlet(np.ones(Y))
    w = 0.5 * w + 0.5 / Y
    w = np.sort(w)[::-1]
    w[:ties] = w[0] * 1.2
    P = w / w.sum()
    return rng.permutation(P)


@settings(max_examples=15)
@given(seed=st.integers(0, 10**6), Y=st.integers(2, 8), gamma=st.floats(0.0, 0.6), N=st.integers(1, 12))
def test_prop_C_1_monte_carlo(seed, Y, gamma, N):
    """Simulated BoN (argmax of log π_base over N draws) misses y*_γ with frequency ≤ e^{−N p} (binomial tol.)."""
    rng = np.random.default_rng(seed)
    P = _random_table(rng, Y, ties=int(rng.integers(1, Y + 1)))
    in_set = P >= (1 - gamma) * P.max()
    p = P[in_set].sum()
    R = 4000
    draws = rng.choice(Y, size=(R, N), p=P)
    best = draws[np.arange(R), np.argmax(P[draws], axis=1)]
    failures = int((~in_set[best]).sum())
    bound = float(bounds.PROP_C_1.numeric(N=N, mass=p))
    assert failures <= scipy.stats.binom.ppf(BINOM_Q, R, min(bound, 1.0))


def _mle_violation_rate(rng, bound_fn, n, rho, K=8, X=3, Y=4, D=2000):
    """Fraction of D datasets of size n where E_x D_H²(π̂_MLE, π*) exceeds bound_fn(n)."""
    cls = rng.dirichlet(np.ones(Y), size=(K, X))  # [K, X, Y] random conditional distributions
    truth = int(rng.integers(K))
    mu = rng.dirichlet(np.ones(X))
    # D_H² without the factor 1/2, averaged over x ~ μ, for every member against π*
    dh2 = ((np.sqrt(cls) - np.sqrt(cls[truth])) ** 2).sum(-1) @ mu  # [K]
    joint = (mu[:, None] * cls[truth]).ravel()
    counts = rng.multinomial(n, joint, size=D)  # sufficient statistics of n i.i.d. (x, y)
    loglik = counts @ np.log(cls.reshape(K, X * Y)).T  # [D, K]
    mle = np.argmax(loglik, axis=1)
    return (dh2[mle] > bound_fn(n)).mean(), D


@settings(max_examples=12)
@given(seed=st.integers(0, 10**6), n=st.sampled_from([3, 8, 20, 60]), rho=st.floats(0.02, 0.5))
def test_lemma_F_1_monte_carlo(seed, n, rho):
    """P[E_x D_H²(π̂, π*) > 2 log(|Π|/ρ)/n] ≤ ρ: the violation count is ≤ the 1 − 1e-4 quantile of Bin(D, ρ)."""
    rng = np.random.default_rng(seed)
    K = 8
    rate, D = _mle_violation_rate(rng, lambda m: float(bounds.LEMMA_F_1.numeric(log_class_size=math.log(K), rho=rho,
                                                                                  n=m)), n, rho, K=K)
    assert rate * D <= scipy.stats.binom.ppf(BINOM_Q, D, rho)


def test_lemma_F_1_check_has_power():
    """The same harness rejects a bound 100× too small (so the test above can fail)."""
    rng = np.random.default_rng(7)
    rate, D = _mle_violation_rate(rng, lambda m: 0.01 * float(bounds.LEMMA_F_1.numeric(
        log_class_size=math.log(8), rho=0.1, n=m)), 5, 0.1)
    assert rate * D > scipy.stats.binom.ppf(BINOM_Q, D, 0.1)


def _stopping_rule(rng, P, mu, R):
    """Simulate N_μ = inf{k : 1/max_{j≤k} P(y_j) ≤ k/μ} for R independent sequences; return (N, ŷ in y*)."""
    k_max = int(math.ceil(mu / P.min())) + 1  # max_j P(y_j) ≥ min P, so the rule stops by then
    draws = rng.choice(P.size, size=(R, k_max), p=P)
    running_max = np.maximum.accumulate(P[draws], axis=1)
    k = np.arange(1, k_max + 1)
    stop = k[None, :] * running_max >= mu  # 1/max ≤ k/μ  ⇔  μ ≤ k·max
    assert stop[:, -1].all()
    first = np.argmax(stop, axis=1)
    N = first + 1
    hit = running_max[np.arange(R), first] == P.max()  # the most likely response seen is an argmax
    return N, hit


@settings(max_examples=15)
@given(seed=st.integers(0, 10**6), Y=st.integers(2, 8), mu=st.floats(0.05, 4.0), data=st.data())
def test_lemma_I_1_monte_carlo(seed, Y, mu, data):
    """E[N_μ] ≤ (μ + 1/|y*|)/P* (CLT, one-sided z for 1e-4) and P[ŷ ∉ y*] ≤ e^{−|y*|μ} (binomial 1 − 1e-4)."""
    ties = data.draw(st.integers(1, Y))
    rng = np.random.default_rng(seed)
    P = _random_table(rng, Y, ties)
    assert (P == P.max()).sum() == ties
    R = 4000
    N, hit = _stopping_rule(rng, P, mu, R)
    stop_bound = float(bounds.LEMMA_I_1_STOP.numeric(mu_stop=mu, n_argmax=ties, P_star=P.max()))
    assert N.mean() <= stop_bound + Z_ONE_SIDED * N.std(ddof=1) / math.sqrt(R) + 1e-12
    err_bound = float(bounds.LEMMA_I_1_ERROR.numeric(mu_stop=mu, n_argmax=ties))
    assert int((~hit).sum()) <= scipy.stats.binom.ppf(BINOM_Q, R, err_bound)


def test_thm_D_1_queries_bound_holds_per_prompt():
    """E[N_μ] ≤ (1 + μ)/max_y P(y): the per-prompt form behind E[m] ≤ n(1 + μ_stop) C̄_cov (n = 1 prompt)."""
    rng = np.random.default_rng(11)
    for _ in range(5):
        P = _random_table(rng, 6, int(rng.integers(1, 4)))
        mu = float(np.log(2 / 0.1))
        N, _ = _stopping_rule(rng, P, mu, 4000)
        bound = float(bounds.THM_D_1_QUERIES.numeric(n=1, mu_stop=mu, C_cov_bar=1 / P.max()))
        assert N.mean() <= bound + Z_ONE_SIDED * N.std(ddof=1) / math.sqrt(4000)


def test_latex_with_a_fitted_constant_shows_it_once():
    b = bounds.get("thm_4_1")
    text = b.latex_with(0.0452)
    assert text.count("0.0452") == 1 and "C_{\\mathrm{cov}} c" in b.latex and "C_{\\mathrm{cov}} c" not in text
    assert bounds.get("prop_C_1").latex_with(3.0) == bounds.get("prop_C_1").latex  # explicit: no constant
