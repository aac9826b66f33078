"""Experiments bon_vs_n, sft_minimax, adaptive_vs_fixed: settings, rows, analysis, end-to-end on tiny settings."""

import dataclasses
import json
import math

import jax
import numpy as np
import pytest

import sharpsim_experiments
from sharpsim_experiments import _hard_instance
from sharpsim.complexity import geometric_lattice, grid_sample_complexity
from sharpsim.finite_size import adaptive_pick_planted_probability
from sharpsim_experiments import adaptive_vs_fixed as ADA
from sharpsim_experiments import bon_vs_n as BON
from sharpsim_experiments import sft_minimax as SFT
from sharpsim.classes import FiniteClass
from sharpsim.instances import hard_instance, hard_instance_coverage
from sharpsim.runner import is_verdict, read_results, run_experiment, trial_keys

TRIALS = 8
NAMES = ("bon_vs_n", "sft_minimax", "adaptive_vs_fixed")  # registry order
REQUIRED = {"trial", "queries", "metric", "value"}
CHECK_KEYS = {"quantity", "predicted", "measured", "lower", "upper", "verdict", "note"}


def _tiny_sft_settings(mode):
    """Three small hard instances (d = 1, M = 21, 26, 35) for the ε sweep and the C sweep."""
    return [SFT._setting(0.05, 1.0, 1, "epsilon+C"), SFT._setting(0.04, 1.0, 1, "epsilon"),
            SFT._setting(0.03, 1.0, 1, "epsilon"), SFT._setting(0.05, 1.3, 1, "C"), SFT._setting(0.05, 1.7, 1, "C")]


def _tiny_bon_settings(mode):
    return [{"mass": p, "C_cov": 1 / p, "num_responses": 64, "N_max": 120, "rho": BON.RHO} for p in (0.25, 0.125, 0.0625)]


@pytest.fixture()
def tiny(monkeypatch):
    """Shrink the sweeps (the grids follow the settings, so the programs are small and compiled once)."""
    monkeypatch.setattr(SFT, "settings", _tiny_sft_settings)
    monkeypatch.setattr(BON, "_MASSES", {"quick": [0.25, 0.125, 0.0625], "full": [0.25]})
    monkeypatch.setattr(BON, "settings", _tiny_bon_settings)


def _keys(i=0):
    return trial_keys(0, i, TRIALS)


# ------------------------------------------------------------------------------------------ settings
@pytest.mark.parametrize("name", NAMES + ("sft_delta", "sft_class_size", "sft_gamma", "realizability", "maxcut_hardness"))
@pytest.mark.parametrize("mode", ["quick", "full"])
def test_settings_are_well_formed(name, mode):
    exp = sharpsim_experiments.get(name)
    assert exp.name == name and exp.claim and exp.how_to_read and exp.predicted
    import bounds

    assert all(b in bounds.REGISTRY for b in exp.bounds)
    ss = exp.settings(mode)
    assert len(ss) >= 3
    for s in ss:
        assert isinstance(s, dict)
        assert all(isinstance(v, (int, float, str, bool)) for v in s.values()), s
        json.dumps(s)
    assert set(exp.trials) == {"quick", "full"}


def test_registry_order():
    names = [n for n in sharpsim_experiments.REGISTRY if n in NAMES]
    assert names == list(NAMES)


# ------------------------------------------------------------------------------------------ helpers
def test_padded_hard_class_and_closures_match_the_library():
    M, d, M_max, Delta = 7, 2, 9, 0.5
    inst = hard_instance(jax.random.key(0), d=d, M=M, Delta=Delta)
    lp, valid, mu = _hard_instance.hard_class_arrays(M, d, M_max, Delta)
    np.testing.assert_allclose(np.exp(lp[:, :M, :M + 1]), np.exp(np.asarray(inst.class_log_probs)), atol=1e-6)
    assert np.all(np.exp(lp[:, :, M + 1:]) == 0) and valid.sum() == 1 + d * M
    np.testing.assert_allclose(mu, np.asarray(inst.mu), atol=1e-7)
    base = FiniteClass.from_instance(inst)
    stack = _hard_instance.bon_closure_stack(M, d, M_max, (1, 10))
    for h, N in enumerate((1, 10)):
        ref = np.exp(np.asarray(base.bon_closure(N).log_probs))
        np.testing.assert_allclose(np.exp(stack[h][:, :M, :M + 1]), ref, atol=1e-5)


def test_adaptive_pick_law_matches_a_simulation_of_eq_10():
    M, mu_stop = 8, math.log(4.0)
    a = adaptive_pick_planted_probability(M, mu_stop)
    rng = np.random.default_rng(0)
    q = (M - 2) / (M * (M - 1))
    reps, hits = 20000, 0
    probs = np.full(M, q)
    probs[0] = 2 / M
    draws = rng.choice(M, size=(reps, 200), p=probs)
    for row in draws:  # Eq. (10): stop at the first k with k ≥ μ_stop / max_{j≤k} π(y_j)
        best = 0.0
        for k, y in enumerate(row, start=1):
            best = max(best, probs[y])
            if math.log(k) >= math.log(mu_stop) - math.log(best):
                hits += best == probs[0]
                break
    se = math.sqrt(a * (1 - a) / reps)
    assert abs(hits / reps - a) < 5 * se
    assert a >= 1 - 0.5 / 2  # Lemma I.1 with δ = 1/2: ≥ 1 − δ/2


def test_grid_sample_complexity_on_a_known_table():
    n_grid, N_grid = (2, 4, 8), (1, 2, 4, 8)
    # success iff N ≥ 8 / n; the rate jumps 0 → 1 between grid points, and the log-interpolated crossing of
    # 1 − ρ = 0.9 sits at 0.9 of the log-step: N̂(2) = 2·2^0.9, N̂(4) = 2^0.9, N̂(8) = 1 (first point)
    table = np.array([[N >= 8 / n for N in N_grid] for n in n_grid])[:, :, None].repeat(20, axis=2)
    gc = grid_sample_complexity(n_grid, N_grid, table, 0.1, n_boot=50)
    assert gc.estimate == pytest.approx(8 * 2**-0.1) and gc.lower == gc.upper == pytest.approx(gc.estimate)
    assert gc.n_at in (2.0, 4.0)
    assert geometric_lattice(3, 20, 2) == [3, 4, 6, 8, 11, 16, 23]


# ------------------------------------------------------------------------------------------ run_setting
def test_bon_rows(tiny):
    s = BON.settings("quick")[0]
    rows = BON.run_setting(_keys(), s, "quick")
    assert rows and all(REQUIRED <= set(r) for r in rows)
    assert all(r["queries"] == r["N"] and r["value"] in (0.0, 1.0) for r in rows)
    by_trial = {}
    for r in rows:
        by_trial.setdefault(r["trial"], []).append((r["N"], r["value"]))
    for seq in by_trial.values():  # prefixes of one draw: success is monotone in N
        vals = [v for _, v in sorted(seq)]
        assert vals == sorted(vals)


def test_sft_rows_and_queries(tiny):
    s = SFT.settings("quick")[1]
    n_grid, N_grid = SFT.grids("quick")
    rows = SFT.run_setting(_keys(), s, "quick")
    main = [r for r in rows if r["metric"] == "sharpened_from_N"]
    assert len(main) == TRIALS * len(n_grid) and all(REQUIRED <= set(r) for r in rows)
    assert all(r["queries"] == r["n"] * r["N"] and r["N"] == N_grid[-1] for r in main)
    assert all(r["value"] in N_grid or r["value"] == math.inf for r in main)
    # more prompts never hurt much on average: the largest n succeeds at some N in most trials
    assert np.mean([math.isfinite(r["value"]) for r in main if r["n"] == n_grid[-1]]) > 0.5


def test_adaptive_rows_count_the_realised_draws(tiny):
    # catches: per-prefix query counts that are not the realised draws of Eq. (10) (x_0 costs exactly ⌈ln 4⌉ = 2,
    # a rare prompt between K_2 = ⌈0.69 M⌉ and K_q draws) or a fixed-N row whose thresholds leave the N grid
    s = ADA.settings("quick")[0]
    g = ADA.grids(s)
    rows = ADA.run_setting(_keys(), s, "quick")
    assert all(REQUIRED <= set(r) for r in rows) and len(rows) == 2 * TRIALS
    M = s["M"]
    K_q = math.ceil(math.log(4.0) * M * (M - 1) / (M - 2)) + 1
    for r in rows:
        items = str(r["by_n"]).split(";")
        if r["algorithm"] == "adaptive":
            q = [int(v[:-1]) for v in items]
            assert len(q) == len(g["n_ada"]) and all(b >= a for a, b in zip(q, q[1:]))
            assert all(2 * n <= m <= n * K_q for n, m in zip(g["n_ada"], q))
        else:
            vals = [float(v) for v in items]
            assert len(vals) == len(g["n_fix"]) and all(v in g["N_fix"] or v == math.inf for v in vals)


# ------------------------------------------------------------------------------------------ end to end
def test_end_to_end_bon_vs_n(tiny, tmp_path):
    exp = dataclasses.replace(sharpsim_experiments.get("bon_vs_n"), settings=BON.settings)
    folder = run_experiment(exp, tmp_path, mode="quick", trials=TRIALS, progress=False)
    meta, rows = read_results(folder / "results.csv")
    assert meta["trials"] == TRIALS and rows
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["checks"] and all(CHECK_KEYS <= set(c) for c in summary["checks"])
    assert all(is_verdict(c["verdict"]) for c in summary["checks"])
    assert summary["figures"] and all((folder / f).exists() for f in summary["figures"])


def _tiny_ada_settings(mode):
    """Five small hard instances (d = 1, ε = 0.04 … 0.02, M = 26 … 51)."""
    out = []
    for eps in (0.04, 0.0336, 0.0283, 0.0238, 0.02):
        Delta, M = 16 * eps, math.ceil(1 + 1 / eps)
        C_cov = hard_instance_coverage(M, Delta)
        out.append({"sweep": "epsilon", "epsilon": eps, "C": 1.0, "d": 1, "M": M, "Delta": Delta, "C_cov": C_cov,
                    "C_cov_bar": C_cov, "log_class_size": math.log(M), "rho": ADA.RHO, "delta": 0.5,
                    "mu_stop": ADA.MU_STOP})
    return out


def _exact_check(summary):
    return next(c for c in summary["checks"] if c["quantity"].startswith("exact finite-size reference"))


def _run_quick(name: str, settings, tmp_path, trials: int):
    """Run the registered experiment ``name`` with the given settings; its folder and summary, every check of
    which must carry the check keys and a verdict."""
    exp = dataclasses.replace(sharpsim_experiments.get(name), settings=settings)
    folder = run_experiment(exp, tmp_path, mode="quick", trials=trials, progress=False)
    summary = json.loads((folder / "summary.json").read_text())
    assert all(CHECK_KEYS <= set(c) and is_verdict(c["verdict"]) for c in summary["checks"])
    return folder, summary


@pytest.mark.parametrize("broken", [False, True])
def test_end_to_end_adaptive_vs_fixed_known_verdict(tmp_path, monkeypatch, broken):
    # Positive control (broken=False): the measured m̂ and Ê[m] scatter around the exact finite-size reference,
    # so the coverage check is "consistent". Negative control (broken=True, private hook): best-of-N / Eq. (10)
    # keep only the FIRST draw, so the runs almost never pick the planted response and the exact reference of
    # the real algorithms falls outside every interval: "inconsistent". Catches a simulator that ignores the
    # best-of-N pick, and a check that cannot say no. Fixed seeds; 300 trials (false-failure rate of the
    # positive control ≈ P[Binomial(10, 0.05) ≥ 3] ≈ 1% if the intervals had exact coverage).
    monkeypatch.setattr(ADA, "settings", _tiny_ada_settings)
    monkeypatch.setattr(ADA, "EPS_ASYMPTOTIC", 0.05)
    monkeypatch.setitem(ADA._BREAK, "ignore_best_of_n", broken)
    folder, summary = _run_quick("adaptive_vs_fixed", ADA.settings, tmp_path, trials=300)
    assert _exact_check(summary)["verdict"] == ("inconsistent" if broken else "consistent")
    if not broken:
        assert summary["figures"] and all((folder / f).exists() for f in summary["figures"])


@pytest.mark.parametrize("broken", [False, True])
def test_end_to_end_sft_minimax_known_verdict(tiny, tmp_path, monkeypatch, broken):
    # Positive control: the library's sft_sharpening_sweep measured on five tiny hard instances agrees with the
    # exact finite-size law ("consistent"). Negative control (private hook: a constant self-reward, so "best of
    # N" is the first draw): the runs never sharpen, m̂ = ∞ everywhere while the exact reference is finite:
    # "inconsistent". Catches an experiment whose checks cannot fail when best-of-N selection is lost.
    monkeypatch.setitem(SFT._BREAK, "ignore_best_of_n", broken)
    _, summary = _run_quick("sft_minimax", SFT.settings, tmp_path, trials=200)
    assert _exact_check(summary)["verdict"] == ("inconsistent" if broken else "consistent")


@pytest.mark.parametrize("broken", [False, True])
def test_end_to_end_bon_vs_n_known_verdict(tiny, tmp_path, monkeypatch, broken):
    # Positive control (broken=False): best-of-N's N̂(ρ) scatters around the exact log ρ/log(1−p) and lies below
    # Proposition C.1's budget, so both checks are "consistent". Negative control (broken=True, private hook):
    # best-of-N returns the N-th draw instead of the best of N (the pick dropped); success then stays at p < 1 − ρ
    # whatever N, the exact N(ρ) falls outside every interval and the coverage check must read "inconsistent".
    # False-failure rate of the positive control: the coverage check allows the misses a 99% binomial bound
    # permits, so about 1% at most per seed; the seed is fixed.
    monkeypatch.setitem(BON._BREAK, "drop_pick", broken)
    exp = dataclasses.replace(sharpsim_experiments.get("bon_vs_n"), settings=BON.settings)
    folder = run_experiment(exp, tmp_path, mode="quick", trials=64, progress=False)
    checks = json.loads((folder / "summary.json").read_text())["checks"]
    exact = next(c for c in checks if c["quantity"].startswith("exact N(ρ)"))
    assert exact["verdict"] == ("inconsistent" if broken else "consistent"), exact
    budget = next(c for c in checks if c["quantity"].startswith("N̂(ρ) / (log(1/ρ)/p)"))
    assert budget["verdict"] == ("inconsistent" if broken else "consistent"), budget
