"""SFT-sharpening with approximate maximisers: Theorem 4.1′ (γ > 0) and the Theorem 3.1′ instance at p = 2.

**Part "gamma" (Theorem 4.1′).** With N = N*·log(2/δ) and N* ≍ C_cov,γ/ε, SFT-sharpening outputs π̂ with
P_x[π̂(y*_γ(x)|x) ≤ 1 − δ] ≤ ε: the coverage that matters is the mass of the whole near-maximal set,
C_cov,γ = E_μ[1/π_base(y*_γ(x)|x)] ≤ C_cov. Instance: random tabular policies (X = 4 prompts, uniform μ, Y = 96)
whose top response has mass p = 1/32 (so C_cov = 32 at every setting) and K − 1 further responses in
(0.75p, p]; every other response has < 0.5p. With γ = 1/2 the set y*_γ(x) is exactly the K-group, so
C_cov,γ ≈ 1/(K·0.875p) falls 16× as K goes 1 → 16 while C_cov stays 32
(:func:`sharpsim.instances.near_max_group`). Masses, shares and positions are drawn afresh per trial (the
target's index is random); the class is the full tabular class (exact MLE). Prediction: m̂ ∝ C_cov,γ (slope 1);
the exact finite-size reference is the miss law — a prompt's pick leaves y*_γ with probability (1 − G)^N, G
its group mass, so N ∝ 1/log(1/(1 − G)), whose along-sweep slope (≈ 1.1 here, from the large-G end) is the
one-sided tolerance. Control (mechanism absent): the same runs scored against the exact argmax
(γ = 0), whose coverage C_cov = 32 does not move: m̂ flat in K (slope 0). Both targets come from one draw.

**Part "p2" (Theorem 3.1′ with p = 2).** The hard instance built for p = 2: Δ = 16ε, M = ⌈1 + C ε^{-1/2}⌉
(``bounds.hard_instance_parameters(p=2)``), γ = 1/2, MLE over the best-of-N closure as in ``sft_minimax``. Its
lower bound is m ≳ C log|Π|/(ε^{1+1/p}(1 + log(Cε^{-1/p}))), exponent 1.5 in 1/ε. SFT needs N ≈ 0.35M ∝
ε^{-1/2} responses at ≈ d/Δ ∝ 1/ε prompts, i.e. ε^{-1.5}: minimax here. Theorem 4.1 (p = 1 coverage
C_cov,γ = (1 − Δ) + ΔM/2 → 1) predicts ε^{-2}: if the measured slope sits below its along-sweep slope the
verdict is ``finding: Theorem 4.1 is loose on the p = 2 instance``; a slope above 1.5's band would be the
finding that SFT is not minimax there, one below it ``inconsistent`` (no algorithm beats a lower bound).
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

import bounds
from sharpsim import rewards
from sharpsim.complexity import fit_loglog_slope
from sharpsim.instances import hard_instance_coverage
from sharpsim.plotting import BoundCurve
from sharpsim.runner import Check, Experiment, revise_check

from sharpsim_experiments import _scaling as S
from sharpsim_experiments import _sft_programs as P

RHO = 0.1
REWARD = rewards.logprob_reward  # private hook: the tests swap in a reward that ignores the best-of-N pick
GROUP = {**P.GROUP_SHAPE, "p": 1.0 / 32, "epsilon": 0.1, "delta": 0.5}
_K = {"quick": (1, 2, 4, 8, 16), "full": (1, 2, 3, 4, 6, 8, 12, 16)}
P2 = {"C": 2.0, "d": P.HARD_D, "p": 2}
_EPS = {"quick": (0.04, 0.02, 0.01, 0.005, 0.0025), "full": (0.04, 0.02, 0.01, 0.005, 0.0025, 0.00125, 0.000625)}


def _p2_setting(eps: float) -> dict:
    Delta, M = bounds.hard_instance_parameters(eps, P2["C"], p=P2["p"])
    Delta, M, d = float(Delta), int(M), P2["d"]
    return {"part": "p2", "epsilon": eps, "C": P2["C"], "d": d, "M": M, "Delta": Delta, "p": P2["p"],
            "C_cov": hard_instance_coverage(M, Delta), "C_cov_p2": hard_instance_coverage(M, Delta, p=2),
            "log_class_size": d * math.log(M)}


def settings(mode: str) -> list:
    out = [{"part": "gamma", "K": K, **GROUP} for K in _K[mode]]
    return out + [_p2_setting(e) for e in _EPS[mode]]


def grids(part: str, mode: str) -> tuple:
    return P.group_grids(mode) if part == "gamma" else P.hard_grids(mode)


def run_setting(keys, setting: dict, mode: str) -> list:
    if setting["part"] == "p2":
        return [dict(r, arm="p2") for r in P.run_hard(keys, setting, mode, REWARD, 0.5)]
    n_grid, N_grid = grids("gamma", mode)
    f1, v1, f0, v0, cg, c0 = P.run_group(keys, setting["K"], GROUP["p"], GROUP["epsilon"], GROUP["delta"], mode, REWARD)
    rows = S.stable_rows(f1, v1, n_grid, N_grid, arm="gamma") + S.stable_rows(f0, v0, n_grid, N_grid, arm="exact")
    rows += [{"trial": t, "queries": 0, "metric": "C_cov_gamma_exact", "value": float(a), "arm": "instance"}
             for t, a in enumerate(cg)]
    rows += [{"trial": t, "queries": 0, "metric": "C_cov_exact", "value": float(a), "arm": "instance"}
             for t, a in enumerate(c0)]
    return rows


# ------------------------------------------------------------------------------------------ analysis
def _gamma_points(rows, mode):
    n_grid, N_grid = grids("gamma", mode)
    rs = [r for r in rows if r.get("part") == "gamma"]
    out = {}
    for arm in ("gamma", "exact"):
        pts = S.measure([r for r in rs if r.get("arm") == arm], n_grid, N_grid, RHO, fields=("K", "epsilon", "delta"))
        for p in pts:
            sub = [r for r in rs if r["setting"] == p["setting"]]
            p["C_cov_gamma"] = float(np.mean([r["value"] for r in sub if r["metric"] == "C_cov_gamma_exact"]))
            p["C_cov"] = float(np.mean([r["value"] for r in sub if r["metric"] == "C_cov_exact"]))
        out[arm] = sorted(pts, key=lambda p: -p["C_cov_gamma"])
    return out


def _p2_values(pts):
    return {"C_cov": np.array([p["C_cov_p2"] for p in pts]), "log_class_size": np.array([p["log_class_size"] for p in pts]),
            "epsilon": np.array([p["epsilon"] for p in pts]), "p": 2.0}


def _p2_upper_values(pts):
    return {"C_cov": np.array([p["C_cov"] for p in pts]), "log_class_size": np.array([p["log_class_size"] for p in pts]),
            "epsilon": np.array([p["epsilon"] for p in pts]), "rho": RHO, "delta": 0.5}


def analyze(rows: list, mode: str) -> dict:
    g = _gamma_points(rows, mode)
    checks = []
    xg = [p["C_cov_gamma"] for p in g["gamma"]]
    miss = {}
    if len(xg) >= 2:  # N ∝ 1/log(1/(1 − G)) with G = 1/C_cov,γ: the exact per-draw miss law (1 − G)^N
        G = 1.0 / np.asarray(xg)
        miss["exact miss law 1/log(1/(1−1/C_cov,γ))"] = float(fit_loglog_slope(np.asarray(xg), -1.0 / np.log1p(-G)).slope)
    c1, fit_g = S.slope_check("[gamma] slope of m̂ vs C_cov,γ at γ = 1/2, C_cov fixed (Theorem 4.1′: 1)", 1.0,
                              g["gamma"], xg, miss, note="C_cov,γ: exact per trial, averaged over the trials.")
    c0, fit_0 = S.slope_check("[gamma] control γ = 0 (exact argmax, C_cov = 32 fixed): slope vs C_cov,γ (0)", 0.0,
                              g["exact"], [p["C_cov_gamma"] for p in g["exact"]], {},
                              note="Same draws scored against y*(x) instead of y*_{1/2}(x).")
    checks += [c1, c0]
    n_grid, N_grid = grids("p2", mode)
    p2 = sorted(S.measure([r for r in rows if r.get("part") == "p2"], n_grid, N_grid, RHO,
                          fields=("epsilon", "M", "Delta", "d", "C_cov", "C_cov_p2", "log_class_size")),
                key=lambda p: -p["epsilon"])
    x = [1.0 / p["epsilon"] for p in p2]
    s_low = S.along_sweep_slope(bounds.THM_3_1_PRIME, _p2_values(p2), x)
    s_up = S.along_sweep_slope(bounds.THM_4_1, _p2_upper_values(p2), x)
    c2, fit_p2 = S.slope_check("[p2] slope of m̂ vs 1/ε on the p = 2 instance (Theorem 3.1′ lower bound: 1.5)", 1.5,
                               p2, x, {"thm_3_1_prime along sweep": s_low})
    if fit_p2 is not None and c2["verdict"] == "inconsistent" and fit_p2.lower > max(1.5, s_low):
        c2 = revise_check(c2, verdict="finding: SFT-sharpening is not minimax on the p = 2 instance",
                          note="The interval lies above the lower bound's exponent. " + c2["note"])
    checks.append(c2)
    if fit_p2 is not None:
        loose = fit_p2.upper < s_up
        verdict = ("finding: Theorem 4.1 is loose on the p = 2 instance" if loose
                   else "consistent" if fit_p2.lower <= s_up else "inconsistent")
        checks.append(Check("[p2] Theorem 4.1's along-sweep slope vs the measured one (upper bound)", s_up, fit_p2.slope,
                            fit_p2.lower, fit_p2.upper, verdict,
                            f"Theorem 4.1 with C_cov,γ = (1 − Δ) + ΔM/2 (→ 1 as ε → 0) has along-sweep slope {s_up:.3f} in "
                            f"1/ε; the measured slope {fit_p2.slope:.3f} [{fit_p2.lower:.3f}, {fit_p2.upper:.3f}] "
                            + ("is below it: SFT needs ε^{-1.5}, not ε^{-2}, here." if loose else "reaches it.")).as_dict())
    reached = sum(math.isfinite(p["m_hat"]) for p in g["gamma"] + g["exact"] + p2)
    total = len(g["gamma"]) + len(g["exact"]) + len(p2)
    checks.append(Check("every setting reaches 1 − ρ within the grid (Theorems 4.1/4.1′: a finite budget suffices)", 1.0,
                        reached / total, reached / total, reached / total,
                        "consistent" if reached == total else "inconsistent", f"{reached}/{total} (exact count)").as_dict())
    return {"checks": checks, "rho": RHO, "gamma_points": g["gamma"], "exact_points": g["exact"], "p2_points": p2,
            "bound_slopes": {"thm_3_1_prime": s_low, "thm_4_1": s_up},
            "fits": {"gamma": S.fit_dict(fit_g), "exact": S.fit_dict(fit_0), "p2": S.fit_dict(fit_p2)}}


def plot(rows: list, summary: dict, out_dir) -> list:
    files = []
    gp = [p for p in summary["gamma_points"] if math.isfinite(p["m_hat"])]
    ex = [p for p in summary["exact_points"] if math.isfinite(p["m_hat"])]
    if len(gp) >= 2:
        vals = {"C_cov": np.array([p["C_cov_gamma"] for p in gp]), "log_class_size": 1.0, "epsilon": GROUP["epsilon"],
                "rho": RHO, "delta": GROUP["delta"]}
        extra = [{"x": [p["C_cov_gamma"] for p in ex], "y": [p["m_hat"] for p in ex], "lower": [p["lower"] for p in ex],
                  "upper": [p["upper"] for p in ex], "label": "control: exact argmax (γ = 0, C_cov = 32)"}] if ex else []
        files += S.figure(pathlib.Path(out_dir) / "sft_gamma_cov", gp, [p["C_cov_gamma"] for p in gp],
                          xlabel="C_cov,γ (γ = 1/2; exact, mean over trials)", label="SFT m̂(ρ), target y*_{1/2}",
                          title="Theorem 4.1′: SFT-sharpening pays C_cov,γ, not C_cov",
                          bounds=[BoundCurve(bounds.THM_4_1, vals, label="Thm 4.1′ shape ∝ C_cov,γ (constant fitted)")],
                          fit=summary["fits"]["gamma"], predicted=1.0, extra_series=extra)
    p2 = [p for p in summary["p2_points"] if math.isfinite(p["m_hat"])]
    if len(p2) >= 2:
        x = [1.0 / p["epsilon"] for p in p2]
        curves = [BoundCurve(bounds.THM_3_1_PRIME, _p2_values(p2)), BoundCurve(bounds.THM_4_1, _p2_upper_values(p2))]
        files += S.figure(pathlib.Path(out_dir) / "sft_gamma_p2", p2, x, xlabel="1 / ε",
                          label="SFT m̂(ρ) on the p = 2 instance", title="Theorem 3.1′ instance built for p = 2",
                          bounds=curves, fit=summary["fits"]["p2"], predicted=1.5)
    return files


EXPERIMENT = Experiment(
    name="sft_gamma",
    title="SFT-sharpening with γ > 0 (Theorem 4.1′) and on the p = 2 lower-bound instance (Theorem 3.1′)",
    claim=("SFT-sharpening toward the (1 − γ)-approximate maximisers pays the coverage C_cov,γ of that set "
           "(Theorem 4.1′), and on the Theorem 3.1′ instance built for p = 2 its queries scale like the lower "
           "bound's ε^{-(1+1/p)} = ε^{-1.5}."),
    paper_refs=("Theorem 4.1′ (App. I)", "Definition F.1", "Theorem 3.1′ (App. H)", "theory.md §3, §5, §6"),
    instance=("gamma: random tabular policies (X = 4, Y = 96) with a K-group of near-maximal responses, tabular class; "
              "p2: hard instance with M = ⌈1 + 2ε^{-1/2}⌉, Δ = 16ε, d = 2, best-of-N closure class"),
    sweep="gamma: K = 1 … 16 (C_cov,γ 32 → ≈ 2.3, C_cov fixed at 32); p2: ε = 0.04 … 0.0025",
    algorithms=("sft_sharpening_sweep",),
    bounds=("thm_4_1_prime", "thm_4_1", "thm_3_1_prime"),
    predicted="m̂ ∝ C_cov,γ (slope 1) with the γ = 0 control flat; m̂ ∝ ε^{-1.5} on the p = 2 instance",
    how_to_read=("sft_gamma_cov: m̂(ρ) toward y*_{1/2} against the exact C_cov,γ (band, fit, Theorem 4.1′'s shape dashed) "
                 "and the same draws scored against the exact argmax (squares), flat because C_cov does not move. "
                 "sft_gamma_p2: m̂ against 1/ε on the p = 2 instance with the Theorem 3.1′ lower bound (dash-dot, "
                 "exponent 1.5) and Theorem 4.1 (dashed, ≈ 2): the data follow the lower bound."),
    settings=settings,
    run_setting=run_setting,
    analyze=analyze,
    plot=plot,
    trials={"quick": 96, "full": 1000},
)
