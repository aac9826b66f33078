"""Remark 4.1: SFT-sharpening needs realizability — over the Proposition E.2 class it never sharpens.

Theorem 4.1 assumes π^BoN_N ∈ Π (Assumption 4.1); Remark 4.1 points to App. E for a class where this fails.
Proposition E.2 (theory.md §4): V = [n], H = d = 2, φ_1(1) = φ_1(2), π_base = π_{θ*} with θ*_h = B e_1,
B = log n. Its unique sequence argmax (2, 1) has π_base(2, 1) = Ω(1), yet every member of the class has
π_θ(2, 1) ≤ π_θ(2) ≤ 1/2 for any norm bound B′, because tokens 1 and 2 share the first-layer feature.
So the MLE of SFT-sharpening, whatever n and N, returns π̂ with π̂(2, 1) ≤ 1/2: never (ε, δ)-sharpened for
δ < 1/2. The prediction is exact: the class's supremum is :func:`sharpsim.ar_instances.nonclosure_class_sup`.

Design. One prompt; the n² sequences form the response space (the oracle samples π_base's exact table). The
class is a finite net of the E.2 class at norm bound B′ (θ_1 = (t/2, −t/2), θ_2 = (u/2, −u/2) with t, u on a
grid of [−√2B′, √2B′]: every member is a genuine π_θ with ‖θ_h‖ ≤ B′, tabulated by the library's own
LinearSoftmaxPolicy), fitted by exact MLE (Lemma J.4's net is how the paper handles infinite classes). δ = 1/4:
success means π̂(2, 1) > 3/4 (with one prompt, sharpness error ≤ ε means exactly that). An (n, N) grid spanning
three decades of budget from one draw per trial, at B′ ∈ {1, 2, 4}·log n.

Control (realizability restored): the same draws fitted over the tabular class of sequences, which contains
π^BoN_N for every N; SFT-sharpening must then sharpen within the grid (m̂(ρ) finite).
"""

from __future__ import annotations

import functools
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from sharpsim import rewards
from sharpsim.algorithms import map_trials, sft_sharpening_sweep
from sharpsim.ar_instances import nonclosure_class_sup, nonclosure_instance
from sharpsim.classes import FiniteClass, TabularClass
from sharpsim.complexity import first_stable_index, geometric_lattice as lattice, proportion_interval
from sharpsim.metrics import SharpnessEvaluation
from sharpsim.oracle import SampleEvaluateOracle
from sharpsim.policies import TabularPolicy
from sharpsim.runner import Check, Experiment, group_rows

from sharpsim_experiments import _scaling as S

RHO = 0.1
DELTA = 0.25
EPSILON = 0.5  # one prompt: sharpness error ∈ {0, 1}, so any ε < 1 means "π̂(2, 1) > 1 − δ"
N_TOKENS = 16
NET = 17  # grid points per coordinate of the net (t, u)
REWARD = rewards.logprob_reward  # private hook: the tests swap in a reward that ignores the best-of-N pick
FLOAT_SLACK = 1e-5
_SCALES = {"quick": (1.0, 2.0, 4.0), "full": (0.5, 1.0, 2.0, 4.0, 8.0)}
TARGET = N_TOKENS * 1 + 0  # row-major index of code ids (1, 0) = the paper's (2, 1)


def settings(mode: str) -> list:
    B = math.log(N_TOKENS)
    return [{"n_tokens": N_TOKENS, "norm_bound": s * B, "B_base": B, "delta": DELTA,
             "closed_form_sup": nonclosure_class_sup(N_TOKENS, s * B)} for s in _SCALES[mode]]


def grids(mode: str) -> tuple:
    return tuple(lattice(1, 512 if mode == "quick" else 4096, 2)), tuple(lattice(1, 64, 2))


@functools.lru_cache(maxsize=None)
def _base_table(n: int) -> np.ndarray:
    return np.asarray(nonclosure_instance(n).to_tabular().log_probs, np.float64)  # [1, n²]


def net_log_probs(n: int, norm_bound: float, points: int = NET) -> np.ndarray:
    """A finite net of the Prop. E.2 class at norm bound B′, tabulated: ``[1, points², n²]`` log-probs."""
    base = nonclosure_instance(n)
    r = math.sqrt(2.0) * norm_bound
    t = np.linspace(-r, r, points)
    tt, uu = np.meshgrid(t, t, indexing="ij")
    thetas = np.stack([np.stack([tt / 2, -tt / 2], -1), np.stack([uu / 2, -uu / 2], -1)], -2).reshape(-1, 2, 2)
    table = jax.jit(jax.vmap(lambda th: base.with_theta(th).to_tabular().log_probs[0]))(
        jnp.asarray(thetas, jnp.result_type(float)))
    return np.asarray(table)[None]


def realizability_trial(key, base_lp, net_lp, n_grid: tuple, N_grid: tuple, reward):
    """One trial: the same draws and picks fitted over the E.2 net and over the tabular class (same key)."""
    pi = TabularPolicy(log_probs=base_lp)
    mu = jnp.ones((1,), base_lp.dtype)
    oracle, evaluate = SampleEvaluateOracle(pi, mu), SharpnessEvaluation.of(pi, mu, DELTA)
    net = FiniteClass(log_probs=net_lp, valid=jnp.ones(net_lp.shape[:2], bool), product=False)
    s_net = sft_sharpening_sweep(key, oracle, net, n_grid, N_grid, evaluate=evaluate, reward=reward)
    s_tab = sft_sharpening_sweep(key, oracle, TabularClass(1, base_lp.shape[-1]), n_grid, N_grid, evaluate=evaluate,
                                 reward=reward)
    return (s_net.target_mass, *first_stable_index(s_tab.sharpness_error <= EPSILON), s_tab.target_mass)


def run_setting(keys, setting: dict, mode: str) -> list:
    n_grid, N_grid = grids(mode)
    dtype = jnp.result_type(float)
    n = int(setting["n_tokens"])
    net = net_log_probs(n, float(setting["norm_bound"]))
    mass_net, first, viol, mass_tab = (np.asarray(a) for a in map_trials(
        realizability_trial, keys, jnp.asarray(_base_table(n), dtype), jnp.asarray(net, dtype), n_grid, N_grid,
        REWARD))
    rows = S.stable_rows(first, viol, n_grid, N_grid, arm="tabular")
    for t in range(mass_net.shape[0]):
        rows += [{"trial": t, "queries": int(nn) * int(N_grid[-1]), "metric": "net_mass_at_Nmax", "value": float(v),
                  "n": int(nn), "N": int(N_grid[-1]), "arm": "e2"} for nn, v in zip(n_grid, mass_net[t, :, -1])]
        rows += [{"trial": t, "queries": int(n_grid[-1]) * int(N_grid[-1]), "metric": m, "value": float(v), "arm": a,
                  "n": int(n_grid[-1]), "N": int(N_grid[-1])}
                 for m, v, a in (("net_max_mass", mass_net[t].max(), "e2"),
                                 ("net_sharpened_points", (mass_net[t] > 1 - DELTA).sum(), "e2"),
                                 ("tabular_mass_at_max", mass_tab[t, -1, -1], "tabular"))]
    best_net = float(np.exp(net[0, :, TARGET]).max())
    rows.append({"trial": 0, "queries": 0, "metric": "best_in_net", "value": best_net, "arm": "exact"})
    rows.append({"trial": 0, "queries": 0, "metric": "base_mass", "value": float(np.exp(_base_table(n)[0, TARGET])),
                 "arm": "exact"})
    return rows


def analyze(rows: list, mode: str) -> dict:
    n_grid, N_grid = grids(mode)
    table, checks = [], []
    for s, rs in group_rows(rows).items():
        values_of = lambda m: [r["value"] for r in rs if r["metric"] == m]  # noqa: E731
        at_max = np.array([r["value"] for r in rs if r["metric"] == "net_mass_at_Nmax" and r["n"] == n_grid[-1]])
        tab = S.measure([r for r in rs if r.get("arm") == "tabular"], n_grid, N_grid, RHO, fields=("norm_bound",))[0]
        table.append({"setting": s, "norm_bound": rs[0]["norm_bound"], "closed_form_sup": rs[0]["closed_form_sup"],
                      "best_in_net": values_of("best_in_net")[0], "base_mass": values_of("base_mass")[0],
                      "net_max_mass": float(max(values_of("net_max_mass"))), "net_sharpened": int(sum(values_of("net_sharpened_points"))),
                      "net_mass_at_max_budget": float(at_max.mean()), "net_mass_at_max_budget_sd": float(at_max.std()),
                      "tabular_mass_at_max_budget": float(np.mean(values_of("tabular_mass_at_max"))),
                      "tabular_m_hat": tab["m_hat"], "tabular_lower": tab["lower"], "tabular_upper": tab["upper"],
                      "trials": int(at_max.size),
                      "curve": [float(np.mean([r["value"] for r in rs if r["metric"] == "net_mass_at_Nmax" and r["n"] == nn]))
                                for nn in n_grid]})
    K = sum(t["trials"] for t in table)
    fails = sum(t["net_sharpened"] for t in table)
    lo, hi = proportion_interval(min(fails, K), K, method="clopper-pearson")
    budgets = (n_grid[0] * N_grid[0], n_grid[-1] * N_grid[-1])
    checks.append(Check("E.2 class: P[SFT output sharpened at δ = 1/4] at any budget (Remark 4.1: 0)", 0.0,
                        fails / K, float(lo), float(hi), "consistent" if fails == 0 else "inconsistent",
                        f"{fails} sharpened (trial, n, N) points out of {K} trials × {len(n_grid)}×{len(N_grid)} grid points "
                        f"(budgets {budgets[0]} … {budgets[1]}), B′ ∈ {[round(t['norm_bound'], 2) for t in table]}; "
                        "95% Clopper–Pearson interval for the per-trial rate at the largest budget").as_dict())
    worst = max(table, key=lambda t: t["net_max_mass"] - t["closed_form_sup"])
    ok = all(t["net_max_mass"] <= t["closed_form_sup"] + FLOAT_SLACK for t in table)
    checks.append(Check("E.2 class: max π̂(2,1) over trials and budgets ≤ the exact class sup (< 1/2)",
                        worst["closed_form_sup"], worst["net_max_mass"], worst["net_max_mass"], worst["net_max_mass"],
                        "consistent" if ok else "inconsistent",
                        "exact: closed-form sup [1/(2+(n−2)e^{−√2B′})]·[1/(1+(n−1)e^{−√2B′})] per B′ "
                        f"{[round(t['closed_form_sup'], 4) for t in table]}; the MLE at the largest budget reaches "
                        f"{[round(t['net_mass_at_max_budget'], 4) for t in table]} (net's best "
                        f"{[round(t['best_in_net'], 4) for t in table]}) while π_base(2,1) = {table[0]['base_mass']:.4f} is "
                        f"the unique argmax").as_dict())
    conv = all(t["net_mass_at_max_budget"] >= t["best_in_net"] - 0.05 for t in table)
    checks.append(Check("E.2 class: the MLE converges to the class's best (the budget is not the obstacle)", 1.0,
                        float(min(t["net_mass_at_max_budget"] / t["best_in_net"] for t in table)),
                        float(min(t["net_mass_at_max_budget"] / t["best_in_net"] for t in table)), 1.0,
                        "consistent" if conv else "inconclusive",
                        "ratio of the mean π̂(2,1) at the largest budget to the net's best member (exact)").as_dict())
    reached = [t for t in table if math.isfinite(t["tabular_m_hat"])]
    checks.append(Check("control (tabular class, realizable): SFT sharpens within the grid (m̂(ρ) finite)", 1.0,
                        len(reached) / len(table), len(reached) / len(table), len(reached) / len(table),
                        "consistent" if len(reached) == len(table) else "inconsistent",
                        f"m̂(ρ = {RHO}) = {[round(t['tabular_m_hat'], 1) for t in table]} with 95% bootstrap intervals "
                        f"{[(round(t['tabular_lower'], 1), round(t['tabular_upper'], 1)) for t in table]}; mean π̂(2,1) at the "
                        f"largest budget {[round(t['tabular_mass_at_max_budget'], 4) for t in table]}").as_dict())
    return {"checks": checks, "rho": RHO, "delta": DELTA, "table": table, "n_grid": list(n_grid), "N_max": N_grid[-1]}


def plot(rows: list, summary: dict, out_dir) -> list:
    from sharpsim.plotting import finish_figure, new_figure

    fig, (ax, ax2) = new_figure(2)
    n = np.asarray(summary["n_grid"], float) * summary["N_max"]
    for i, t in enumerate(summary["table"]):
        ax.plot(n, t["curve"], "o-", ms=3, color=f"C{i}", label=f"E.2 class, B′ = {t['norm_bound']:.2f}: mean π̂(2,1)")
        ax.axhline(t["closed_form_sup"], color=f"C{i}", ls="--", lw=1, label=f"exact class sup (B′ = {t['norm_bound']:.2f})")
    ax.axhline(1 - summary["delta"], color="k", ls=":", label="sharpened: π̂(2,1) > 1 − δ")
    ax.axhline(summary["table"][0]["base_mass"], color="grey", ls="-.", label="π_base(2,1) (unique argmax)")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"budget n·N (N = {summary['N_max']})")
    ax.set_ylabel("π̂(2,1) of the SFT output")
    ax.set_title("Remark 4.1 / Prop. E.2: SFT over the E.2 class never sharpens", fontsize=10)
    for i, t in enumerate(summary["table"]):
        if math.isfinite(t["tabular_m_hat"]):
            ax2.errorbar([t["norm_bound"]], [t["tabular_m_hat"]], yerr=[[t["tabular_m_hat"] - t["tabular_lower"]],
                         [t["tabular_upper"] - t["tabular_m_hat"]]], fmt="s", color=f"C{i}")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("norm bound B′ (the control does not depend on it)")
    ax2.set_ylabel("control: m̂(ρ) over the tabular class (95% CI)")
    ax2.set_title("control: a realizable class sharpens at a finite budget", fontsize=10)
    return finish_figure(fig, (ax, ax2), pathlib.Path(out_dir) / "realizability", grid="both", legend_axes=(ax,),
                         legend_fontsize=6, legend_loc="center right")


EXPERIMENT = Experiment(
    name="realizability",
    title="Remark 4.1: without realizability SFT-sharpening does not sharpen (Prop. E.2 class)",
    claim=("Over the Proposition E.2 linear-softmax class, SFT-sharpening's output never puts more than the class's "
           "supremum (< 1/2) on π_base's unique argmax, whatever the budget and the norm bound, while over a class "
           "that contains π^BoN_N the same draws sharpen at a finite budget."),
    paper_refs=("Remark 4.1", "Assumption 4.1", "Proposition E.2", "Lemma J.4"),
    instance="Prop. E.2 with n = 16 tokens (B = log n), one prompt; a 17×17 net of the class at B′ ∈ {1, 2, 4}·log n",
    sweep="(n, N) grid (budgets 1 … 32768) from one draw per trial; norm bound B′",
    algorithms=("sft_sharpening_sweep",),
    bounds=(),
    predicted="π̂(2,1) ≤ sup_θ π_θ(2,1) < 1/2 at every budget (never sharpened at δ = 1/4); the tabular control sharpens",
    how_to_read=("Left: the SFT output's mass on the argmax (2,1), averaged over trials, against the budget n·N at the "
                 "largest N, for each norm bound B′; the dashed lines are the exact class suprema, the dotted line the "
                 "sharpness threshold 1 − δ. The curves climb to the supremum and stop there, far below the "
                 "threshold and below π_base's own argmax mass' sharpened value. Right: the control, m̂(ρ) over the "
                 "tabular class from the same draws, finite at every B′."),
    settings=settings,
    run_setting=run_setting,
    analyze=analyze,
    plot=plot,
    trials={"quick": 48, "full": 512},
)
