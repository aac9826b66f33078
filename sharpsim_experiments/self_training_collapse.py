"""Self-training collapse (issue 16 item 2): the iterated SFT loop when each round trains only on its own samples
("replace") against training on every sample so far ("accumulate").

Instance: X = 4 prompts (μ uniform), Y = 16 responses, π_base(y|x) ∝ 1/(y + 1) (unique y*), n = 16 picks per prompt
and round, K rounds (:func:`sharpsim.iterated.iterated_sft`, tabular MLE). Arms: memory ∈ {replace, accumulate} ×
N ∈ {1 (plain self-training: no selection), 4 (best-of-4 sharpening, r_self = log π_k)}. Per round: entropy,
heterozygosity H = 1 − Σ_y π_k(y|x)², mass on y*, support lost (responses of π_base driven to 0).

Exact laws checked (N = 1, :func:`sharpsim.iterated.expected_heterozygosity`): replace E[H_K] = (1 − 1/n)^K H_0 → 0
(Shumailov et al. 2024: the tails vanish); accumulate E[H_K] = H_0 ∏_k (1 − 1/(n k²)) ≥ H_0 (1 − π²/(6n))
(Gerstgrasser et al. 2024: bounded); E[π_K(y*)] = π_0(y*) under both (a martingale). Round 1 (either N):
E[support lost] = mean_y (1 − BoN_N(π_0)(y))^n exactly. The control is accumulate: its loss of support can only
shrink after round 1, where replace's only grows. N = 4 shows what the memory does to sharpening itself, beside
the n → ∞ trajectories (BoN_4 applied k times; its accumulate average, :func:`exact_accumulated_sft`).
"""

from __future__ import annotations

import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from sharpsim import iterated as it
from sharpsim.complexity import standard_error
from sharpsim.runner import Check, Experiment

X, Y, n_ROUND, Z = 4, 16, 16, 3.0  # Z: normal quantile of the 99.7% intervals on trial means
_MEMORY = {"replace": "replace", "accumulate": "accumulate"}  # private hook: tests map accumulate to replace
_K = {"quick": 20, "full": 40}
O1 = {"xla_backend_optimization_level": 1}  # LLVM -O1: compile 5.8 -> 2.7 s CPU, same rows (tools/compare_rows.py)
METRICS = ("heterozygosity", "entropy", "mass_on_target", "support_lost")


def base() -> np.ndarray:
    w = 1.0 / np.arange(1, Y + 1)
    return np.tile(w / w.sum(), (X, 1))


def settings(mode: str) -> list:
    return [{"memory": m, "N": N} for N in (1, 4) for m in ("replace", "accumulate")]


@functools.partial(jax.jit, static_argnums=4, compiler_options=O1)
def _trials(keys, P, accumulate, N, K):
    """One compile for every arm: best of the first N of 4 draws, memory as a traced flag."""
    mu = jnp.full((X,), 1.0 / X, P.dtype)

    def one(key):
        run = it.iterated_sft(key, P, K=K, n=n_ROUND, N=4, N_used=N, memory=accumulate)
        return it.trajectory_stats(run.log_probs, P, mu)

    return jax.vmap(one)(keys)


def run_setting(keys, setting: dict, mode: str) -> list:
    K = _K[mode]
    stats = _trials(keys, jnp.asarray(base(), jnp.float32), jnp.asarray(_MEMORY[setting["memory"]] == "accumulate"),
                    jnp.asarray(setting["N"], jnp.int32), K)
    out = {m: np.asarray(stats[m]) for m in METRICS}
    return [{"trial": t, "round": k, "queries": X * n_ROUND * setting["N"] * k, "metric": m, "value": float(out[m][t, k])}
            for t in range(out[METRICS[0]].shape[0]) for k in range(K + 1) for m in METRICS]


# ------------------------------------------------------------------------------------------ analysis
def _table(rows) -> dict:
    """{(memory, N, metric, round): values over trials}, built in one pass."""
    out = {}
    for r in rows:
        out.setdefault((r["memory"], int(r["N"]), r["metric"], int(r["round"])), []).append(r["value"])
    return {k: np.asarray(v) for k, v in out.items()}


def _mean_ci(v):
    m, se = float(np.mean(v)), float(standard_error(v))
    return m, m - Z * se, m + Z * se


@functools.partial(jax.jit, static_argnums=0, compiler_options=O1)
def _exact(K):
    """Every exact quantity in one compile: the round-1 best-of-N laws and the N = 4 n → ∞ trajectories."""
    P = jnp.asarray(base(), jnp.float32)
    mu = jnp.full((X,), 1.0 / X)
    laws = {N: jnp.exp(it.exact_iterated_sft(P, 1, N)[1]) for N in (1, 4)}
    traj = {"N4/replace": it.exact_iterated_sft(P, K, 4), "N4/accumulate": it.exact_accumulated_sft(P, K, 4)}
    return laws, {k: it.trajectory_stats(v, P, mu)["mass_on_target"] for k, v in traj.items()}


def _exact_curves(K):
    laws, mass = _exact(K)
    h0 = float(1 - np.sum(base()[0] ** 2))
    curves = {f"N1/{m}": list(it.expected_heterozygosity(h0, n_ROUND, K, m)) for m in ("replace", "accumulate")}
    curves.update({k: [float(x) for x in v] for k, v in mass.items()})
    r1 = {N: float(np.mean((1.0 - np.asarray(b, np.float64)) ** n_ROUND)) for N, b in laws.items()}  # E[support lost]
    return curves, h0, r1


def analyze(rows: list, mode: str) -> dict:
    K = _K[mode]
    curves, h0, round1 = _exact_curves(K)
    tab = _table(rows)
    _values = lambda m, N, metric, k: tab[(m, N, metric, k)]  # noqa: E731
    checks = []
    for m in ("replace", "accumulate"):
        want = curves[f"N1/{m}"][K]
        got = _mean_ci(_values(m, 1, "heterozygosity", K))
        law = "(1 − 1/n)^K H_0" if m == "replace" else "H_0 ∏_k (1 − 1/(n k²))"
        checks.append(Check(f"[N=1/{m}] E[H_K] = {law} (exact, K = {K}, n = {n_ROUND})", want, *got,
                            "consistent" if got[1] <= want <= got[2] else "inconsistent",
                            f"trial mean ± {Z:g} s.e. (99.7%); H_0 = {h0:.4f}.").as_dict())
        p0 = float(base()[0, 0])
        got = _mean_ci(_values(m, 1, "mass_on_target", K))
        checks.append(Check(f"[N=1/{m}] E[π_K(y*)] = π_0(y*) (martingale, exact)", p0, *got,
                            "consistent" if got[1] <= p0 <= got[2] else "inconsistent",
                            f"trial mean ± {Z:g} s.e. (99.7%).").as_dict())
    for N in (1, 4):
        want = round1[N]
        v = np.concatenate([_values(m, N, "support_lost", 1) for m in ("replace", "accumulate")])
        got = _mean_ci(v)
        checks.append(Check(f"[N={N}] round-1 E[support lost] = mean_y (1 − BoN_{N}(y))^n (exact)", want, *got,
                            "consistent" if got[1] <= want <= got[2] else "inconsistent",
                            "Both memories (round 1 is the same); trial mean ± 3 s.e.").as_dict())
    r1 = round1[1]
    rep, acc = (_mean_ci(_values(m, 1, "support_lost", K)) for m in ("replace", "accumulate"))
    ok = acc[1] <= r1 < rep[1]
    checks.append(Check("[control, N=1] support lost at K: accumulate ≤ exact round-1 loss < replace", r1, acc[0], acc[1],
                        acc[2], "consistent" if ok else "inconsistent",
                        f"replace loses {rep[0]:.3f} [{rep[1]:.3f}, {rep[2]:.3f}] of the support by round {K}, "
                        f"accumulate {acc[0]:.3f}; exact round-1 loss {r1:.3f}.").as_dict())
    rep4, acc4 = (_mean_ci(_values(m, 4, "mass_on_target", K)) for m in ("replace", "accumulate"))
    lost4 = {m: float(np.mean(_values(m, 4, "mass_on_target", K) <= 0)) for m in ("replace", "accumulate")}
    verdict = ("finding: accumulating data slows sharpening" if acc4[2] < rep4[1] else
               "finding: accumulating data speeds sharpening" if acc4[1] > rep4[2] else "inconclusive")
    checks.append(Check(f"[N=4] π_K(y*) accumulate vs replace (n → ∞: {curves['N4/accumulate'][K]:.3f} vs "
                        f"{curves['N4/replace'][K]:.3f})", curves["N4/accumulate"][K], acc4[0], acc4[1], acc4[2], verdict,
                        f"replace {rep4[0]:.3f} [{rep4[1]:.3f}, {rep4[2]:.3f}]; y* driven to 0 in {lost4['replace']:.3f} "
                        f"(replace) vs {lost4['accumulate']:.3f} (accumulate) of prompt-trials.").as_dict())
    per_round = {f"N{N}/{m}/{metric}": [_mean_ci(_values(m, N, metric, k))[0] for k in range(K + 1)]
                 for N in (1, 4) for m in ("replace", "accumulate") for metric in METRICS}
    return {"checks": checks, "exact": curves, "per_round": per_round, "K": K, "H0": h0}


def plot(rows: list, summary: dict, out_dir) -> list:
    from sharpsim.plotting import finish_figure, new_figure

    fig, axes = new_figure(3, width=4.4)
    K, pr, ex = summary["K"], summary["per_round"], summary["exact"]
    ks = np.arange(K + 1)
    for i, (N, m) in enumerate((n_, m_) for n_ in (1, 4) for m_ in ("replace", "accumulate")):
        c, ls = f"C{i}", "-" if m == "replace" else "--"
        lab = f"N = {N}, {m}"
        axes[0].plot(ks, pr[f"N{N}/{m}/heterozygosity"], ls, color=c, label=lab)
        axes[1].plot(ks, pr[f"N{N}/{m}/support_lost"], ls, color=c, label=lab)
        axes[2].plot(ks, pr[f"N{N}/{m}/mass_on_target"], ls, color=c, label=lab)
        if N == 1:
            axes[0].plot(ks, ex[f"N1/{m}"], ":", color="k", lw=1)
        else:
            axes[2].plot(ks, ex[f"N4/{m}"], ":", color=c, lw=1)
    for ax, t in zip(axes, ("heterozygosity 1 − Σπ² (dotted: exact, N = 1)", "fraction of support lost",
                            "π_k(y*) (dotted: n → ∞, N = 4)")):
        ax.set_xlabel("round k")
        ax.set_title(t, fontsize=9)
    return finish_figure(fig, axes, pathlib.Path(out_dir) / "self_training_collapse", legend_axes=axes[:1])


EXPERIMENT = Experiment(
    name="self_training_collapse",
    title="Self-training collapse: replace vs accumulate in the iterated SFT loop",
    claim=("Beyond the paper: retraining on the current policy's own samples (replace) loses diversity at the exact "
           "rate (1 − 1/n) per round and drives responses to zero for good; keeping every sample so far (accumulate) "
           "bounds the loss (H_K ≥ H_0(1 − π²/(6n))). With best-of-N selection the memory also sets the pace of sharpening."),
    paper_refs=("Theorem 4.1", "Proposition C.1", "theory.md §6"),
    instance="X = 4, Y = 16, π_base ∝ 1/(y + 1); n = 16 picks per prompt and round, tabular MLE",
    sweep="memory ∈ {replace, accumulate} × N ∈ {1, 4}; rounds k = 0 … 20 (quick) / 40 (full)",
    algorithms=("iterated_sft",),
    bounds=(),
    predicted="E[H_K] on the exact laws; support lost grows under replace, stays ≤ the round-1 loss under accumulate",
    how_to_read=("Per round, trial means: heterozygosity (dotted black: exact N = 1 laws), fraction of π_base's support "
                 "driven to zero, and mass on y* (dotted: the n → ∞ trajectories for N = 4). Solid replace, dashed "
                 "accumulate."),
    settings=settings,
    run_setting=run_setting,
    analyze=analyze,
    plot=plot,
    trials={"quick": 256, "full": 1024},
)
