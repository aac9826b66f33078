"""Interop with the Hugging Face ecosystem: ``datasets``-compatible tables and a TRL-style reward callable.

Tables are plain ``dict[str, list]`` (column → values), which ``datasets.Dataset.from_dict`` accepts as is;
:func:`to_dataset` does that conversion when ``datasets`` is installed.
"""

from __future__ import annotations

from collections.abc import Sequence

from sharpsim.bridge._deps import require_datasets

__all__ = ["dpo_pairs", "export_completions", "sft_rows", "to_dataset", "to_trl", "trl_self_reward"]

# What TRL (checked against 1.16) does to a non-conversational prompt-completion row, in both SFTTrainer and
# DPOTrainer: it appends ``tokenizer.eos_token`` to the completion text unless the text already ends with it, then
# tokenizes ``prompt`` and ``prompt + completion`` separately (``tokenizer(text)``, special tokens added) and takes the
# completion to start where the two token lists diverge. TRL always computes its own reference log-probs
# (``precompute_ref_log_probs=True`` adds columns named ``ref_chosen_logps`` / ``ref_rejected_logps`` and refuses a
# dataset that already has them), so the bridge's log-prob columns are named ``base_*`` and never collide.


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def export_completions(model, tokenizer, prompts: Sequence[str], prompt_ids: Sequence[Sequence[int]],
                       completion_ids: Sequence[Sequence[int]], scored_logps: Sequence[float] | None = None, *,
                       batch_size: int = 16) -> dict:
    """Turn sampled completions (token ids, EOS included where the sample ended) into rows that round-trip
    through TRL's tokenization. Returns a dict of per-row lists:

    * ``text``: the completion decoded **without** dropping special tokens (``skip_special_tokens=False``: a pad
      or unk token the model sampled stays in the text, so the text re-tokenises to the scored ids), with the
      final ``tokenizer.eos_token`` left off (TRL appends it back);
    * ``base_logps``: log π(c|p) under ``model`` (π_base, float32 teacher forcing) of exactly the token sequence
      TRL builds from the row: TRL's prompt tokens and its completion tokens *including the EOS it appends*. For a
      completion that ended with the tokenizer's EOS this is the sampled sequence's score (``scored_logps`` is
      reused); a truncated completion gets the extra EOS term (the old export left it out: up to 6.9 nats off);
    * ``truncated``: the sample has no EOS (cut at ``max_new_tokens``; TRL would teach the model to stop there);
    * ``exact``: TRL's tokens are the sampled tokens (+ the appended EOS). False when the decoded text does not
      re-tokenise to the sampled ids (tokens merging across the prompt/completion boundary, an ``<unk>`` the
      tokenizer cannot reproduce from text, a sample ended by a non-default EOS id …).

    ``prompt_ids[i]`` are the (unpadded) ids the completion was sampled after, tokenized as
    ``tokenizer(prompt)`` does. Rows with ``truncated`` or not ``exact`` are what :func:`to_trl` drops by default.
    """
    from sharpsim.bridge._scoring import pad_left, pad_right, resolve_special_ids, score_ids

    n = len(prompts)
    if len(prompt_ids) != n or len(completion_ids) != n:
        raise ValueError(f"{n} prompts, {len(prompt_ids)} prompt id lists and {len(completion_ids)} completions")
    pad_id, eos_ids = resolve_special_ids(tokenizer, model)
    eos_id, eos_text = tokenizer.eos_token_id, tokenizer.eos_token
    if eos_id is None or eos_text is None:
        raise ValueError("the tokenizer has no eos_token: TRL appends tokenizer.eos_token to every completion")
    texts, truncated, exact, trl_p, trl_c = [], [], [], [], []
    for prompt, p_ids, c_ids in zip(prompts, prompt_ids, completion_ids):
        p_ids, c_ids = list(p_ids), list(c_ids)
        ended = bool(c_ids) and c_ids[-1] in eos_ids
        body = c_ids[:-1] if ended and c_ids[-1] == eos_id else c_ids
        text = tokenizer.decode(body, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        trl_text = text if text.endswith(eos_text) else text + eos_text
        tp = list(tokenizer(prompt)["input_ids"])
        full = list(tokenizer(prompt + trl_text)["input_ids"])
        cut = _common_prefix(tp, full)
        texts.append(text)
        truncated.append(not ended)
        exact.append(full[:cut] == p_ids and full[cut:] == body + [eos_id])
        trl_p.append(full[:cut])
        trl_c.append(full[cut:])
    logps = [None] * n
    redo = []
    for i in range(n):
        same = trl_p[i] == list(prompt_ids[i]) and trl_c[i] == list(completion_ids[i])
        if scored_logps is not None and same:
            logps[i] = float(scored_logps[i])
        else:
            redo.append(i)
    if redo:
        if any(not trl_p[i] for i in redo):
            raise ValueError("a prompt tokenizes to zero tokens under TRL's tokenization; log π(c|p) needs one")
        import torch

        dev = next(model.parameters()).device
        pi, pm = pad_left([trl_p[i] for i in redo], pad_id, dev)
        ci, cm = pad_right([trl_c[i] for i in redo], pad_id, dev)
        with torch.inference_mode():
            sc = score_ids(model, pi, pm, ci, cm, batch_size=batch_size)
        for j, i in enumerate(redo):
            logps[i] = float(sc.logps[j])
    return {"text": texts, "base_logps": logps, "truncated": truncated, "exact": exact}


def _flags(name, col, n):
    if col is None:
        return None
    if len(col) != n:
        raise ValueError(f"{name} has {len(col)} entries, expected {n}")
    return [bool(v) for v in col]


def sft_rows(prompts: Sequence[str], completions: Sequence[str], base_logps: Sequence[float] | None = None, *,
             truncated: Sequence[bool] | None = None, exact: Sequence[bool] | None = None) -> dict:
    """TRL's prompt-completion SFT format: ``{"prompt": [...], "completion": [...]}``, plus when given
    ``base_logps`` (log π_base of the row as TRL tokenizes it, EOS included: see :func:`export_completions`),
    ``truncated`` and ``exact``. Hand it to TRL through :func:`to_trl` (which drops the flagged rows and the extra
    columns)."""
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    out = {"prompt": list(prompts), "completion": list(completions)}
    if base_logps is not None:
        if len(base_logps) != len(prompts):
            raise ValueError(f"base_logps has {len(base_logps)} entries, expected {len(prompts)}")
        out["base_logps"] = [float(v) for v in base_logps]
    for name, col in (("truncated", truncated), ("exact", exact)):
        flags = _flags(name, col, len(prompts))
        if flags is not None:
            out[name] = flags
    return out


def dpo_pairs(prompts, completions_a, completions_b, rewards_a, rewards_b, base_logps_a, base_logps_b, *,
              truncated_a=None, truncated_b=None, exact_a=None, exact_b=None) -> dict:
    """DPO pairs ordered by self-reward (higher is ``chosen``; ties keep ``a``): columns ``prompt, chosen,
    rejected`` (TRL's preference format), ``base_chosen_logps, base_rejected_logps`` (log π_base of each side as
    TRL tokenizes it: these equal the ``ref_chosen_logps`` / ``ref_rejected_logps`` TRL computes itself with π_base
    as reference, on rows marked exact), ``chosen_reward, rejected_reward``, and when given
    ``chosen_truncated, rejected_truncated`` and ``exact`` (both sides exact). Hand it to TRL through
    :func:`to_trl`."""
    n = len(prompts)
    for name, col in (("completions_b", completions_b), ("rewards_a", rewards_a), ("rewards_b", rewards_b),
                      ("base_logps_a", base_logps_a), ("base_logps_b", base_logps_b),
                      ("completions_a", completions_a)):
        if len(col) != n:
            raise ValueError(f"{name} has {len(col)} entries, expected {n}")
    ta, tb = _flags("truncated_a", truncated_a, n), _flags("truncated_b", truncated_b, n)
    ea, eb = _flags("exact_a", exact_a, n), _flags("exact_b", exact_b, n)
    if (ta is None) != (tb is None) or (ea is None) != (eb is None):
        raise ValueError("give truncated_a with truncated_b and exact_a with exact_b")
    out = {k: [] for k in ("prompt", "chosen", "rejected", "base_chosen_logps", "base_rejected_logps",
                           "chosen_reward", "rejected_reward")}
    if ta is not None:
        out["chosen_truncated"], out["rejected_truncated"] = [], []
    if ea is not None:
        out["exact"] = []
    for i in range(n):
        a_wins = float(rewards_a[i]) >= float(rewards_b[i])
        c, r = (0, 1) if a_wins else (1, 0)
        comps, refs, rews = ((completions_a[i], completions_b[i]), (base_logps_a[i], base_logps_b[i]),
                             (rewards_a[i], rewards_b[i]))
        out["prompt"].append(prompts[i])
        out["chosen"].append(comps[c]); out["rejected"].append(comps[r])
        out["base_chosen_logps"].append(float(refs[c])); out["base_rejected_logps"].append(float(refs[r]))
        out["chosen_reward"].append(float(rews[c])); out["rejected_reward"].append(float(rews[r]))
        if ta is not None:
            tr = (ta[i], tb[i])
            out["chosen_truncated"].append(tr[c]); out["rejected_truncated"].append(tr[r])
        if ea is not None:
            out["exact"].append(ea[i] and eb[i])
    return out


def to_trl(table: dict, *, drop_truncated: bool = True, drop_inexact: bool = True) -> dict:
    """The columns TRL's trainers read, from an :func:`sft_rows` / :func:`dpo_pairs` table (e.g.
    ``SharpeningResult.data``): ``prompt, completion`` or ``prompt, chosen, rejected``.

    By default rows with a truncated completion (TRL would append EOS and teach the model to stop at the cut) and
    rows whose text does not re-tokenise to the sampled ids are dropped. The ``base_*`` log-prob columns are left
    out: TRL computes its own reference log-probs (``precompute_ref_log_probs=True`` refuses a dataset that has
    them). Then ``datasets.Dataset.from_dict(to_trl(table))`` (or :func:`to_dataset`) goes to
    ``SFTTrainer(train_dataset=…)`` / ``DPOTrainer(train_dataset=…)``; see docs/bridge.md.
    """
    if "chosen" in table and "rejected" in table:
        cols = ("prompt", "chosen", "rejected")
        trunc = [table[k] for k in ("chosen_truncated", "rejected_truncated") if k in table]
    elif "completion" in table:
        cols = ("prompt", "completion")
        trunc = [table["truncated"]] if "truncated" in table else []
    else:
        raise ValueError(f"not an SFT or DPO table (columns {sorted(table)}); build it with sft_rows or dpo_pairs")
    n = len(table["prompt"])
    keep = [True] * n
    if drop_truncated:
        for col in trunc:
            keep = [k and not t for k, t in zip(keep, col)]
    if drop_inexact and "exact" in table:
        keep = [k and e for k, e in zip(keep, table["exact"])]
    return {c: [v for v, k in zip(table[c], keep) if k] for c in cols}


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
