"""The bridge's studies as runner experiments: ``settings`` / ``run_setting`` / ``analyze`` / ``plot`` functions
that ``experiments/bridge_studies.py`` wraps in :class:`sharpsim.runner.Experiment` objects, so their rows are
written by the runner's results I/O (``results.csv`` with the runner's provenance header, row counts and
checksum; resume per setting) exactly like the simulator's experiments.

* ``bridge_tiny`` (:func:`tiny_settings` …): a tiny GPT-2 trained in seconds on a task with a known answer law:
  best-of-N frequencies against the exact law π^BoN_N; SFT-sharpening against π^BoN_N; RLHF-sharpening (Eq. 8
  and logistic DPO) and XPO (Algorithm 1, iterate chosen by estimated J_β) trained to a stated convergence
  criterion, compared with the exact target π_base^{1+1/β} renormalised over the *sampled support*, and the
  mass that leaves that support measured.
* ``bridge_smollm2_bon`` (:func:`bon_settings` …): inference-time best-of-N on SmolLM2-135M-Instruct over the
  offline task families of :mod:`sharpsim.bridge._tasks` (App. A.1–A.2, Figures 1 and 6, Proposition C.1).
* ``bridge_smollm2_sft`` (:func:`sft_settings` …): SFT-sharpening with LoRA on train prompts' best-of-N picks,
  evaluated on held-out prompts (Table 1, Figures 7–9 analogues).

Rows follow the runner's contract (``trial``, ``queries``, ``metric``, ``value`` plus columns); the runner adds
``experiment``, ``setting`` and the setting's fields. Randomness: each setting's seed is drawn from its first
trial key (the runner derives the keys from the root seed and the setting index), so ``--seed`` changes every
draw; the instances (the tiny model's training, the task prompts) are fixed.
"""

from __future__ import annotations

import copy
import functools
import math
import pathlib
import time

import numpy as np

__all__ = ["tiny_settings", "tiny_run_setting", "tiny_analyze", "tiny_plot", "setting_seed"]

TINY_TRIALS = {"quick": 2, "full": 2}  # the runner's minimum: one trial of the study per setting (trial 0)


def setting_seed(keys) -> int:
    """A torch seed in [0, 2³¹ − 1) drawn from the setting's first trial key (deterministic in the root seed)."""
    import jax

    return int(jax.random.randint(keys[0], (), 0, 2**31 - 1))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_dir, name) -> list:
    out = []
    for ext in ("png", "pdf"):
        p = pathlib.Path(out_dir) / f"{name}.{ext}"
        fig.savefig(p, dpi=120)
        out.append(p)
    _plt().close(fig)
    return out


# ======================================================================================= bridge_tiny
BON_NS = (1, 2, 4, 8)
TINY_BETA_RLHF, TINY_BETA_XPO, TINY_SFT_N = 0.5, 1.0, 8


def tiny_settings(mode: str) -> list:
    """One setting per part: best-of-N at N ∈ {1, 2, 4, 8}, SFT (N = 8), Eq. 8, logistic DPO, XPO."""
    return ([{"part": "bon", "N": n} for n in BON_NS]
            + [{"part": "sft", "N": TINY_SFT_N},
               {"part": "rlhf_squared", "beta": TINY_BETA_RLHF},
               {"part": "rlhf_logistic", "beta": TINY_BETA_RLHF},
               {"part": "xpo", "beta": TINY_BETA_XPO}])


@functools.lru_cache(maxsize=1)
def _tiny_instance():
    """The fixed instance: the tiny GPT-2 trained on :class:`AnswerTask` (seed 0) and its exact answer law."""
    import torch

    from sharpsim.bridge._tiny import answer_distribution, train_answer_model

    torch.manual_seed(0)
    model, tok, task = train_answer_model(seed=0)
    base = answer_distribution(model, tok, task.prompts, task.answers).double()
    return model, tok, task, base


def bon_law(p, N: int, other: float) -> list:
    """π^BoN_N over the answers when the leftover mass ``other`` ranks below every answer (theory.md §6):
    π^BoN_N(y) = (L(y) + p(y))^N − L(y)^N with L(y) the mass strictly below y."""
    out = []
    for pj in p:
        L = other + sum(q for q in p if q < pj)
        out.append((L + pj) ** N - L ** N)
    return out


def pair_graph_diameter(strings, pairs):
    """Largest shortest-path length between ``strings`` in the graph of sampled ``pairs`` (``None`` if it is not
    connected). Eq. 8 identifies log-ratios only along these edges (theory.md §9)."""
    adj = {y: set() for y in strings}
    for y, y2 in pairs:
        if y != y2:
            adj[y].add(y2)
            adj[y2].add(y)
    diam = 0
    for src in strings:
        dist, frontier = {src: 0}, [src]
        while frontier:
            nxt = []
            for u in frontier:
                for v in adj[u]:
                    if v not in dist:
                        dist[v] = dist[u] + 1
                        nxt.append(v)
            frontier = nxt
        if len(dist) < len(strings):
            return None
        diam = max(diam, max(dist.values()))
    return diam


def _logps(model, tok, prompt, ys):
    from sharpsim.bridge._scoring import score_completions

    return score_completions(model, tok, [prompt] * len(ys), list(ys), add_eos=True).logps.double()


def _support_pairs(part, data, eos):
    """(prompt, y, y') for every sampled pair whose two strings are complete (not truncated)."""
    out = []
    if part.startswith("rlhf"):
        for j, p in enumerate(data["prompt"]):
            if not (data["chosen_truncated"][j] or data["rejected_truncated"][j]):
                out.append((p, data["chosen"][j], data["rejected"][j]))
    else:  # xpo: texts keep special tokens; a complete one ends with EOS
        for j, p in enumerate(data["prompt"]):
            if not (data["policy_truncated"][j] or data["base_truncated"][j]):
                strip = lambda t: t[: -len(eos)] if t.endswith(eos) else t  # noqa: E731
                out.append((p, strip(data["policy_completion"][j]), strip(data["base_completion"][j])))
    return out


def tiny_run_setting(keys, setting: dict, mode: str) -> list:
    """Run one part of ``bridge_tiny`` (see :func:`tiny_settings`); rows per prompt and answer plus summaries."""
    import torch

    from sharpsim.bridge._algorithms import (RLHFConfig, SFTConfig, XPOConfig, rlhf_sharpening, sft_sharpening,
                                             xpo_sharpening)
    from sharpsim.bridge._rewards import best_of_n
    from sharpsim.bridge._tiny import answer_distribution

    seed = setting_seed(keys)
    model, tok, task, base = _tiny_instance()
    part = setting["part"]
    rows = []

    def row(metric, value, queries=0, **extra):
        rows.append({"trial": 0, "queries": int(queries), "metric": metric, "value": float(value), **extra})

    if part == "bon":
        N, R = int(setting["N"]), (60 if mode == "quick" else 300)
        prompts = [p for p in task.prompts for _ in range(R)]
        res = best_of_n(model, tok, prompts, N, max_new_tokens=5, seed=seed)
        q = res.samples.completion_ids.shape[0] // len(task.prompts)  # drawn and scored, per prompt
        for i, p in enumerate(task.prompts):
            pi = base[i].tolist()
            law = bon_law(pi, N, 1 - sum(pi))
            for j, a in enumerate(task.answers):
                freq = sum(t == a for t in res.texts[i * R:(i + 1) * R]) / R
                row("exact", law[j], 0, prompt=p, answer=a, draws=R)
                row("empirical", freq, q, prompt=p, answer=a, draws=R)
        return rows

    reps = 8 if mode == "quick" else 32
    prompts = [p for p in task.prompts for _ in range(reps)]
    trained = copy.deepcopy(model)
    if part == "sft":
        N = int(setting["N"])
        res = sft_sharpening(trained, tok, prompts, SFTConfig(
            N=N, max_new_tokens=5, steps=300, batch_size=len(prompts), learning_rate=3e-3, lr_schedule="constant",
            seed=seed, stop_tol=0.01, stop_window=10, stop_loss=1e-3))
        target = torch.tensor([bon_law(b.tolist(), N, 1 - float(b.sum())) for b in base], dtype=torch.float64)
    elif part.startswith("rlhf"):
        beta = float(setting["beta"])
        loss = part.split("_", 1)[1]
        P = prompts * 3  # 72 pairs (quick), one pair per prompt copy
        res = rlhf_sharpening(trained, tok, P, RLHFConfig(
            beta=beta, loss=loss, max_new_tokens=5, steps=400, batch_size=len(P), learning_rate=3e-3,
            lr_schedule="constant", max_grad_norm=None, seed=seed, stop_tol=0.01, stop_window=10, stop_loss=1e-6))
        target = base ** (1 + 1 / beta)
        target = target / target.sum(1, keepdim=True)
    elif part == "xpo":
        beta = float(setting["beta"])
        res = xpo_sharpening(trained, tok, prompts, XPOConfig(
            beta=beta, alpha=0.01, num_iterations=6, prompts_per_iteration=6, steps_per_iteration=8,
            batch_size=16, learning_rate=1e-3, max_new_tokens=5, seed=seed, selection_samples=4))
        target = base ** (1 + 1 / beta)
        target = target / target.sum(1, keepdim=True)
    else:
        raise ValueError(f"unknown bridge_tiny part {part!r}")
    q = res.num_queries
    after = answer_distribution(res.model, tok, task.prompts, task.answers).double()
    for i, p in enumerate(task.prompts):
        for j, a in enumerate(task.answers):
            row("base", base[i, j], 0, prompt=p, answer=a)
            row("after", after[i, j], q, prompt=p, answer=a)
            row("target", target[i, j], 0, prompt=p, answer=a)
    renorm = lambda d: d / d.sum(1, keepdim=True)  # noqa: E731  (over the task's answers)
    mode = base.argmax(1, keepdim=True)
    row("max_abs_error_to_target", (after - target).abs().max(), q)
    row("max_abs_error_to_target_renormalised", (renorm(after) - renorm(target)).abs().max(), q)
    row("mode_mass_gain_min", (after.gather(1, mode) - base.gather(1, mode)).min(), q)
    row("mode_share_gain_min", (renorm(after).gather(1, mode) - renorm(base).gather(1, mode)).min(), q)
    row("answer_mass_after_min", after.sum(1).min(), q)
    row("distance_base_to_target", (renorm(base) - renorm(target)).abs().max(), 0)
    for k, h in enumerate(res.history):  # one row per optimiser step (XPO: all iterations in order)
        row("loss", h["loss"], q, step=k)
    conv = res.convergence
    for k in ("first_loss", "final_loss", "steps_run"):
        row(k, conv[k], q)
    row("converged", float(conv.get("converged", float("nan"))) if "converged" in conv else float("nan"), q)
    if part == "xpo":
        row("selected_iteration", res.metrics["selected_iteration"], q)
        for t, j in enumerate(res.metrics["j_beta_estimates"]):
            row("j_beta_estimate", j, q, iteration=t)
    if part == "sft":
        return rows
    # the sampled support S_x per prompt, its mass before/after and the renormalised laws on it
    eos = tok.eos_token
    pairs = _support_pairs(part, res.data, eos)
    beta = float(setting["beta"])
    for p in task.prompts:
        P = [(a, b) for x, a, b in pairs if x == p]
        S = sorted({y for pr in P for y in pr})
        if not S:
            continue
        lp_after, lp_base = _logps(res.model, tok, p, S), _logps(model, tok, p, S)
        log_q = lp_after - torch.logsumexp(lp_after, 0)
        log_t = (1 + 1 / beta) * lp_base - torch.logsumexp((1 + 1 / beta) * lp_base, 0)
        diam = pair_graph_diameter(S, P)
        # Eq. 8 residual bound: with mean squared residual L over n pairs, |log q − log t| ≤ d·sqrt(n·L)/β
        resid = [beta * ((float(lp_after[S.index(a)]) - (1 + 1 / beta) * float(lp_base[S.index(a)]))
                         - (float(lp_after[S.index(b)]) - (1 + 1 / beta) * float(lp_base[S.index(b)]))) for a, b in P]
        L = sum(e * e for e in resid) / len(resid)
        row("support_size", len(S), q, prompt=p)
        row("support_pairs", len(P), q, prompt=p)
        row("support_diameter", float("nan") if diam is None else diam, q, prompt=p)
        row("support_residual_msq", L, q, prompt=p)
        row("support_log_error_bound", float("nan") if diam is None else max(diam, 1) * math.sqrt(len(P) * L) / beta,
            q, prompt=p)
        row("support_max_abs_log_error", (log_q - log_t).abs().max(), q, prompt=p)
        row("support_max_abs_error", (log_q.exp() - log_t.exp()).abs().max(), q, prompt=p)
        row("support_mass_base", lp_base.exp().sum(), 0, prompt=p)
        row("support_mass_after", lp_after.exp().sum(), q, prompt=p)
        row("mass_leaving_support", lp_base.exp().sum() - lp_after.exp().sum(), q, prompt=p)
    return rows


def _one(rows, metric, **cond):
    sel = [r for r in rows if r["metric"] == metric and all(r.get(k) == v for k, v in cond.items())]
    return [float(r["value"]) for r in sel]


def tiny_analyze(rows, mode) -> dict:
    """Checks of ``bridge_tiny``; every tolerance is derived from the sample sizes (see each note)."""
    from sharpsim.runner import Check

    checks, metrics = [], {}
    for n in BON_NS:
        ex = [r for r in rows if r.get("part") == "bon" and r.get("N") == n and r["metric"] == "exact"]
        em = {(r["prompt"], r["answer"]): r for r in rows if r.get("part") == "bon" and r.get("N") == n
              and r["metric"] == "empirical"}
        if not ex:
            continue
        zs = []
        for r in ex:
            e = em[(r["prompt"], r["answer"])]
            q, R = float(r["value"]), int(e["draws"])
            sd = math.sqrt(max(q, 0.01) * (1 - min(q, 0.99)) / R)
            zs.append(abs(float(e["value"]) - q) / sd)
        z = max(zs)
        checks.append(Check(f"best-of-N (N = {n}): empirical frequencies vs the exact law π^BoN_N", 0.0, z, 0.0, z,
                            "consistent" if z <= 4.5 else "inconsistent",
                            f"max over {len(zs)} (prompt, answer) cells of |freq − π^BoN_N| / sd, sd = "
                            f"sqrt(q(1−q)/R) with q floored at 0.01, R = {int(e['draws'])}; consistent when ≤ 4.5 "
                            "(false-failure rate < 1e-4 per check)").as_dict())
    for part in ("sft", "rlhf_squared", "rlhf_logistic", "xpo"):
        pr = [r for r in rows if r.get("part") == part]
        if not pr:
            continue
        for k in ("max_abs_error_to_target", "max_abs_error_to_target_renormalised", "final_loss", "first_loss",
                  "steps_run", "converged", "mode_mass_gain_min", "mode_share_gain_min", "answer_mass_after_min",
                  "distance_base_to_target", "selected_iteration"):
            v = _one(pr, k)
            if v:
                metrics[f"{part}.{k}"] = v[0]
        leak = _one(pr, "mass_leaving_support")
        if leak:
            metrics[f"{part}.mass_leaving_support_min"] = min(leak)
            metrics[f"{part}.mass_leaving_support_max"] = max(leak)
            metrics[f"{part}.support_max_abs_error"] = max(_one(pr, "support_max_abs_error"))
    conv_note = lambda part: (f"final loss {metrics.get(part + '.final_loss', float('nan')):.3g} (first "  # noqa: E731
                              f"{metrics.get(part + '.first_loss', float('nan')):.3g}) after "
                              f"{metrics.get(part + '.steps_run', float('nan')):.0f} full-batch steps; stopping rule: "
                              "mean loss over 10 steps ≤ the floor, or < 1% relative improvement on the 10 before")
    # SFT: MLE on n picks per prompt reaches their empirical law, itself within sampling error of π^BoN_N
    pr = [r for r in rows if r.get("part") == "sft"]
    if pr:
        n_picks = (8 if mode == "quick" else 32)
        worst = 0.0
        for r in [x for x in pr if x["metric"] == "target"]:
            a = _one(pr, "after", prompt=r["prompt"], answer=r["answer"])[0]
            q = float(r["value"])
            worst = max(worst, abs(a - q) / (4.5 * math.sqrt(max(q * (1 - q), 0.01) / n_picks) + 0.02))
        checks.append(Check(f"SFT-sharpening (N = {TINY_SFT_N}) reaches π^BoN_{TINY_SFT_N} of the trained model",
                            0.0, metrics["sft.max_abs_error_to_target"], 0.0, metrics["sft.max_abs_error_to_target"],
                            "consistent" if worst <= 1 else "inconsistent",
                            "max |π̂(a|p) − π^BoN_N(a|p)| over prompts and answers; tolerance per cell 4.5·sqrt(q(1−q)/n)"
                            f" + 0.02 with n = {n_picks} kept picks per prompt (their empirical law is what MLE reaches)"
                            f"; worst cell at {worst:.2f} of its tolerance; " + conv_note("sft")).as_dict())
    # Eq. 8: on the sampled support the renormalised law is π_base^{1+1/β}; mass leaves the support
    pr = [r for r in rows if r.get("part") == "rlhf_squared"]
    if pr:
        errs, bounds = _one(pr, "support_max_abs_log_error"), _one(pr, "support_log_error_bound")
        ok = all(math.isfinite(b) and e <= b + 1e-9 for e, b in zip(errs, bounds))
        conv = metrics.get("rlhf_squared.converged", 0.0) == 1.0
        verdict = "consistent" if (ok and conv) else ("inconclusive" if not conv else "inconsistent")
        checks.append(Check(f"Eq. 8 (β = {TINY_BETA_RLHF}): law renormalised over the sampled support vs "
                            "π_base^{1+1/β} (max |log q − log t|)", 0.0, max(errs), 0.0, max(bounds), verdict,
                            "per prompt, q = π̂/π̂(S_x) and t ∝ π_base^{1+1/β} on the distinct complete strings S_x "
                            "sampled for it; bound d_x·sqrt(n·L)/β from the measured mean squared Eq. 8 residual L over "
                            "the n pairs (d_x: diameter of the pair graph); " + conv_note("rlhf_squared")).as_dict())
        leak = _one(pr, "mass_leaving_support")
        base_in = _one(pr, "support_mass_base")
        checks.append(Check(
            "Eq. 8 at convergence: probability mass that leaves the sampled support (π_base(S_x) − π̂(S_x))",
            0.0, float(np.mean(leak)), min(leak), max(leak),
            f"finding: Eq. 8 moves {min(leak):.2f}–{max(leak):.2f} of each prompt's mass to strings never sampled",
            f"per prompt, π_base(S_x) = {', '.join(f'{v:.3f}' for v in base_in)} before training; Eq. 8 constrains "
            "only log-ratios of sampled pairs, so it is invariant to a per-prompt shift of log π on S_x (the shift "
            "moves mass to or from unsampled strings). Assumption 4.4 excludes this for the theory's policy "
            "classes; an unconstrained LM does not. On the task's answers: renormalised max error to "
            f"π_base^{{1+1/β}} {metrics.get('rlhf_squared.max_abs_error_to_target_renormalised', float('nan')):.3f}"
            f", unnormalised {metrics.get('rlhf_squared.max_abs_error_to_target', float('nan')):.3f}").as_dict())
    pr = [r for r in rows if r.get("part") == "rlhf_logistic"]
    if pr:
        g = metrics["rlhf_logistic.mode_share_gain_min"]
        checks.append(Check(f"logistic DPO (β = {TINY_BETA_RLHF}) moves each prompt's answer law toward its mode",
                            0.0, g, g, g, "consistent" if g > 0 else "inconsistent",
                            "min over prompts of the mode's share of the answers' mass, after minus before; the "
                            "logistic loss has no finite optimum on separable pairs (it keeps pushing), so only the "
                            "direction is predicted; renormalised max |π̂ − π_base^{1+1/β}| on the answers "
                            f"{metrics['rlhf_logistic.max_abs_error_to_target_renormalised']:.3f}; unnormalised mode "
                            f"mass change (min) {metrics['rlhf_logistic.mode_mass_gain_min']:+.3f}; mass leaving the "
                            f"sampled support {metrics.get('rlhf_logistic.mass_leaving_support_min', float('nan')):.2f}–"
                            f"{metrics.get('rlhf_logistic.mass_leaving_support_max', float('nan')):.2f}; "
                            + conv_note("rlhf_logistic")).as_dict())
    pr = [r for r in rows if r.get("part") == "xpo"]
    if pr:
        e, d = metrics["xpo.max_abs_error_to_target_renormalised"], metrics["xpo.distance_base_to_target"]
        checks.append(Check(f"XPO (β = {TINY_BETA_XPO}, iterate chosen by estimated J_β) moves toward "
                            "π_base^{1+1/β}", d, e, e, e, "consistent" if e < d else "inconsistent",
                            f"max |π̂ − π*_β| over the answers (renormalised) after XPO vs {d:.3f} for π_base; selected "
                            f"iterate {metrics.get('xpo.selected_iteration', float('nan')):.0f} of 6 by Ĵ_β (4 draws on "
                            "each of 6 validation prompts); T = 6 iterations × 8 AdamW steps (a fixed budget, not a "
                            f"stopping rule), final loss {metrics.get('xpo.final_loss', float('nan')):.3g}; mass "
                            "leaving the sampled support "
                            f"{metrics.get('xpo.mass_leaving_support_min', float('nan')):.2f}–"
                            f"{metrics.get('xpo.mass_leaving_support_max', float('nan')):.2f}").as_dict())
    return {"checks": checks, "metrics": metrics}


def tiny_plot(rows, summary, out_dir) -> list:
    """Left: BoN frequencies vs the exact law; middle: trained mass vs exact target; right: training losses."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    bon = [r for r in rows if r.get("part") == "bon"]
    for n in BON_NS:
        ex = {(r["prompt"], r["answer"]): r["value"] for r in bon if r.get("N") == n and r["metric"] == "exact"}
        em = [(ex[(r["prompt"], r["answer"])], r["value"]) for r in bon if r.get("N") == n
              and r["metric"] == "empirical"]
        if em:
            axes[0].scatter(*zip(*em), s=14, label=f"N = {n}")
    axes[0].plot([0, 1], [0, 1], "k--", lw=1)
    axes[0].set(xlabel="exact π^BoN_N(answer)", ylabel="empirical BoN frequency", title="Best-of-N law")
    axes[0].legend(fontsize=8)
    for part in ("sft", "rlhf_squared", "rlhf_logistic", "xpo"):
        pr = [r for r in rows if r.get("part") == part]
        t = {(r["prompt"], r["answer"]): r["value"] for r in pr if r["metric"] == "target"}
        pts = [(t[(r["prompt"], r["answer"])], r["value"]) for r in pr if r["metric"] == "after"]
        if pts:
            axes[1].scatter(*zip(*pts), s=16, label=part)
        loss = [(r["step"], r["value"]) for r in pr if r["metric"] == "loss"]
        if loss:
            axes[2].plot(*zip(*loss), label=part)
    axes[1].plot([0, 1], [0, 1], "k--", lw=1)
    axes[1].set(xlabel="exact target (π^BoN_8 or π_base^{1+1/β}, renormalised on the answers)",
                ylabel="trained model's mass", title="Amortised sharpening vs exact targets")
    axes[1].legend(fontsize=8)
    axes[2].set(yscale="log", xlabel="optimiser step", ylabel="training loss", title="Training to convergence")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out_dir, "bridge_tiny")
