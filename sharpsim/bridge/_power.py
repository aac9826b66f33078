"""Power sampling on a real causal LM: Metropolis–Hastings over suffixes targeting π^α (issue 15).

The bridge counterpart of :func:`sharpsim.power_mh_sample` (Karan & Du 2025, "Reasoning with Sampling: Your
Base Model is Smarter Than You Think", arXiv:2510.14901, Algorithm 1 at a fixed token budget). The target is
the power law of completions of at most ``max_new_tokens`` tokens,

    π^α(y|x) ∝ π(y|x)^α,   π(y|x) = Π_t π(y_t | x, y_<t),

where a completion ends at (and includes) its first EOS or is cut at ``max_new_tokens`` tokens (the law of
plain generation with that budget). With α = 1 + 1/β this is the paper's KL-regularised optimum π^{1+1/β}
(``docs/power.md``).

One MH step per chain, current completion y of length L (EOS included):

1. pick t uniformly in {0, …, L−1};
2. propose y' = y_{<t} · y'_{t:}, the suffix drawn token by token at temperature 1/α
   (q_α(v|·) ∝ π(v|·)^α, no top-k / top-p) with ``generate``, at most ``max_new_tokens − t`` new tokens;
3. accept with probability

       min(1, [π(y')^α · q_α(y_{t:} | x, y_{<t}) · (1/L')] / [π(y)^α · q_α(y'_{t:} | x, y_{<t}) · (1/L)]),

   the Hastings ratio of the move (the 1/L, 1/L' terms are the probabilities of choosing t from each side; the
   reverse move from y' picks the same t with probability 1/L'). log π and log q_α of every proposed token come
   from ONE teacher-forced float32 forward pass over the proposal (:func:`completion_token_logps_tempered`),
   never from ``generate``'s processed scores (``design.md`` §5).

Cost, counted per chain in ``model_calls``: next-token distributions sampled from, as in :mod:`sharpsim.power`
— the initial temperature-1/α completion costs its length L₀, each proposal L' − t (its new tokens). Plain
sampling of one completion costs its length, so best-of-N with N samples costs Σ lengths. Each proposal is
also scored once by teacher forcing (``scored_tokens``: its L' tokens); ``forward_passes`` counts the model's
actual (batched) forward calls, generation steps and scoring passes together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from sharpsim._validation import check_count, check_float, check_prompts
from sharpsim.bridge._deps import require_torch, require_transformers
from sharpsim.bridge._runtime import bridge_threads
from sharpsim.bridge._sampling import Samples
from sharpsim.bridge._scoring import (
    completion_mask_from_ids,
    completion_token_logps_tempered,
    generation_prompts,
    model_device,
)

torch = require_torch()
transformers = require_transformers()

__all__ = ["PowerMHSamples", "power_mh_sample", "mh_log_acceptance"]


@dataclasses.dataclass
class PowerMHSamples:
    """Output of :func:`power_mh_sample`: the chains' final completions and what the run cost.

    ``samples``: a :class:`~sharpsim.bridge.Samples` with ``N = num_chains`` rows per prompt (rows ``i·N …``
    belong to prompt i), ``token_logps`` = teacher-forced float32 log π of each token, so ``samples.logps`` is
    log π(y|x) of the final state. ``initial_logps`` / ``initial_lengths``: log π and length L₀ of each chain's
    temperature-1/α start. Per chain
    (``[B·N]``): ``model_calls`` (next-token distributions sampled from: L₀ + Σ_steps (L' − t)),
    ``scored_tokens`` (tokens teacher-forced: L₀ + Σ_steps L'), ``accepted`` (accepted proposals). Per step and
    chain (``[num_steps, B·N]``): ``positions`` (t), ``proposal_lengths`` (L'), ``log_accept`` (log of the
    Hastings ratio, before the min with 1), ``accepted_steps``. ``forward_passes``: the model's forward calls in
    the run (batched; generation steps plus scoring passes), counted by a forward hook.
    """

    samples: Samples
    initial_logps: "torch.Tensor"
    initial_lengths: "torch.Tensor"
    model_calls: "torch.Tensor"
    scored_tokens: "torch.Tensor"
    accepted: "torch.Tensor"
    positions: "torch.Tensor"
    proposal_lengths: "torch.Tensor"
    log_accept: "torch.Tensor"
    accepted_steps: "torch.Tensor"
    forward_passes: int
    alpha: float
    num_steps: int

    @property
    def logps(self) -> "torch.Tensor":
        """``[B·N]`` float32 log π(y|x) of each chain's final completion."""
        return self.samples.logps

    @property
    def acceptance_rate(self) -> float:
        """Accepted proposals / proposals, over all chains (NaN when ``num_steps = 0``)."""
        n = self.accepted_steps.numel()
        return float(self.accepted_steps.float().sum()) / n if n else float("nan")


def mh_log_acceptance(alpha: float, lp_cur, lq_cur, len_cur, lp_new, lq_new, len_new, t, *,
                      proposal_correction: bool = True, length_correction: bool = True):
    """log of the Hastings ratio of a suffix move y → y' from position ``t`` (broadcast over rows).

    ``lp_*`` / ``lq_*``: ``[R, T]`` per-token log π and log q_α (0 outside the completion), ``len_*``: ``[R]``
    completion lengths, ``t``: ``[R]``. Returns α Σ_{s≥t}(log π'_s − log π_s) + Σ_{s≥t}(log q_s − log q'_s)
    + log L − log L'. The keyword switches drop the proposal terms (a symmetric-proposal ratio) or the position
    terms: deliberately wrong samplers, used by the tests to show the law test can fail.
    """
    T = lp_cur.shape[-1]
    suffix = torch.arange(T, device=lp_cur.device)[None, :] >= t[:, None]
    zero = torch.zeros((), dtype=lp_cur.dtype, device=lp_cur.device)
    log_a = alpha * torch.where(suffix, lp_new - lp_cur, zero).sum(-1)
    if proposal_correction:
        log_a = log_a + torch.where(suffix, lq_cur - lq_new, zero).sum(-1)
    if length_correction:
        log_a = log_a + torch.log(len_cur.to(lp_cur.dtype)) - torch.log(len_new.to(lp_cur.dtype))
    return log_a


def power_mh_sample(
    model,
    tokenizer,
    prompts: Sequence[str],
    alpha: float,
    num_steps: int,
    *,
    num_chains: int = 1,
    max_new_tokens: int = 32,
    seed: int = 0,
    max_batch_rows: int = 64,
    add_special_tokens: bool = True,
    _proposal_correction: bool = True,
    _length_correction: bool = True,
) -> PowerMHSamples:
    """Metropolis–Hastings chains targeting π^α(·|x) on a Hugging Face causal LM (see the module docstring).

    ``num_chains`` independent chains per prompt, each started from a temperature-1/α completion and run for
    ``num_steps`` suffix-resampling steps (``num_steps = 0`` returns the temperature-1/α samples). All chains
    advance together: one batched ``generate`` and one batched teacher-forced scoring pass per step, in chunks of
    ``max_batch_rows`` rows. ``seed`` seeds torch's global RNG (generation, positions and acceptance draws), so a
    run is reproducible on one machine. Returns a :class:`PowerMHSamples`.

    >>> from sharpsim.bridge import char_tokenizer, tiny_gpt2
    >>> tok = char_tokenizer("ab", pad="$"); model = tiny_gpt2(tok, seed=0)
    >>> r = power_mh_sample(model, tok, ["a", "b"], alpha=4.0, num_steps=3, num_chains=2, max_new_tokens=3)
    >>> r.samples.completion_ids.shape[0], r.positions.shape, bool((r.model_calls >= 1).all())
    (4, torch.Size([3, 4]), True)
    """
    alpha = check_float("alpha", alpha, low=0.0, hint="alpha is the power of π^α; alpha=1 samples π itself")
    num_steps = check_count("num_steps", num_steps, minimum=0, hint="num_steps=0 returns the temperature-1/α start")
    C = check_count("num_chains", num_chains)
    H = check_count("max_new_tokens", max_new_tokens)
    check_count("seed", seed, minimum=0)
    check_count("max_batch_rows", max_batch_rows)
    prompts = check_prompts(prompts)
    _, prompt_ids, prompt_mask, pad_id, eos_ids = generation_prompts(model, tokenizer, prompts, H,
                                                                     add_special_tokens=add_special_tokens)
    dev = model_device(model)
    row_pids, row_pmask = prompt_ids.repeat_interleave(C, 0), prompt_mask.repeat_interleave(C, 0)  # prompt-major
    R = row_pids.shape[0]

    calls = [0]
    hook = model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    try:
        with torch.inference_mode():
            zeros_t = torch.zeros(R, dtype=torch.long, device=dev)
            empty = torch.full((R, H), pad_id, dtype=torch.long, device=dev)
            y, ymask, L = _propose(model, row_pids, row_pmask, empty, zeros_t, H, alpha, pad_id, eos_ids, max_batch_rows)
            lp, lq = _score(model, row_pids, row_pmask, y, ymask, alpha, max_batch_rows)
            initial_logps, initial_lengths = lp.sum(-1).cpu(), L.cpu()
            model_calls = L.clone()
            scored = L.clone()
            n_acc = torch.zeros(R, dtype=torch.long, device=dev)
            traj_t, traj_len, traj_loga, traj_acc = [], [], [], []
            for _ in range(num_steps):
                t = torch.floor(torch.rand(R, device=dev) * L).long().clamp(max=L - 1)
                y2, ymask2, L2 = _propose(model, row_pids, row_pmask, y, t, H, alpha, pad_id, eos_ids, max_batch_rows)
                lp2, lq2 = _score(model, row_pids, row_pmask, y2, ymask2, alpha, max_batch_rows)
                log_a = mh_log_acceptance(alpha, lp, lq, L, lp2, lq2, L2, t,
                                          proposal_correction=_proposal_correction,
                                          length_correction=_length_correction)
                ok = torch.log(torch.rand(R, device=dev)) < log_a
                model_calls += L2 - t
                scored += L2
                n_acc += ok.long()
                sel = ok[:, None]
                y, ymask = torch.where(sel, y2, y), torch.where(sel, ymask2, ymask)
                lp, lq, L = torch.where(sel, lp2, lp), torch.where(sel, lq2, lq), torch.where(ok, L2, L)
                traj_t.append(t.cpu())
                traj_len.append(L2.cpu())
                traj_loga.append(log_a.cpu())
                traj_acc.append(ok.cpu())
    finally:
        hook.remove()
        model.train(was_training)
    truncated = ~_has_eos(y, ymask, eos_ids)
    samples = Samples(prompt_ids, prompt_mask, y, ymask, L, truncated, C, list(prompts), lp.masked_fill(~ymask, 0.0))

    def stack(xs, dtype):
        return torch.stack(xs) if xs else torch.zeros((0, R), dtype=dtype)

    return PowerMHSamples(samples=samples, initial_logps=initial_logps, initial_lengths=initial_lengths,
                          model_calls=model_calls.cpu(),
                          scored_tokens=scored.cpu(), accepted=n_acc.cpu(), positions=stack(traj_t, torch.long),
                          proposal_lengths=stack(traj_len, torch.long), log_accept=stack(traj_loga, torch.float32),
                          accepted_steps=stack(traj_acc, torch.bool), forward_passes=calls[0], alpha=alpha,
                          num_steps=num_steps)


def _has_eos(ids, mask, eos_ids):
    last = (mask.long().sum(-1) - 1).clamp(min=0)
    tok = ids.gather(1, last[:, None]).squeeze(1)
    is_eos = torch.zeros_like(tok, dtype=torch.bool)
    for e in eos_ids:
        is_eos |= tok == e
    return is_eos & mask.any(-1)


def _generation_config(alpha: float, max_new: int, pad_id: int, eos_ids) -> "transformers.GenerationConfig":
    """A clean config (the model's own ``generation_config`` may carry repetition penalties, top-k, …): pure
    sampling at temperature 1/α, so the proposal law is exactly q_α."""
    return transformers.GenerationConfig(do_sample=True, temperature=1.0 / alpha, top_k=0, top_p=1.0,
                                         max_new_tokens=max_new, pad_token_id=pad_id, eos_token_id=list(eos_ids))


def _propose(model, row_pids, row_pmask, y, t, H, alpha, pad_id, eos_ids, max_batch_rows):
    """y'_r = y_r[:t_r] · (≤ H − t_r tokens drawn at temperature 1/α); returns ``(ids [R, H], mask, lengths)``.

    Vectorised: the prefix x · y_{<t} of every row is formed by right-aligning the real tokens of
    ``[prompt | y]`` (a stable sort on the mask), i.e. left padding, as ``generate`` needs.
    """
    R = y.shape[0]
    dev = y.device
    cols = torch.arange(H, device=dev)[None, :]
    ids = torch.cat([row_pids, y], dim=1)
    keep = torch.cat([row_pmask.bool(), cols < t[:, None]], dim=1)
    order = torch.argsort(keep.to(torch.int8), dim=1, stable=True)  # padding first, real tokens in order
    ids, keep = ids.gather(1, order), keep.gather(1, order)
    ids = ids.masked_fill(~keep, pad_id)
    new = torch.full((R, 2 * H), pad_id, dtype=torch.long, device=dev)
    valid = torch.zeros((R, 2 * H), dtype=torch.bool, device=dev)
    with bridge_threads(model, "generation"):
        for start in range(0, R, max_batch_rows):
            sl = slice(start, min(start + max_batch_rows, R))
            c_ids, c_keep = ids[sl], keep[sl]
            first = int((~c_keep).all(0).long().cumprod(0).sum())  # drop all-padding leading columns
            c_ids, c_keep = c_ids[:, first:], c_keep[:, first:]
            budget = H - int(t[sl].min())
            out = model.generate(input_ids=c_ids, attention_mask=c_keep.long(),
                                 generation_config=_generation_config(alpha, budget, pad_id, eos_ids))
            gen = out[:, c_ids.shape[1]:]
            G = gen.shape[1]
            pos = t[sl, None] + torch.arange(G, device=dev)[None, :]  # where generated token j lands
            new[sl].scatter_(1, pos, gen)
            valid[sl].scatter_(1, pos, pos < H)
    new, valid = new[:, :H], valid[:, :H] | (cols < t[:, None])
    ids = torch.where(cols < t[:, None], y, new)
    mask, lengths, _ = completion_mask_from_ids(ids, eos_ids, valid)
    return ids.masked_fill(~mask, pad_id), mask, lengths


def _score(model, row_pids, row_pmask, ids, mask, alpha, batch):
    """Teacher-forced float32 per-token (log π, log q_α) of every row, in chunks."""
    lps, lqs = [], []
    with bridge_threads(model, "scoring"):
        for start in range(0, ids.shape[0], batch):
            sl = slice(start, start + batch)
            lp, lq = completion_token_logps_tempered(model, row_pids[sl], row_pmask[sl], ids[sl], mask[sl], alpha)
            lps.append(lp)
            lqs.append(lq)
    return torch.cat(lps), torch.cat(lqs)
