"""Greedy decoding vs the sequence-level argmax: Proposition 3.1 (and its tightness) and Proposition E.2.

Proposition 3.1 (theory.md §4): for an autoregressive π with a unique argmax y*(x) and π(y*(x)|x) > 1/2,
greedy decoding returns y*(x) exactly; below 1/2 it can fail. Proposition E.2: in the two-layer linear
softmax class of App. E with the non-closure features, the base policy's unique argmax (2, 1) has
π_base(2, 1) = Ω(1), yet every member of the class, for any norm bound B′, has π_θ(2, 1) ≤ 1/2 — so no
policy of the class is sharpened with δ < 1/2 (and greedy decoding of π_base misses the argmax).

Settings (``family``): ``random_markov`` — Markov policies (X = 1, logits scale·N(0, 1); the scale sweeps π(y*)
over (0, 1)), per trial the exact π(y*) and whether greedy / beam search (W = 2, 4) return y*
(:func:`sharpsim.ar_metrics.decoder_hits`); ``counterexample`` — :func:`sharpsim.ar_instances.greedy_counterexample`
at π(y*) ≤ 1/2; ``nonclosure`` — Proposition E.2 with n tokens: per trial a projected-Adam restart maximising
π_θ(2, 1) over ‖θ_h‖ ≤ B′ (:func:`sharpsim.ar_instances.nonclosure_restarts`; the numerical sup is the max), next
to the closed form ``nonclosure_class_sup`` and the base policy's own numbers (``nonclosure_base_facts``).
"""

from __future__ import annotations

import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from sharpsim.ar_instances import (greedy_counterexample, nonclosure_base_facts, nonclosure_class_sup,
                                   nonclosure_restarts, random_markov_tables)
from sharpsim.ar_metrics import decoder_hits
from sharpsim.complexity import binned_counts, proportion_interval
from sharpsim.policies import MarkovPolicy
from sharpsim.runner import Check, Experiment, column, rows_where

#: Beam widths compared with greedy decoding (width 1).
BEAM_WIDTHS = (2, 4)
#: Bins of π(y*) for the success-rate curve.
NUM_BINS = 20
#: Float32 slack for "π_θ(2, 1) ≤ 1/2": exp of a sum of log-softmaxes can round just above the exact value.
FLOAT_SLACK = 1e-6
#: An argmax is "unique" when the runner-up is at least this much lower in log-probability.
UNIQUE_LOG_GAP = 1e-4
_ADAM_STEPS = {"quick": 200, "full": 600}


def settings(mode: str) -> list:
    if mode == "quick":
        markov = [dict(family="random_markov", vocab=3, horizon=4, scale=s) for s in (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)]
        counter = [dict(family="counterexample", vocab=3, horizon=4, target_mass=p) for p in (0.3, 0.4, 0.5)]
        nonclosure = [dict(family="nonclosure", n=16, norm_bound=b) for b in (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)]
    else:
        scales = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)
        markov = [dict(family="random_markov", vocab=v, horizon=h, scale=s)
                  for v, h in ((3, 4), (2, 8), (5, 3)) for s in scales]
        counter = [dict(family="counterexample", vocab=v, horizon=h, target_mass=p)
                   for v, h in ((3, 4), (2, 8), (5, 3)) for p in (0.2, 0.3, 0.35, 0.4, 0.45, 0.5) if p > 1.0 / (v + 1)]
        nonclosure = [dict(family="nonclosure", n=n, norm_bound=b)
                      for n in (16, 64) for b in (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)]
    return markov + counter + nonclosure


@jax.jit
def _decode_markov_tables(log_probs):
    """:func:`sharpsim.ar_metrics.decoder_hits` over a batch of Markov tables ``[T, 1, H, V+1, V]``: one compile
    per (V, H), shared by the random instances and the counterexample."""
    return jax.vmap(lambda lp: decoder_hits(MarkovPolicy(log_probs=lp), 0, BEAM_WIDTHS))(log_probs)


def _decode_rows(pi_star, gap, hits) -> list:
    pi_star, gap, hits = np.asarray(pi_star, float), np.asarray(gap, float), np.asarray(hits)
    names = ["greedy"] + [f"beam{w}" for w in BEAM_WIDTHS]
    rows = []
    for t in range(pi_star.shape[0]):
        for j, name in enumerate(names):
            rows.append(dict(trial=t, queries=0, metric=f"hit_{name}", value=float(hits[t, j]),
                             pi_star=float(pi_star[t]), log_gap=float(gap[t])))
    return rows


def run_setting(keys, setting: dict, mode: str) -> list:
    family = setting["family"]
    if family == "random_markov":
        tables = random_markov_tables(keys, jnp.asarray(setting["scale"], jnp.result_type(float)),
                                      vocab_size=int(setting["vocab"]), horizon=int(setting["horizon"]))
        return _decode_rows(*_decode_markov_tables(tables))
    if family == "counterexample":  # deterministic: one row per decoder (trial 0)
        pi, _ = greedy_counterexample(float(setting["target_mass"]), vocab_size=int(setting["vocab"]),
                                      horizon=int(setting["horizon"]))
        # Tiled to the trial count so the compiled decoder of the random instances (same V, H) is reused.
        tables = jnp.broadcast_to(pi.log_probs, (keys.shape[0],) + pi.log_probs.shape)
        return _decode_rows(*(np.asarray(a)[:1] for a in _decode_markov_tables(tables)))
    if family == "nonclosure":
        n, b = int(setting["n"]), float(setting["norm_bound"])
        best, norms = nonclosure_restarts(keys, jnp.asarray(b, jnp.result_type(float)), n=n, steps=_ADAM_STEPS[mode])
        rows = [dict(trial=t, queries=0, metric="class_pi21", value=float(v), theta_norm=float(r))
                for t, (v, r) in enumerate(zip(np.asarray(best), np.asarray(norms)))]
        facts = {"closed_form_sup": nonclosure_class_sup(n, b), **nonclosure_base_facts(n)}
        return rows + [dict(trial=0, queries=0, metric=m, value=v) for m, v in facts.items()]
    raise ValueError(f"unknown family {family!r}")


def analyze(rows: list, mode: str) -> dict:
    checks = []
    out: dict = {}
    edges = np.linspace(0.0, 1.0, NUM_BINS + 1)
    out["bin_edges"] = edges.tolist()
    curves = {}
    for dec in ["greedy"] + [f"beam{w}" for w in BEAM_WIDTHS]:
        hr = [r for r in rows if r["metric"] == f"hit_{dec}" and r["family"] in ("random_markov", "counterexample")]
        if not hr:
            continue
        p, hit, gap = (column(hr, k).astype(float) for k in ("pi_star", "value", "log_gap"))
        above, below = p > 0.5, (p <= 0.5) & (gap > UNIQUE_LOG_GAP)
        n_above, k_above = int(above.sum()), int(hit[above].sum())
        n_below, fail_below = int(below.sum()), int((hit[below] == 0).sum())
        n, k = binned_counts(p, hit, edges)  # bins (a, b]: 1/2 falls left
        lo, hi = proportion_interval(k, np.maximum(n, 1), method="wilson")
        curves[dec] = dict(n=n.tolist(), k=k.tolist(), lower=np.where(n > 0, lo, np.nan).tolist(),
                           upper=np.where(n > 0, hi, np.nan).tolist())
        out[f"{dec}_above_half"] = dict(instances=n_above, hits=k_above)
        out[f"{dec}_below_half"] = dict(instances=n_below, failures=fail_below,
                                        max_failing_pi_star=float(p[below][hit[below] == 0].max()) if fail_below else None)
        quantity = "P[greedy = y* | π(y*) > 1/2] = 1" if dec == "greedy" else f"P[beam(W={dec[4:]}) = y* | π(y*) > 1/2] = 1"
        if n_above:
            clo, chi = proportion_interval(k_above, n_above, method="clopper-pearson")
            note = (f"{k_above}/{n_above} instances with π(y*) > 1/2 decoded to y* by {dec} (95% Clopper–Pearson "
                    f"interval for the rate); smallest such π(y*) = {p[above].min():.4f}."
                    + ("" if dec == "greedy" else " Beam search keeps the prefix of y* (mass > 1/2, so it is the top "
                                                   "prefix) at every depth."))
            checks.append(Check(quantity, 1.0, k_above / n_above, float(clo), float(chi),
                                "consistent" if k_above == n_above else "inconsistent", note).as_dict())
        else:
            checks.append(Check(quantity, 1.0, math.nan, math.nan, math.nan, "inconclusive",
                                "no instance with π(y*) > 1/2").as_dict())
        if dec == "greedy":
            rate = fail_below / n_below if n_below else math.nan
            clo, chi = proportion_interval(fail_below, max(n_below, 1), method="clopper-pearson")
            rnd = [r for r in hr if r["family"] == "random_markov" and r["pi_star"] <= 0.5 and r["value"] == 0
                   and r["log_gap"] > UNIQUE_LOG_GAP]
            cex = [r for r in hr if r["family"] == "counterexample"]
            cex_fail = sum(1 for r in cex if r["value"] == 0)
            checks.append(Check(
                "P[greedy ≠ y* | unique y*, π(y*) ≤ 1/2] > 0 (tightness)", 0.0, rate, float(clo), float(chi),
                "consistent" if fail_below > 0 else "inconsistent",
                f"predicted: strictly positive (greedy can fail below 1/2). {fail_below}/{n_below} instances with a "
                f"unique argmax and π(y*) ≤ 1/2 are missed by greedy (95% Clopper–Pearson interval); the largest "
                f"π(y*) of a missed random instance is {max((r['pi_star'] for r in rnd), default=float('nan')):.4f}; "
                f"the deterministic counterexample misses y* at {cex_fail}/{len(cex)} masses "
                f"{sorted(r['target_mass'] for r in cex)}.").as_dict())
    out["curves"] = curves

    nc = rows_where(rows, family="nonclosure")
    if nc:
        table = []
        for n in sorted({r["n"] for r in nc}):
            for b in sorted({r["norm_bound"] for r in nc if r["n"] == n}):
                sub = rows_where(nc, n=n, norm_bound=b)
                value_of = lambda m: rows_where(sub, metric=m)[0]["value"]  # noqa: E731
                table.append(dict(n=n, norm_bound=b, numerical_sup=float(column(rows_where(sub, metric="class_pi21"), "value").max()),
                                  **{m: value_of(m) for m in ("closed_form_sup", "base_pi21", "base_max_other",
                                                              "base_argmax_is_21", "base_greedy_hit", "base_beam2_hit")}))
        out["nonclosure"] = table
        worst = max(table, key=lambda t: t["numerical_sup"])
        gap = max(abs(t["numerical_sup"] - t["closed_form_sup"]) for t in table)
        ok = worst["numerical_sup"] <= 0.5 + FLOAT_SLACK
        base_min = min(t["base_pi21"] for t in table)
        checks.append(Check(
            "sup_θ π_θ(2,1) ≤ 1/2 on E.2", 0.5, worst["numerical_sup"], min(t["numerical_sup"] for t in table),
            worst["numerical_sup"], "consistent" if ok else "inconsistent",
            f"largest numerical max over restarts (projected Adam) across B′ ∈ {sorted({t['norm_bound'] for t in table})} "
            f"and n ∈ {sorted({t['n'] for t in table})}, reached at B′ = {worst['norm_bound']} (lower/upper: the range "
            f"over B′); closed form agrees to {gap:.2g}. The base policy's argmax (2,1) is unique "
            f"({all(t['base_argmax_is_21'] for t in table)}) with π_base(2,1) ≥ {base_min:.4f} vs the next pair "
            f"≤ {max(t['base_max_other'] for t in table):.4f}; greedy decoding of π_base returns (2,1): "
            f"{bool(all(t['base_greedy_hit'] for t in table))}, beam search W=2: {bool(all(t['base_beam2_hit'] for t in table))}. "
            f"Slack {FLOAT_SLACK:g} for float32 rounding.").as_dict())
    out["checks"] = checks
    return out


def plot(rows: list, summary: dict, out_dir) -> list:
    from sharpsim.plotting import finish_figure, new_figure

    fig, (ax, ax2) = new_figure(2)
    edges = np.asarray(summary["bin_edges"])
    mids = 0.5 * (edges[1:] + edges[:-1])
    styles = {"greedy": ("o-", "C0"), "beam2": ("s--", "C1"), "beam4": ("^:", "C2")}
    for dec, c in summary["curves"].items():
        n, k = np.asarray(c["n"]), np.asarray(c["k"], float)
        ok = n > 0
        style, color = styles.get(dec, ("o-", "C3"))
        label = "greedy" if dec == "greedy" else f"beam search W={dec[4:]}"
        ax.plot(mids[ok], k[ok] / n[ok], style, color=color, label=label, ms=4)
        ax.fill_between(mids[ok], np.asarray(c["lower"])[ok], np.asarray(c["upper"])[ok], color=color, alpha=0.15)
    ax.axvline(0.5, color="k", ls="--", lw=1, label="π(y*) = 1/2 (Prop. 3.1)")
    total = sum(summary["curves"]["greedy"]["n"]) if "greedy" in summary["curves"] else 0
    ax.set(xlim=(0, 1), ylim=(-0.02, 1.05), xlabel="π(y*|x)  (exact, by enumeration)",
           ylabel="P[decoder returns y*]  (95% Wilson band)")
    ax.set_title(f"Prop. 3.1: greedy = argmax when π(y*) > 1/2 ({total} instances)", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")

    table = summary.get("nonclosure", [])
    for i, n in enumerate(sorted({t["n"] for t in table})):
        sub = sorted((t for t in table if t["n"] == n), key=lambda t: t["norm_bound"])
        b = np.array([t["norm_bound"] for t in sub])
        ax2.plot(b, [t["closed_form_sup"] for t in sub], "-", color=f"C{i}", lw=1, label=f"n={n}: closed-form sup")
        ax2.plot(b, [t["numerical_sup"] for t in sub], "o", color=f"C{i}", ms=5, label=f"n={n}: max over restarts")
        ax2.axhline(sub[0]["base_pi21"], color=f"C{i}", ls=":", label=f"n={n}: π_base(2,1) (B = log n, the argmax)")
        ax2.axhline(max(t["base_max_other"] for t in sub), color=f"C{i}", ls="-.", lw=0.8,
                    label=f"n={n}: π_base of the next pair")
    ax2.axhline(0.5, color="k", ls="--", lw=1, label="1/2")
    ax2.set(xscale="log", ylim=(0, 0.55), xlabel="norm bound B′ of the class", ylabel="max_θ π_θ(2,1)")
    ax2.set_title("Prop. E.2: no member of the class exceeds 1/2 on the argmax", fontsize=10)
    return finish_figure(fig, (ax, ax2), pathlib.Path(out_dir) / "greedy_vs_argmax", grid="both",  # ax is linear
                         legend_axes=(ax2,), legend_fontsize=6, legend_loc="lower right")


EXPERIMENT = Experiment(
    name="greedy_vs_argmax",
    title="Greedy decoding vs the sequence-level argmax (Prop. 3.1, Prop. E.2)",
    claim=("Greedy decoding returns the sequence-level argmax of an autoregressive policy whenever it has mass "
           "above 1/2, can miss it below 1/2, and the linear-softmax class of Prop. E.2 cannot put more than 1/2 "
           "on its base policy's unique argmax for any norm bound."),
    paper_refs=("Proposition 3.1", "Appendix G (proof)", "Proposition E.2"),
    instance=("random Markov policies with logits scale·N(0,1) (X=1, small V^H, enumerated exactly); the "
              "greedy_counterexample instance; Prop. E.2's two-layer linear softmax with n tokens"),
    sweep="logit scale (sharpness, so π(y*) spans (0,1)); counterexample mass ≤ 1/2; E.2 norm bound B′",
    algorithms=("greedy", "beam_search W=2", "beam_search W=4", "exact_argmax (enumeration)",
                "projected Adam over the E.2 class"),
    bounds=(),
    predicted=("P[greedy = y*] = 1 for every instance with π(y*) > 1/2 (also for beam search); failures exist "
               "at π(y*) ≤ 1/2; sup_θ π_θ(2,1) ≤ 1/2 for every B′ while π_base(2,1) = Ω(1)"),
    how_to_read=("Left: each random instance is binned by the exact mass π(y*|x) of its sequence-level argmax; "
                 "the curve is the fraction of instances for which greedy decoding (and beam search of width 2, 4) "
                 "returns that argmax, with a 95% Wilson band. Proposition 3.1 predicts the curve is exactly 1 to "
                 "the right of the dashed line at 1/2 (a single failure there would refute it); to the left it "
                 "may drop, showing the threshold is tight. Right: for Proposition E.2, the best probability any "
                 "member of the linear-softmax class puts on the base policy's argmax (2,1), against the class's "
                 "norm bound B′ — dots are the best of several projected-Adam restarts, the line the closed form; "
                 "it approaches but never exceeds 1/2, although (2,1) is the base policy's unique argmax with "
                 "constant mass (dotted) and every other pair has mass O(1/n) (dash-dot)."),
    settings=settings,
    run_setting=run_setting,
    analyze=analyze,
    plot=plot,
    trials={"quick": 256, "full": 4096},
)
