"""Interop with the Hugging Face ecosystem: ``datasets``-compatible tables and a TRL-style reward callable.

Tables are plain ``dict[str, list]`` (column → values), which ``datasets.Dataset.from_dict`` accepts as is;
:func:`to_dataset` does that conversion when ``datasets`` is installed.
"""

from __future__ import annotations

from collections.abc import Sequence

from sharpsim.bridge._deps import require_datasets

__all__ = ["dpo_pairs", "sft_rows", "to_dataset", "trl_self_reward"]


def sft_rows(prompts: Sequence[str], completions: Sequence[str], ref_logps: Sequence[float] | None = None) -> dict:
    """TRL's prompt-completion SFT format: ``{"prompt": [...], "completion": [...]}`` (+ ``ref_logps``)."""
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    out = {"prompt": list(prompts), "completion": list(completions)}
    if ref_logps is not None:
        out["ref_logps"] = [float(v) for v in ref_logps]
    return out


def dpo_pairs(prompts, completions_a, completions_b, rewards_a, rewards_b, ref_logps_a, ref_logps_b) -> dict:
    """DPO pairs ordered by self-reward (higher is ``chosen``; ties keep ``a``), with the reference log-probs:
    columns ``prompt, chosen, rejected, ref_chosen_logps, ref_rejected_logps`` (TRL's precomputed-reference
    names) plus ``chosen_reward, rejected_reward``."""
    n = len(prompts)
    for name, col in (("completions_b", completions_b), ("rewards_a", rewards_a), ("rewards_b", rewards_b),
                      ("ref_logps_a", ref_logps_a), ("ref_logps_b", ref_logps_b), ("completions_a", completions_a)):
        if len(col) != n:
            raise ValueError(f"{name} has {len(col)} entries, expected {n}")
    out = {k: [] for k in ("prompt", "chosen", "rejected", "ref_chosen_logps", "ref_rejected_logps",
                           "chosen_reward", "rejected_reward")}
    for i in range(n):
        a_wins = float(rewards_a[i]) >= float(rewards_b[i])
        c, r = (0, 1) if a_wins else (1, 0)
        comps, refs, rews = ((completions_a[i], completions_b[i]), (ref_logps_a[i], ref_logps_b[i]),
                             (rewards_a[i], rewards_b[i]))
        out["prompt"].append(prompts[i])
        out["chosen"].append(comps[c]); out["rejected"].append(comps[r])
        out["ref_chosen_logps"].append(float(refs[c])); out["ref_rejected_logps"].append(float(refs[r]))
        out["chosen_reward"].append(float(rews[c])); out["rejected_reward"].append(float(rews[r]))
    return out


def to_dataset(table: dict):
    """``datasets.Dataset.from_dict(table)`` (raises ImportError with the install command if missing)."""
    return require_datasets().Dataset.from_dict(table)


def trl_self_reward(model, tokenizer, *, normalize: str = "sum", batch_size: int = 16):
    """A reward function with TRL's signature ``f(prompts, completions, **kwargs) -> list[float]`` returning
    the self-reward log π_base(c|p) (``normalize="mean"``: per token) under ``model`` (kept frozen).

    Conversational inputs (lists of ``{"role", "content"}`` messages) are rendered with the tokenizer's chat
    template (prompt with ``add_generation_prompt=True``; completion = its messages' contents joined).
    """
    from sharpsim.bridge._scoring import score_completions

    def self_reward(prompts, completions, **kwargs):
        ps = [p if isinstance(p, str) else tokenizer.apply_chat_template(p, tokenize=False,
                                                                           add_generation_prompt=True)
              for p in prompts]
        cs = [c if isinstance(c, str) else "".join(m["content"] for m in c) for c in completions]
        s = score_completions(model, tokenizer, ps, cs, normalize=normalize, batch_size=batch_size,
                              add_special_tokens=all(isinstance(p, str) for p in prompts))
        return [float(v) for v in s.values]

    self_reward.__name__ = f"self_reward_logprob_{normalize}"
    return self_reward
