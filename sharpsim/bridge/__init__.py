"""The Hugging Face bridge: sharpening algorithms on real ``transformers`` causal LMs (optional extra).

``pip install 'sharpsim[hf]'`` (torch, transformers, accelerate, gguf; ``'sharpsim[lora]'`` adds peft).
Importing ``sharpsim`` or ``sharpsim.bridge`` never imports torch: the torch-backed names below load on first
access and raise ``ImportError`` naming the extra when torch/transformers are missing. The planner
(:func:`plan_n` …) and the synthetic tasks are NumPy / pure Python and work without torch.

See ``docs/bridge.md`` for a tour.
"""

from __future__ import annotations

import importlib

_LAZY = {
    # scoring
    "Scores": "_scoring", "score_completions": "_scoring", "score_ids": "_scoring",
    "completion_token_logps": "_scoring", "completion_token_logps_tempered": "_scoring",
    "completion_mask_from_ids": "_scoring",
    "resolve_special_ids": "_scoring", "pad_left": "_scoring", "pad_right": "_scoring",
    # sampling
    "Samples": "_sampling", "sample_completions": "_sampling",
    # self-rewards and best-of-N
    "BestOfN": "_rewards", "best_of_n": "_rewards", "compute_self_reward": "_rewards",
    "majority_reward": "_rewards", "select_best": "_rewards",
    # power sampling: Metropolis–Hastings targeting π^α (Karan & Du 2025)
    "PowerMHSamples": "_power", "power_mh_sample": "_power", "mh_log_acceptance": "_power",
    # algorithms
    "SFTConfig": "_algorithms", "RLHFConfig": "_algorithms", "XPOConfig": "_algorithms",
    "SharpeningResult": "_algorithms", "sft_sharpening": "_algorithms", "rlhf_sharpening": "_algorithms",
    "xpo_sharpening": "_algorithms", "fine_tune": "_algorithms", "apply_lora": "_algorithms",
    "evaluate_policy": "_algorithms", "sequence_logps": "_algorithms", "sft_nll_loss": "_algorithms",
    "sharpening_squared_loss": "_algorithms", "dpo_logistic_loss": "_algorithms", "xpo_loss": "_algorithms",
    # interop (pure Python except trl_self_reward, which scores with torch when called)
    "sft_rows": "_interop", "dpo_pairs": "_interop", "to_dataset": "_interop", "trl_self_reward": "_interop",
    "to_trl": "_interop", "export_completions": "_interop",
    # tiny in-code models
    "char_tokenizer": "_tiny", "tiny_gpt2": "_tiny", "tiny_llama": "_tiny", "AnswerTask": "_tiny",
    "train_answer_model": "_tiny", "answer_distribution": "_tiny",
    # runtime: thread policy and float32 forward passes
    "torch_threads": "_runtime", "choose_threads": "_runtime", "float32_forward": "_runtime",
    # models
    "load_smollm2": "_models", "smollm2_available": "_models",
    # planner (NumPy only)
    "ModeMassEstimate": "_planner", "SharpeningPlan": "_planner", "estimate_mode_mass": "_planner",
    "recommend_n_bon": "_planner", "recommend_n_sft": "_planner", "plan_n": "_planner",
    "plan_from_table": "_planner", "plan_from_samples": "_planner", "plan_from_model": "_models",
    "expected_bon_by_n": "_planner", "pass_at_n_estimate": "_planner",
    "pass_at_n": "_planner",  # deprecated name of pass_at_n_estimate
    # synthetic tasks (pure Python)
    "Problem": "_tasks", "arithmetic_problems": "_tasks", "prontoqa_problems": "_tasks",
    "extract_number": "_tasks", "extract_bool": "_tasks", "check_answer": "_tasks", "chat_prompt": "_tasks",
    "lookup_problems": "_tasks", "task_problems": "_tasks", "TASK_FAMILIES": "_tasks", "extractor": "_tasks",
    # training convergence rule
    "converged": "_algorithms", "convergence_record": "_algorithms",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sharpsim.bridge' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"sharpsim.bridge.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
