"""Batched sampling of N completions per prompt, chunked: the bridge's own decoding loop (shared prompt
prefill, rows leave the batch at EOS, inverse-CDF draws; :func:`_decode`) for pure temperature sampling and
greedy decoding, ``generate(num_return_sequences=N)`` otherwise.

Rows are grouped per prompt (rows ``i·N … i·N+N−1`` belong to prompt ``i``), as ``generate`` returns them.
The completion mask runs up to and including the first EOS (correct when pad == eos), and every completion
carries its length and a ``truncated`` flag (no EOS within ``max_new_tokens``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from sharpsim._validation import check_count, check_float, check_prompts
from sharpsim.bridge._deps import require_torch
from sharpsim.bridge._runtime import bridge_threads
from sharpsim.bridge._scoring import (
    completion_mask_from_ids,
    forward_kwargs,
    generation_prompts,
    model_device,
    output_cache,
    shared_prefix_forward,
)

torch = require_torch()

__all__ = ["Samples", "check_num_samples", "sample_completions"]


def check_num_samples(N, name: str = "N") -> int:
    if isinstance(N, bool) or not isinstance(N, int) or N < 1:
        raise ValueError(f"{name} (number of samples per prompt) must be an integer >= 1, got {N!r}")
    return N


@dataclasses.dataclass
class Samples:
    """N sampled completions for each of B prompts (tensors on the model's device).

    ``prompt_ids``/``prompt_mask``: ``[B, P]`` left-padded. ``completion_ids``/``completion_mask``:
    ``[B·N, T]`` right-padded, mask up to and including the first EOS. ``lengths``/``truncated``: ``[B·N]``.
    ``token_logps`` (only with ``sample_completions(..., return_logps=True)``): ``[B·N, T]`` float32
    log π(token | prefix) from the generation pass's raw temperature-1 logits, 0 outside the mask; ``logps`` is
    their sum (equal to teacher-forced :func:`~sharpsim.bridge.score_ids`, tested).
    """

    prompt_ids: "torch.Tensor"
    prompt_mask: "torch.Tensor"
    completion_ids: "torch.Tensor"
    completion_mask: "torch.Tensor"
    lengths: "torch.Tensor"
    truncated: "torch.Tensor"
    N: int
    prompts: list[str] | None = None
    token_logps: "torch.Tensor | None" = None

    @property
    def logps(self) -> "torch.Tensor":
        """``[B·N]`` summed log π(y|x) of each completion (needs ``return_logps=True`` when sampling)."""
        if self.token_logps is None:
            raise ValueError("these samples carry no log-probs: sample with return_logps=True, or use score_ids")
        return self.token_logps.sum(-1)

    @property
    def num_prompts(self) -> int:
        return int(self.prompt_ids.shape[0])

    @property
    def prompt_index(self) -> "torch.Tensor":
        """``[B·N]``: the prompt row of each completion row."""
        return torch.arange(self.num_prompts).repeat_interleave(self.N)

    def grouped(self, x):
        """Reshape a ``[B·N, ...]`` tensor to ``[B, N, ...]``."""
        return x.reshape(self.num_prompts, self.N, *x.shape[1:])

    def texts(self, tokenizer, *, skip_special_tokens: bool = True) -> list[str]:
        """Decoded completions (only the masked tokens, so padding never leaks in)."""
        ids = self.completion_ids.cpu().tolist()
        mask = self.completion_mask.cpu().tolist()
        rows = [tuple(t for t, m in zip(r, mr) if m) for r, mr in zip(ids, mask)]
        text = {r: tokenizer.decode(list(r), skip_special_tokens=skip_special_tokens) for r in dict.fromkeys(rows)}
        return [text[r] for r in rows]  # each distinct completion decoded once

    def select(self, rows: "torch.Tensor") -> "Samples":
        """A ``Samples`` with one completion per prompt: ``rows[i]`` in ``[0, N)`` picks prompt i's sample."""
        rows = torch.as_tensor(rows, device=self.completion_ids.device)
        flat = torch.arange(self.num_prompts, device=rows.device) * self.N + rows
        return Samples(self.prompt_ids, self.prompt_mask, self.completion_ids[flat], self.completion_mask[flat],
                       self.lengths[flat.to(self.lengths.device)], self.truncated[flat.to(self.truncated.device)],
                       1, self.prompts)


def sample_completions(
    model,
    tokenizer,
    prompts: Sequence[str],
    N: int,
    *,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    do_sample: bool = True,
    max_batch_rows: int = 64,
    seed: int | None = None,
    add_special_tokens: bool = True,
    share_prompt_cache: bool = True,
    return_logps: bool = False,
) -> Samples:
    """Draw ``N`` completions per prompt (pure temperature sampling by default: no top-k/top-p).

    Generation runs in chunks of at most ``max_batch_rows`` rows (prompts × samples) to bound memory; a prompt
    whose N exceeds the chunk is split over several calls. ``do_sample=False`` gives greedy decoding (use
    ``N=1``). ``seed`` seeds torch's global RNG before sampling.

    ``share_prompt_cache=True`` (with top_k=0, top_p=1) decodes with the bridge's own loop (:func:`_decode`):
    each prompt's KV cache is pre-filled once and repeated for its N rows (with long prompts this divides the
    pre-fill cost by N), rows that emitted EOS leave the batch, and tokens are drawn by inverting the CDF. The
    sampling law is that of ``generate`` (tested against it); the draws for a seed differ. It falls back to
    ``generate`` when the model's cache does not support repeating and selecting rows, and
    ``share_prompt_cache=False`` always uses ``generate``.

    ``return_logps=True`` also returns each sampled token's log-probability, taken from the generation pass's raw
    (unprocessed) logits in float32: with temperature 1 and no top-k / top-p these ARE log π(y_t | x, y_<t), so no
    second (teacher-forcing) pass is needed. Also with ``do_sample=False``: the greedy tokens' log π from the same raw
    logits. Refused for other temperatures or filters, whose logits are not π's.
    """
    check_num_samples(N)
    prompts = check_prompts(prompts)
    check_count("max_new_tokens", max_new_tokens)
    check_count("max_batch_rows", max_batch_rows)
    if seed is not None:
        check_count("seed", seed, minimum=0, hint="or seed=None to leave torch's RNG as it is")
    if do_sample:
        check_float("temperature", temperature, low=0.0,
                    hint="temperature=0 is greedy decoding: pass do_sample=False (with N=1) instead")
        check_count("top_k", top_k, minimum=0, hint="top_k=0 turns top-k filtering off")
        check_float("top_p", top_p, low=0.0, high=1.0, hint="top_p=1.0 turns nucleus filtering off")
    if return_logps and do_sample and not (float(temperature) == 1.0 and top_k == 0 and float(top_p) == 1.0):
        raise ValueError("return_logps=True needs pure sampling from π (temperature=1.0, top_k=0, top_p=1.0) or greedy "
                         "decoding (do_sample=False); score other samples with score_ids")
    p_ids, prompt_ids, prompt_mask, pad_id, eos_ids = generation_prompts(
        model, tokenizer, prompts, max_new_tokens, add_special_tokens=add_special_tokens)
    dev = model_device(model)
    if seed is not None:
        torch.manual_seed(seed)
    gen_kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=pad_id, eos_token_id=list(eos_ids),
                      do_sample=do_sample)
    if return_logps:
        gen_kwargs.update(output_logits=True, return_dict_in_generate=True)
    if do_sample:
        gen_kwargs.update(temperature=float(temperature), top_k=top_k, top_p=float(top_p))
    else:
        gen_kwargs.update(temperature=None, top_k=None, top_p=None)

    pieces: list[torch.Tensor] = []  # completion ids, prompt-major, each [rows, T_chunk]
    lp_pieces: list[torch.Tensor] = []  # with return_logps: log π of each generated token, [rows, T_chunk]
    per_chunk = max(1, max_batch_rows // N)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), bridge_threads(model, "generation"):
            for start in range(0, len(p_ids), per_chunk):
                sl = slice(start, min(start + per_chunk, len(p_ids)))
                ids, mask = _trim_left(prompt_ids[sl], prompt_mask[sl])
                remaining = N
                while remaining > 0:
                    k = min(remaining, max_batch_rows) if ids.shape[0] == 1 else remaining
                    own = None
                    if share_prompt_cache and top_k == 0 and float(top_p) == 1.0:
                        own = _decode(model, ids, mask, k, max_new_tokens=max_new_tokens, eos_ids=eos_ids,
                                      pad_id=pad_id, temperature=float(temperature) if do_sample else None,
                                      want_logps=return_logps)
                    if own is not None:
                        pieces.append(own[0])
                        if return_logps:
                            lp_pieces.append(own[1])
                        remaining -= k
                        continue
                    if do_sample:
                        out = model.generate(input_ids=ids, attention_mask=mask.long(), num_return_sequences=k,
                                             **gen_kwargs)
                    else:  # generate refuses num_return_sequences > 1 for greedy: repeat rows ourselves
                        out = model.generate(input_ids=ids.repeat_interleave(k, 0),
                                             attention_mask=mask.long().repeat_interleave(k, 0), **gen_kwargs)
                    if return_logps:
                        seq = out.sequences[:, ids.shape[1]:]
                        steps = torch.stack([x.float() for x in out.logits], 1)[:, : seq.shape[1]]
                        lp_pieces.append(torch.log_softmax(steps, -1).gather(-1, seq[..., None]).squeeze(-1))
                        pieces.append(seq)
                    else:
                        pieces.append(out[:, ids.shape[1]:])
                    remaining -= k
    finally:
        model.train(was_training)
    width = max(p.shape[1] for p in pieces)
    completion_ids = torch.full((sum(p.shape[0] for p in pieces), width), pad_id, dtype=torch.long, device=dev)
    valid = torch.zeros_like(completion_ids, dtype=torch.bool)
    row = 0
    for p in pieces:
        completion_ids[row: row + p.shape[0], : p.shape[1]] = p
        valid[row: row + p.shape[0], : p.shape[1]] = True
        row += p.shape[0]
    completion_mask, lengths, truncated = completion_mask_from_ids(completion_ids, eos_ids, valid)
    token_logps = None
    if return_logps:
        token_logps = torch.zeros(completion_ids.shape, dtype=torch.float32, device=dev)
        row = 0
        for lp in lp_pieces:
            token_logps[row: row + lp.shape[0], : lp.shape[1]] = lp
            row += lp.shape[0]
        token_logps = token_logps.masked_fill(~completion_mask.bool(), 0.0)
    return Samples(prompt_ids, prompt_mask, completion_ids, completion_mask, lengths, truncated, N,
                   list(prompts), token_logps)


_CACHE_FALLBACK: set[str] = set()


def _decode(model, ids, mask, k: int, *, max_new_tokens: int, eos_ids, pad_id: int, temperature: float | None,
            want_logps: bool):
    """The bridge's own decoding loop for k completions of each row of ``ids`` (prompt-major), or ``None`` when
    the model's KV cache cannot be repeated and row-selected (then the caller uses ``generate``).

    Same law as ``generate(do_sample=True, temperature=t, top_k=0, top_p=1)`` (or greedy when ``temperature`` is
    None), cheaper on CPU in three ways: the prompt is pre-filled once per row and its cache repeated k times;
    rows that emitted EOS leave the batch (their cache rows are dropped: no forward pass is spent on padding);
    a token is drawn by inverting the float64 CDF with one uniform per row (``torch.multinomial`` over a
    49k-token vocabulary cost more than a transformer layer at 128 rows). Log-probs are float32 log-softmax of
    the raw logits at the drawn token (= teacher forcing, tested). Returns ``(tokens [R, T], logps [R, T] |
    None)`` with pad after each row's EOS, T = the number of steps taken.
    """
    if type(model).__name__ in _CACHE_FALLBACK:
        return None
    last, cache_kw = forward_kwargs(model)
    lens = mask.long().sum(-1)
    try:
        out, attn = shared_prefix_forward(model, ids, mask, max_shared=int(lens.min()) - 1, cache_kw=cache_kw,
                                          use_cache=True, **last)
        cache = output_cache(out)
        if cache is None or not (hasattr(cache, "batch_repeat_interleave") and hasattr(cache, "batch_select_indices")):
            raise TypeError("no repeatable cache")
        if k > 1:
            cache.batch_repeat_interleave(k)
    except (TypeError, ValueError, AttributeError, NotImplementedError):  # deliberate fallback: this model class
        _CACHE_FALLBACK.add(type(model).__name__)  # decodes with generate (which raises any genuine error again)
        return None
    logits = out.logits[:, -1].float().repeat_interleave(k, 0)  # [R, V]
    attn, nxt = attn.repeat_interleave(k, 0), lens[:, None].repeat_interleave(k, 0)  # next position
    R, dev = logits.shape[0], logits.device
    tokens = torch.full((R, max_new_tokens), pad_id, dtype=torch.long, device=dev)
    logps = torch.zeros((R, max_new_tokens), dtype=torch.float32, device=dev) if want_logps else None
    eos = torch.tensor(sorted(eos_ids), dtype=torch.long, device=dev)
    live = torch.arange(R, device=dev)  # the original row of each row still in the batch
    steps = 0
    for t in range(max_new_tokens):
        if temperature is None:
            tok = logits.argmax(-1)
        else:
            cdf = torch.softmax(logits.double() / temperature, -1).cumsum(-1)
            u = torch.rand((cdf.shape[0], 1), dtype=torch.float64, device=dev) * cdf[:, -1:]
            tok = torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=cdf.shape[1] - 1)
        tokens[live, t] = tok
        if want_logps:
            logps[live, t] = logits.gather(-1, tok[:, None]).squeeze(-1) - torch.logsumexp(logits, -1)
        steps = t + 1
        going = ~torch.isin(tok, eos)
        if t == max_new_tokens - 1 or not bool(going.any()):
            break
        if not bool(going.all()):
            keep = going.nonzero().squeeze(-1)
            cache.batch_select_indices(keep)
            live, tok, attn, nxt = live[keep], tok[keep], attn[keep], nxt[keep]
        attn = torch.cat([attn, attn.new_ones((attn.shape[0], 1))], 1)
        out = model(input_ids=tok[:, None], attention_mask=attn, position_ids=nxt, use_cache=True, **{cache_kw: cache})
        cache, logits, nxt = output_cache(out), out.logits[:, -1].float(), nxt + 1
    return tokens[:, :steps], (None if logps is None else logps[:, :steps])


def _trim_left(ids, mask):
    """Drop leading columns that are padding in every row of a chunk."""
    keep_from = int((~mask.bool()).all(0).long().cumprod(0).sum())
    return ids[:, keep_from:], mask[:, keep_from:]
