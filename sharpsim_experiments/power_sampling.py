"""Power sampling against the exact power law π^α, and against best-of-N at equal model calls.

The paper's KL-regularised optimum π*_β ∝ π_base^{1+1/β} (Eq. 3) is the power distribution π^α at
α = 1 + 1/β; Karan & Du (2025, "Reasoning with Sampling") sample it at inference time by Metropolis–Hastings
over suffixes. On random Markov policies (V = 3, small H, so π^α is exact by :func:`sharpsim.power_policy`'s
dynamic programme) this experiment measures, per (H, α):

* total variation between the exact π^α and the empirical law of ``trials`` independent MH chains after
  s = 0, 1, 2, 4, … steps (:func:`sharpsim.power_mh_chain`), and of one particle from ``trials`` independent
  SMC runs with N particles (:func:`sharpsim.power_smc_sample`), against the mean model calls spent;
* the exact TV of per-token temperature 1/α sampling (the MH chain at s = 0), which is not π^α;
* the probability of returning y* = argmax π (= argmax π^α) against the exact best-of-N law at the same
  model calls, P[BoN_N = y*] = 1 − (1 − π(y*))^N with N = calls / H (Proposition C.1's identity).
"""

from __future__ import annotations

import math
import pathlib

import jax
import numpy as np

from sharpsim.ar_instances import random_markov_policy
from sharpsim.complexity import proportion_interval, tv_concentration_bound
from sharpsim.policies import MarkovPolicy, sequences_to_index
from sharpsim.power import power_mh_chain, power_policy, power_smc_sample
from sharpsim.runner import Check, Experiment, rows_where

#: MH steps at which the chain's law is read off (one trajectory per chain).
MH_CHECKPOINTS = (0, 1, 2, 4, 8, 16, 32)
#: SMC particle counts (each a separate compile; --quick uses the first and last).
SMC_PARTICLES = (2, 8, 32)
#: False-failure rate of the concentration term of the TV tolerance.
DELTA = 1e-4
#: Allowed sampler bias at the largest budget (MH mixing error, SMC's O(1/N) single-particle bias).
BIAS = 0.02
VOCAB, SCALE = 3, 1.0


def settings(mode: str) -> list:
    if mode == "quick":
        grid = [(4, 2.0), (4, 4.0)]  # one H: one compile of each sampler (H varies in the full run)
    else:
        grid = [(h, a) for h in (3, 4, 6) for a in (1.5, 2.0, 4.0, 8.0)]
    return [dict(horizon=h, alpha=a) for h, a in grid]


def run_setting(keys, setting: dict, mode: str) -> list:
    H, alpha = int(setting["horizon"]), float(setting["alpha"])
    k_pol, k_mh, k_smc = jax.random.split(keys[0], 3)
    n = keys.shape[0]
    pi = random_markov_policy(k_pol, num_prompts=1, vocab_size=VOCAB, horizon=H, scale=SCALE)
    base = np.asarray(pi.to_tabular().probs[0], np.float64)
    exact = np.asarray(power_policy(pi, alpha).to_tabular().probs[0], np.float64)
    exact /= exact.sum()
    temp = MarkovPolicy(log_probs=jax.nn.log_softmax(alpha * pi.log_probs, axis=-1))  # per-token T = 1/α
    temp_law = np.asarray(temp.to_tabular().probs[0], np.float64)
    star = int(np.argmax(base))
    common = dict(tol=tv_concentration_bound(exact, n, DELTA), power_star=float(exact[star]), base_star=float(base[star]),
                  temp_tv=0.5 * float(np.abs(temp_law - exact).sum()), temp_star=float(temp_law[star]))

    def law_row(method, budget, samples, calls):
        idx = np.asarray(sequences_to_index(samples, VOCAB))
        emp = np.bincount(idx, minlength=VOCAB**H) / len(idx)
        mean_calls = float(np.mean(np.asarray(calls)))
        bon_n = max(1, int(round(mean_calls / H)))
        return dict(trial=0, queries=mean_calls, metric=method, budget=budget,
                    value=0.5 * float(np.abs(emp - exact).sum()), hits_star=int(np.sum(idx == star)), n=len(idx),
                    bon_star=float(-np.expm1(bon_n * np.log1p(-base[star]))), bon_n=bon_n, **common)

    chain = jax.vmap(lambda k: power_mh_chain(k, pi, 0, alpha, MH_CHECKPOINTS[-1]))(jax.random.split(k_mh, n))
    rows = [law_row("tv_mh", s, chain.samples[:, s], chain.model_calls[:, s]) for s in MH_CHECKPOINTS]
    for N in (SMC_PARTICLES if mode != "quick" else SMC_PARTICLES[::2]):
        out = jax.vmap(lambda k: power_smc_sample(k, pi, 0, alpha, N))(jax.random.split(jax.random.fold_in(k_smc, N), n))
        rows.append(law_row("tv_smc", N, out.samples[:, 0], out.model_calls))
    return rows


def analyze(rows: list, mode: str) -> dict:
    out: dict = {"settings": []}
    checks = []
    worst = {"tv_mh": (0.0, None), "tv_smc": (0.0, None)}
    mh_fail, smc_fail, no_gain, bon_better, power_better = [], [], [], [], []
    for h in sorted({r["horizon"] for r in rows}):
        for a in sorted({r["alpha"] for r in rows if r["horizon"] == h}):
            sub = rows_where(rows, horizon=h, alpha=a)
            mh = sorted(rows_where(sub, metric="tv_mh"), key=lambda r: r["budget"])
            smc = sorted(rows_where(sub, metric="tv_smc"), key=lambda r: r["budget"])
            last_mh, last_smc = mh[-1], smc[-1]
            tol = last_mh["tol"] + BIAS
            lo, hi = proportion_interval(last_mh["hits_star"], last_mh["n"], method="wilson")
            entry = dict(horizon=h, alpha=a, tolerance=tol, temp_tv=last_mh["temp_tv"],
                         mh=[dict(steps=r["budget"], calls=r["queries"], tv=r["value"],
                                  p_star=r["hits_star"] / r["n"], bon_star=r["bon_star"]) for r in mh],
                         smc=[dict(particles=r["budget"], calls=r["queries"], tv=r["value"],
                                   p_star=r["hits_star"] / r["n"], bon_star=r["bon_star"]) for r in smc],
                         power_star=last_mh["power_star"], base_star=last_mh["base_star"],
                         mh_star_interval=[float(lo), float(hi)])
            out["settings"].append(entry)
            for key, last in (("tv_mh", last_mh), ("tv_smc", last_smc)):  # keep the setting nearest its tolerance
                if worst[key][1] is None or last["value"] - tol > worst[key][0] - worst[key][1]["tol"]:
                    worst[key] = (last["value"], dict(last, tol=tol))
            (mh_fail if last_mh["value"] > tol else []).append((h, a, last_mh["value"], tol))
            (smc_fail if last_smc["value"] > tol else []).append((h, a, last_smc["value"], tol))
            if not last_mh["value"] < mh[0]["value"]:
                no_gain.append((h, a))
            if last_mh["bon_star"] > hi:
                bon_better.append((h, a, last_mh["bon_star"], float(lo), float(hi), last_mh["queries"]))
            elif last_mh["bon_star"] < lo:
                power_better.append((h, a, last_mh["bon_star"], float(lo), float(hi), last_mh["queries"]))
    n = rows[0]["n"]
    for key, fails, label, budget in (("tv_mh", mh_fail, "MH", f"{MH_CHECKPOINTS[-1]} steps"),
                                       ("tv_smc", smc_fail, "SMC", f"N = {SMC_PARTICLES[-1]} particles")):
        val, r = worst[key]
        checks.append(Check(
            f"TV({label} law, exact π^α) ≤ tolerance at {budget}", 0.0, val, 0.0, r["tol"],
            "consistent" if not fails else "inconsistent",
            f"largest TV over the (H, α) grid; tolerance = ½Σ√(p(1−p)/n) + √(ln(1/δ)/2n) + bias {BIAS} with "
            f"n = {n} independent {'chains' if label == 'MH' else 'runs (one particle each)'}, δ = {DELTA}; "
            f"failing settings (H, α, TV, tol): {fails or 'none'}.").as_dict())
    # MH must beat its own starting point, the temperature-1/α law, where that law is measurably off π^α:
    # TV(MH) + noise tolerance < exact TV(temperature, π^α), on every setting with TV(temperature) > 2·tol.
    clear = [s for s in out["settings"] if s["temp_tv"] > 2 * (s["tolerance"] - BIAS)]
    beaten = [s for s in clear if s["mh"][-1]["tv"] + (s["tolerance"] - BIAS) < s["temp_tv"]]
    detail = [(s["horizon"], s["alpha"], round(s["temp_tv"], 4), round(s["mh"][-1]["tv"], 4)) for s in clear]
    checks.append(Check(
        "MH moves beyond per-token temperature 1/α: TV(MH, π^α) + noise < TV(temperature 1/α, π^α)", 0.0,
        max((s["mh"][-1]["tv"] for s in clear), default=math.nan), 0.0,
        min((s["temp_tv"] for s in clear), default=math.nan),
        "inconclusive" if not clear else ("consistent" if len(beaten) == len(clear) else "inconsistent"),
        f"the chain starts from a temperature-1/α sample, whose exact TV to π^α is given (Karan & Du 2025: low "
        f"temperature is not π^α); settings where it exceeds twice the noise tolerance (H, α, TV(temperature), "
        f"TV(MH at {MH_CHECKPOINTS[-1]} steps)): {detail or 'none'}.").as_dict())
    s0 = out["settings"][-1]
    note = (f"at the MH chain's largest budget ({MH_CHECKPOINTS[-1]} steps; N = calls/H draws), exact best-of-N under r_self = log π puts "
            f"1 − (1 − π(y*))^N on y*; MH's empirical P[y*] has a 95% Wilson interval. BoN higher in "
            f"{len(bon_better)} of {len(out['settings'])} settings {bon_better}, power sampling higher in "
            f"{power_better}. Power sampling's ceiling is π^α(y*) (e.g. {s0['power_star']:.3f} at H = {s0['horizon']}, "
            f"α = {s0['alpha']}), while BoN's tends to 1 as N grows: π^{{1+1/β}} is the RLHF target, not the argmax.")
    if len(bon_better) == len(out["settings"]):
        verdict = "finding: best-of-N puts more mass on y* than MH power sampling at equal model calls"
    elif len(power_better) == len(out["settings"]):
        verdict = "finding: MH power sampling puts more mass on y* than best-of-N at equal model calls"
    else:
        verdict = "finding: neither best-of-N nor power sampling dominates on y* at equal model calls"
    checks.append(Check("P[y*]: best-of-N vs MH power sampling at equal model calls", s0["mh"][-1]["bon_star"],
                        s0["mh"][-1]["p_star"], s0["mh_star_interval"][0], s0["mh_star_interval"][1],
                        verdict, note).as_dict())
    out["checks"] = checks
    return out


def plot(rows: list, summary: dict, out_dir) -> list:
    from sharpsim.plotting import finish_figure, new_figure

    fig, (ax, ax2) = new_figure(2)
    for i, s in enumerate(summary["settings"]):
        c = f"C{i}"
        lab = f"H={s['horizon']}, α={s['alpha']:g}"
        ax.plot([m["calls"] for m in s["mh"]], [max(m["tv"], 1e-4) for m in s["mh"]], "o-", color=c, ms=3,
                label=f"MH {lab}")
        ax.plot([m["calls"] for m in s["smc"]], [max(m["tv"], 1e-4) for m in s["smc"]], "s--", color=c, ms=3,
                label=f"SMC {lab}")
        ax.axhline(s["tolerance"], color=c, lw=0.6, ls=":")
        ax2.plot([m["calls"] for m in s["mh"]], [m["p_star"] for m in s["mh"]], "o-", color=c, ms=3, label=f"MH {lab}")
        ax2.plot([m["calls"] for m in s["mh"]], [m["bon_star"] for m in s["mh"]], "x:", color=c, ms=4,
                 label=f"best-of-N {lab}")
        ax2.axhline(s["power_star"], color=c, lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("model calls per sample (next-token evaluations)")
    ax.set_ylabel("TV(sampler law, exact π^α)")
    ax.set_title("Power samplers vs the exact π^α (dotted: test tolerance)", fontsize=10)
    ax2.set_xscale("log")
    ax2.xaxis.set_minor_formatter(__import__("matplotlib").ticker.NullFormatter())
    ax2.set_xlabel("model calls per sample")
    ax2.set_ylabel("P[sample = y*]")
    ax2.set_title("Mass on y*: MH vs exact best-of-N (dashed: π^α(y*))", fontsize=10)
    return finish_figure(fig, (ax, ax2), pathlib.Path(out_dir) / "power_sampling", legend_fontsize=6, grid="both")


EXPERIMENT = Experiment(
    name="power_sampling",
    title="Power sampling (MH, SMC) vs the exact π^α = π^{1+1/β}, and vs best-of-N",
    claim=("Metropolis–Hastings over suffixes and SMC with the temperature-1/α proposal converge to the exact power "
           "law π^α (the KL optimum π^{1+1/β} of Eq. 3 at α = 1 + 1/β) as compute grows, while per-token "
           "temperature 1/α does not; at equal model calls best-of-N and power sampling put different mass on y*."),
    paper_refs=("Eq. (3)", "Proposition C.1", "Karan & Du 2025 (Reasoning with Sampling), Algorithm 1"),
    instance=f"random Markov policies, V = {VOCAB}, logits {SCALE}·N(0, 1), one prompt; exact π^α by dynamic programming",
    sweep="horizon H and exponent α; compute = MH steps / SMC particles",
    algorithms=("power_mh_chain", "power_smc_sample", "temperature sampling T = 1/α", "best-of-N (exact law)"),
    bounds=(),
    predicted=("TV(MH, π^α) and TV(SMC, π^α) fall below the sampling tolerance at the largest budget; "
               "TV(temperature 1/α, π^α) stays > 0"),
    how_to_read=("Left: total variation between each sampler's law (from independent chains or runs) and the exact "
                 "π^α, against model calls per sample; the first MH point is per-token temperature 1/α. Dotted "
                 "lines: the tolerance of the check (sampling noise + bias allowance). Right: probability of "
                 "returning the argmax y*: MH (dots) vs the exact best-of-N law at the same calls (crosses); "
                 "dashed: π^α(y*), the ceiling of any exact power sampler."),
    settings=settings,
    run_setting=run_setting,
    analyze=analyze,
    plot=plot,
    trials={"quick": 8192, "full": 32768},
)
