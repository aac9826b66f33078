"""Reward hacking at inference time: expected TRUE reward vs N for best-of-N and its hedged variants.

A tabular prompt with base policy π_ref (Y responses, logits 2·N(0, 1), so many responses are rare), a true
reward r* ∈ [0, 1] and a proxy r̂ that each method maximises (:mod:`sharpsim.inference_time`). Families:

* ``exact_proxy`` (control): r̂ = r*: E[r*(BoN_N)] is nondecreasing in N (so is Best-of-Poisson's);
* ``noisy_proxy``: a reward model fit on n₀ draws from π_ref, r̂ = r* + σ ε_y / √(n₀ π_ref(y)): its error is
  large exactly where π_ref has little data (the coverage story of Huang et al. 2025, arXiv:2503.21878);
* ``self_reward``: r̂ = log π_ref (Eq. 2), r* = correctness; the likeliest response is a wrong shortcut (as in
  bon_lift's ``short_wrong``), correct answers are moderately likely, wrong junk is rare.

Per family and N: E[r*] exactly from the laws of best-of-N, soft best-of-N (τ), Best-of-Poisson (μ = N − 1,
so N draws on average) and Best-of-Majority (α = 1/Y); InferenceTimePessimism (β) by Monte Carlo over the
trials (its finite-N law needs an enumeration too large here) beside its exact N → ∞ value E_{π*_β}[r*].
Proxies are standardised under π_ref, so τ and β are in units of the proxy's spread. The four exact laws are
also sampled (trials, N ≤ N_MC) and held against their exact values.
"""

from __future__ import annotations

import functools
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from sharpsim import inference_time as it
from sharpsim.complexity import standard_error
from sharpsim.runner import Check, Experiment, rows_where

Y, INSTANCE_SEED, N0, SIGMA = 64, 20251, 64, 1.0
TAU, BETA, ALPHA = 0.25, 0.5, 1.0 / Y
N_GRID = {"quick": tuple(2**k for k in range(11)), "full": tuple(2**k for k in range(13))}
N_MC = 256  # largest N at which the exact-law methods are also sampled
DELTA = 1e-3  # family-wise false-failure rate of the Monte Carlo checks (Bonferroni over comparisons)
EXACT_METHODS = ("bon", "soft_bon", "bop", "bom")
# Test hooks that break a mechanism (its check must turn red): control-proxy noise, pessimism → BoN, soft-BoN τ.
_CONTROL_NOISE, _PESSIMISM_AS_BON, _SOFT_SAMPLER_TAU_FACTOR = 0.0, False, 1.0


def settings(mode: str) -> list:
    return [dict(family=f) for f in ("exact_proxy", "noisy_proxy", "self_reward")]


def instance(family: str):
    """(π_ref probabilities, r*, standardised r̂), deterministic in INSTANCE_SEED (shared by the families)."""
    rng = np.random.default_rng(INSTANCE_SEED)
    if family == "self_reward":
        k = 8  # shortcut (wrong, mass 0.2), k correct answers (0.45 in all), Y − 1 − k rare wrong ones (0.35)
        p = np.r_[0.2, 0.45 / k * rng.uniform(0.6, 1.4, k), 0.35 * rng.dirichlet(np.ones(Y - 1 - k))]
        p, r_true = p / p.sum(), np.r_[0.0, np.ones(k), np.zeros(Y - 1 - k)]
        proxy = np.log(p)
    else:
        p = np.exp(2.0 * rng.normal(size=Y))
        p, r_true, eps = p / p.sum(), rng.uniform(size=Y), rng.normal(size=Y)
        proxy = r_true + (SIGMA if family == "noisy_proxy" else _CONTROL_NOISE) * eps / np.sqrt(N0 * p)
    centred = proxy - p @ proxy
    return p, r_true, centred / math.sqrt(p @ centred**2)


def _running_first_argmax(v):
    """Position of the first maximum of v[:i+1] for every i (an associative scan)."""
    def pick(a, b):
        take_b = b[0] > a[0]
        return jnp.where(take_b, b[0], a[0]), jnp.where(take_b, b[1], a[1])

    return jax.lax.associative_scan(pick, (v, jnp.arange(v.shape[0])))[1]


@functools.lru_cache(maxsize=None)
def _mc_fn(Ns: tuple, as_bon: bool, tau_factor: float):
    """Responses selected by every method at every N for each trial key, from one set of max(Ns) draws: best-of-n
    is the running first argmax (exact in law, :func:`sharpsim.inference_time._select_bon`), soft best-of-N and
    Best-of-Majority read the counts of the first n draws, pessimism shares one uniform per position over N.
    Returns a jitted function of (keys, log π_ref, r̂, envelope) → [trials, G, methods] response indices."""
    n_max, ns, G = max(Ns), jnp.asarray(Ns), len(Ns)
    pos = jnp.arange(n_max)
    block = jnp.searchsorted(ns, pos, side="right")  # position i counts for every n in the grid with i < n

    def one(key, lp, rh, envelope):
        kd, ku, kp, kg = jax.random.split(key, 4)
        d = it._draws(kd, lp, n_max)
        u = jax.random.uniform(ku, (n_max,))
        counts = jnp.cumsum(jnp.zeros((G, Y), jnp.float32).at[block, d].add(1.0), axis=0)  # [G, Y]
        best = _running_first_argmax(rh[d])
        n_bop = jnp.minimum(1 + jax.random.poisson(kp, ns - 1.0), n_max)

        def at(n, c, m, k):
            k2, k4 = jax.random.split(k)
            soft_logits = jnp.where(c > 0, jnp.log(c) + rh / (TAU * tau_factor), -jnp.inf)
            itp = best[n - 1] if as_bon else it._select_pessimism(u, d, pos < n, c, rh, BETA, envelope)
            return jnp.stack([d[best[n - 1]], jax.random.categorical(k2, soft_logits), d[best[m - 1]],
                              it._select_bom(k4, d[0], c, n, rh, ALPHA), d[itp]])

        return jax.vmap(at)(ns, counts, n_bop, jax.random.split(kg, G))

    return jax.jit(jax.vmap(one, in_axes=(0, None, None, None)))  # one compile for every family


def run_setting(keys, setting: dict, mode: str) -> list:
    fam = setting["family"]
    p, r_true, r_hat = instance(fam)
    lp, Ns = np.log(p), N_GRID[mode]
    laws = {"bon": it.bon_law_grid(lp, r_hat, Ns), "soft_bon": it.soft_bon_law_grid(lp, r_hat, Ns, TAU),
            "bop": [it.bop_law(lp, r_hat, n - 1.0) for n in Ns], "bom": [it.bom_law(lp, r_hat, n, ALPHA) for n in Ns]}
    limit, _ = it.chi2_optimum(lp, r_hat, BETA)
    base = dict(trial=0, family=fam, base_value=float(p @ r_true), pessimism_limit=float(limit @ r_true))
    rows = [dict(base, queries=float(n), N=n, method=m, metric="true_reward_exact", value=float(laws[m][i] @ r_true),
                 proxy_value=float(laws[m][i] @ r_hat), se=0.0, n=0) for m in EXACT_METHODS for i, n in enumerate(Ns)]
    sel = np.asarray(_mc_fn(tuple(Ns), _PESSIMISM_AS_BON, _SOFT_SAMPLER_TAU_FACTOR)(keys, jnp.log(jnp.asarray(p, jnp.float32)), jnp.asarray(r_hat, jnp.float32),
                                       jnp.float32(it.pessimism_envelope(lp, r_hat, BETA))))
    vals = r_true[sel]  # [trials, G, methods]
    T = vals.shape[0]
    for j, m in enumerate(EXACT_METHODS + ("pessimism",)):
        for i, n in enumerate(Ns):
            if m != "pessimism" and n > N_MC:
                continue
            v = vals[:, i, j]
            rows.append(dict(base, queries=float(n), N=n, method=m, metric="true_reward_mc", value=float(v.mean()),
                             proxy_value=float(r_hat[sel[:, i, j]].mean()), se=float(standard_error(v)), n=T))
    return rows


def _curve(rows, fam, method, metric):
    sub = sorted(rows_where(rows, family=fam, method=method, metric=metric), key=lambda r: r["N"])
    return np.array([r["N"] for r in sub]), np.array([r["value"] for r in sub]), np.array([r["se"] for r in sub])


def analyze(rows: list, mode: str) -> dict:
    fams = [s["family"] for s in settings(mode)]
    out: dict = {"families": {}}
    for fam in fams:
        r0 = rows_where(rows, family=fam)[0]
        entry = dict(base_value=r0["base_value"], pessimism_limit=r0["pessimism_limit"])
        for m in EXACT_METHODS:
            N, v, _ = _curve(rows, fam, m, "true_reward_exact")
            entry[m] = dict(N=N.tolist(), true_reward=v.tolist(), peak_N=int(N[np.argmax(v)]), at_max_N=float(v[-1]))
        N, v, se = _curve(rows, fam, "pessimism", "true_reward_mc")
        entry["pessimism"] = dict(N=N.tolist(), true_reward=v.tolist(), se=se.tolist(), at_max_N=float(v[-1]))
        out["families"][fam] = entry
    checks = []
    # 1. Control: selecting by r* itself never hurts (exact values; tolerance = float64 rounding).
    c = out["families"]["exact_proxy"]
    drops = {m: float(np.max(np.maximum.accumulate(c[m]["true_reward"]) - c[m]["true_reward"])) for m in ("bon", "bop")}
    checks.append(Check("control r̂ = r*: E[r*(BoN_N)] and E[r*(BoP)] nondecreasing in N (largest drop, exact)", 0.0,
                        max(drops.values()), 0.0, 1e-12, "consistent" if max(drops.values()) <= 1e-12 else "inconsistent",
                        f"largest drop below the running maximum over N = 1..{N_GRID[mode][-1]}: {drops}").as_dict())
    # 2. Best-of-N reward-hacks at large N under a proxy that is wrong where π_ref is small.
    hack = {f: (out["families"][f]["bon"]["peak_N"], max(out["families"][f]["bon"]["true_reward"])
                - out["families"][f]["bon"]["at_max_N"]) for f in ("noisy_proxy", "self_reward")}
    worst = min(d for _, d in hack.values())
    checks.append(Check("best-of-N degrades at large N under the misspecified proxies: max_N E[r*] − E[r*] at N_max",
                        0.0, worst, 1e-3, math.inf, "consistent" if worst > 1e-3 else "inconclusive",
                        f"exact values; (peak N, drop) per family: {hack}. Huang et al. 2025 prove best-of-N can "
                        "over-optimise an imperfect reward at large N; no drop here would be 'inconclusive'.").as_dict())
    # 3. Pessimism is scaling-monotonic: no drop from its best N to N_max beyond Monte Carlo noise.
    n_cmp = sum(len(out["families"][f]["pessimism"]["N"]) for f in fams)
    z = scipy.stats.norm.isf(DELTA / (2 * n_cmp))
    bad, gaps = [], {}
    for f in fams:
        e = out["families"][f]["pessimism"]
        v, se = np.array(e["true_reward"]), np.array(e["se"])
        gap = (v - v[-1]) / np.sqrt(se**2 + se[-1] ** 2 + 1e-30)
        j = int(np.argmax(gap))
        gaps[f] = (int(e["N"][j]), round(float(v[j] - v[-1]), 4), round(float(z * math.hypot(se[j], se[-1])), 4))
        (bad if np.max(gap) > z else []).append(f)
    wf = max(gaps, key=lambda f: gaps[f][1] - gaps[f][2])  # the family nearest its allowance
    checks.append(Check("InferenceTimePessimism does not degrade with N: E[r*] at its most significant N − at N_max",
                        0.0, gaps[wf][1], -math.inf, gaps[wf][2], "inconsistent" if bad else "consistent",
                        f"Monte Carlo, {rows_where(rows, method='pessimism')[0]['n']} trials; drop judged by z > {z:.2f} "
                        f"(Bonferroni over {n_cmp} comparisons, δ = {DELTA}); (N, drop, allowed drop) per family: {gaps}; "
                        f"failing: {bad or 'none'}.").as_dict())
    # 4. The samplers reproduce their exact laws (Monte Carlo mean of r* vs exact E[r*]).
    mc = [r for r in rows if r["metric"] == "true_reward_mc" and r["method"] in EXACT_METHODS]
    z4 = scipy.stats.norm.isf(DELTA / (2 * len(mc)))
    ex = {(r["family"], r["method"], r["N"]): r["value"] for r in rows if r["metric"] == "true_reward_exact"}
    dev = [(abs(r["value"] - ex[(r["family"], r["method"], r["N"])]) / max(r["se"], 1.0 / r["n"]), r) for r in mc]
    worst_z, wr = max(dev, key=lambda t: t[0])
    fails = [(r["family"], r["method"], r["N"]) for d, r in dev if d > z4]
    checks.append(Check("samplers match their exact laws: |MC mean r* − exact E[r*]| / se", 0.0, worst_z, 0.0, z4,
                        "inconsistent" if fails else "consistent",
                        f"{len(mc)} comparisons (N ≤ {N_MC}), Bonferroni δ = {DELTA}; worst at {wr['family']}, {wr['method']}, "
                        f"N = {wr['N']}; failing: {fails or 'none'}.").as_dict())
    # 5. Finding: who is best at the largest N under the misspecified proxies.
    nmax, rank = N_GRID[mode][-1], {}
    for f in ("noisy_proxy", "self_reward"):
        e = out["families"][f]
        rank[f] = sorted(((m, round(e[m]["at_max_N"], 3)) for m in EXACT_METHODS + ("pessimism",)), key=lambda t: -t[1])
    beat = [f for f in rank if out["families"][f]["pessimism"]["at_max_N"] > out["families"][f]["bon"]["at_max_N"]]
    checks.append(Check(f"E[r*] at N = {nmax}: pessimism vs best-of-N", out["families"]["noisy_proxy"]["bon"]["at_max_N"],
                        out["families"]["noisy_proxy"]["pessimism"]["at_max_N"], -math.inf, math.inf,
                        f"finding: pessimism beats best-of-N at N = {nmax} in {len(beat)} of {len(rank)} hacked families",
                        f"methods ranked by E[r*] at N = {nmax} per family (pessimism by Monte Carlo): {rank}; "
                        f"π_ref baseline and pessimism's N → ∞ value: "
                        f"{ {f: (round(out['families'][f]['base_value'], 3), round(out['families'][f]['pessimism_limit'], 3)) for f in rank} }.").as_dict())
    out["checks"] = checks
    return out


def plot(rows: list, summary: dict, out_dir) -> list:
    from sharpsim.plotting import finish_figure, new_figure

    fams = list(summary["families"])
    fig, axes = new_figure(len(fams))
    labels = dict(bon="best-of-N", soft_bon=f"soft BoN τ={TAU}", bop="Best-of-Poisson", bom=f"Best-of-Majority α=1/{Y}")
    for ax, f in zip(axes, fams):
        e = summary["families"][f]
        for i, m in enumerate(EXACT_METHODS):
            ax.plot(e[m]["N"], e[m]["true_reward"], ("-", "-", "--", "-.")[i], color=f"C{i}", lw=(2.4, 1.2, 1.2, 1.2)[i],
                    label=f"{labels[m]} (exact)")
            ax.plot(*_curve(rows, f, m, "true_reward_mc")[:2], "o", color=f"C{i}", ms=2.5)
        p = e["pessimism"]
        ax.errorbar(p["N"], p["true_reward"], yerr=1.96 * np.array(p["se"]), fmt="s", color="C4", ms=3,
                    label=f"pessimism β={BETA} (MC, 95%)")
        ax.axhline(e["pessimism_limit"], color="C4", ls="--", lw=0.8, label="pessimism N→∞ (exact π*_β)")
        ax.axhline(e["base_value"], color="gray", ls=":", lw=0.8, label="π_ref (N = 1)")
        ax.set(xscale="log", xlabel="N (draws per prompt; BoP: mean)", ylabel="E[r*(selected response)]")
        ax.set_title(f.replace("_", " "), fontsize=10)
    return finish_figure(fig, axes, pathlib.Path(out_dir) / "reward_hacking", legend_axes=axes[:1], legend_fontsize=6)


EXPERIMENT = Experiment(
    name="reward_hacking",
    title="Reward hacking at inference time: best-of-N vs soft BoN, Best-of-Poisson, Best-of-Majority, pessimism",
    claim=("Under a proxy reward that is wrong where π_ref has little mass (a noisy reward model, or the self-reward "
           "log π_base when the likeliest answer is wrong), best-of-N's true reward rises then falls with N "
           "(reward hacking), while χ²-pessimism (InferenceTimePessimism) does not degrade; with the true reward as "
           "proxy, best-of-N never degrades."),
    paper_refs=("Eq. (2)", "Eq. (3)", "Proposition C.1", "Huang et al. 2025 (Is Best-of-N the Best of Them?)",
                "Verdun et al. 2025 (soft BoN)", "Khalaf et al. 2025 (Best-of-Poisson)", "Di et al. 2025 (Best-of-Majority)"),
    instance=f"one prompt, Y = {Y}, π_ref ∝ exp(2·N(0,1)); r* ~ U(0,1) or correctness; proxies per family (docstring)",
    sweep="N (draws per prompt) per proxy family",
    algorithms=("best-of-N", "soft best-of-N", "Best-of-Poisson", "Best-of-Majority", "InferenceTimePessimism"),
    bounds=(),
    predicted="control nondecreasing; best-of-N drops at large N under the misspecified proxies; pessimism does not",
    how_to_read=("One panel per proxy family: expected true reward of the selected response against N (log scale). "
                 "Lines: exact laws (dots: Monte Carlo of the same samplers); squares: InferenceTimePessimism by Monte "
                 "Carlo with 95% intervals, dashed: its N → ∞ limit π*_β; dotted: π_ref. Reward hacking is a curve "
                 "that rises then falls."),
    settings=settings,
    run_setting=run_setting,
    analyze=analyze,
    plot=plot,
    trials={"quick": 2048, "full": 8192},
)
