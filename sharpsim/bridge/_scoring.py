"""Teacher-forced scoring: log π(c | p) of completions, in float32, batched with left padding.

Traps handled here (``design.md`` §5):

* scores come from a fresh teacher-forced forward pass in float32, never from ``generate``'s processed scores
  (those include temperature / top-k warping);
* prompts are left-padded and the forward pass gets explicit ``position_ids = cumsum(attention_mask) - 1``
  (GPT-2's absolute positions are otherwise shifted by the padding);
* the completion mask covers tokens up to **and including** the first EOS, so a real EOS is kept even when
  ``pad == eos``; masked positions are zeroed with ``masked_fill`` (never by multiplying, ``-inf * 0 = nan``);
* every score travels with its token count (``lengths``), so summed and mean log-probs are both available.
"""

from __future__ import annotations

import dataclasses
import inspect
import weakref
from collections.abc import Sequence

from sharpsim._validation import check_count, check_prompts
from sharpsim.bridge._deps import require_torch, require_transformers
from sharpsim.bridge._runtime import bridge_threads, float32_forward

torch = require_torch()
require_transformers()

__all__ = [
    "Scores",
    "check_same_device",
    "completion_mask_from_ids",
    "completion_token_logps",
    "completion_token_logps_tempered",
    "context_length",
    "generation_prompts",
    "model_device",
    "pad_left",
    "pad_right",
    "resolve_special_ids",
    "score_completions",
    "score_ids",
    "stochastic_forward",
    "tokenize_prompts",
]


@dataclasses.dataclass
class Scores:
    """Per-completion scores. All tensors are 1-D with one entry per completion, on the CPU.

    ``logps``: summed log π(c|p) (float32); ``lengths``: number of scored completion tokens (EOS included when
    present); ``values``: the score asked for (``logps`` for ``normalize="sum"``, ``logps / lengths`` for
    ``"mean"``); ``truncated``: True where the completion has no EOS (``None`` when unknown).
    """

    values: "torch.Tensor"
    logps: "torch.Tensor"
    lengths: "torch.Tensor"
    normalize: str = "sum"
    truncated: "torch.Tensor | None" = None

    def __len__(self) -> int:
        return int(self.values.shape[0])


# --- small helpers ---------------------------------------------------------------------------------------


def model_device(model) -> "torch.device":
    """The device of the model's parameters (first parameter)."""
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


def check_same_device(model, **tensors) -> None:
    """Raise ``ValueError`` if any named tensor is not on the model's device."""
    dev = model_device(model)
    for name, t in tensors.items():
        if t is not None and t.device != dev:
            raise ValueError(
                f"model is on {dev} but {name} is on {t.device}; move the inputs with .to({str(dev)!r}) "
                "(or pass text, which the bridge tokenizes onto the model's device)"
            )


def context_length(model) -> int | None:
    """Maximum sequence length the model accepts (``max_position_embeddings`` / ``n_positions``), if known."""
    cfg = getattr(model, "config", None)
    for attr in ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length"):
        val = getattr(cfg, attr, None)
        if isinstance(val, int) and val > 0:
            return val
    return None


def resolve_special_ids(tokenizer, model=None) -> tuple[int, tuple[int, ...]]:
    """Return ``(pad_id, eos_ids)``.

    EOS ids are the tokenizer's ``eos_token_id`` plus any in the model's ``generation_config``. A missing pad
    token falls back to EOS (as ``generate`` does); a tokenizer with neither raises ``ValueError``.
    """
    eos: list[int] = []
    if getattr(tokenizer, "eos_token_id", None) is not None:
        eos.append(int(tokenizer.eos_token_id))
    gen_cfg = getattr(model, "generation_config", None)
    gen_eos = getattr(gen_cfg, "eos_token_id", None)
    if gen_eos is not None:
        for e in gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos]:
            if int(e) not in eos:
                eos.append(int(e))
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is None and not eos:
        raise ValueError(
            "the tokenizer has neither a pad token nor an EOS token; the bridge needs an EOS to end completions "
            "and a pad id for batching. Set one, e.g. tokenizer.add_special_tokens({'eos_token': '</s>'}) and "
            "resize the model's embeddings, or tokenizer.pad_token = tokenizer.eos_token"
        )
    if not eos:
        raise ValueError(
            "the tokenizer has no EOS token (tokenizer.eos_token_id is None and the model's generation_config "
            "names none): completions could never end. Set tokenizer.eos_token"
        )
    if pad is None:
        pad = eos[0]
    return int(pad), tuple(eos)


def _pad(seqs: Sequence[Sequence[int]], pad_id: int, device, left: bool):
    """One ``torch.tensor`` call on Python lists padded in Python (a per-row ``as_tensor`` copy cost ~1 ms per
    batch of 64 rows, a tenth of a tiny model's training step)."""
    seqs = [s.tolist() if hasattr(s, "tolist") else list(s) for s in seqs]
    width = max((len(s) for s in seqs), default=0)
    if left:
        ids = [[pad_id] * (width - len(s)) + s for s in seqs]
        mask = [[False] * (width - len(s)) + [True] * len(s) for s in seqs]
    else:
        ids = [s + [pad_id] * (width - len(s)) for s in seqs]
        mask = [[True] * len(s) + [False] * (width - len(s)) for s in seqs]
    shape = (len(seqs), width)
    ids_t = torch.tensor(ids, dtype=torch.long).reshape(shape)
    mask_t = torch.tensor(mask, dtype=torch.bool).reshape(shape)
    return ids_t.to(device), mask_t.to(device)


def pad_left(seqs: Sequence[Sequence[int]], pad_id: int, device=None):
    """Left-pad lists of ids: returns ``(ids [B, L] long, mask [B, L] bool)``."""
    return _pad(seqs, pad_id, device, left=True)


def pad_right(seqs: Sequence[Sequence[int]], pad_id: int, device=None):
    """Right-pad lists of ids: returns ``(ids [B, L] long, mask [B, L] bool)``."""
    return _pad(seqs, pad_id, device, left=False)


def completion_mask_from_ids(completion_ids, eos_ids: Sequence[int], valid=None):
    """Mask of a (right-aligned) completion up to **and including** its first EOS.

    Returns ``(mask [B, T] bool, lengths [B] long, truncated [B] bool)``; ``truncated`` is True where no EOS
    occurs (the completion was cut by ``max_new_tokens``). ``valid`` optionally marks positions that exist at all
    (e.g. when chunks of different widths were padded together); it must be a prefix mask.
    Works when pad == eos: only the *first* EOS counts, later ones are padding.
    """
    is_eos = torch.zeros_like(completion_ids, dtype=torch.bool)
    for e in eos_ids:
        is_eos |= completion_ids == e
    if valid is not None:
        is_eos &= valid
    # number of EOS tokens strictly before each position; a position is kept while that count is zero
    before = torch.cumsum(is_eos.long(), dim=-1) - is_eos.long()
    mask = before == 0
    if valid is not None:
        mask &= valid
    lengths = mask.sum(-1)
    truncated = ~is_eos.any(-1)
    return mask, lengths, truncated


def tokenize_prompts(tokenizer, prompts: Sequence[str], *, add_special_tokens: bool = True) -> list[list[int]]:
    """Token ids of each prompt text (no padding); raises on an empty list or an empty prompt."""
    prompts = check_prompts(prompts)
    ids = {p: list(tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"]) for p in dict.fromkeys(prompts)}
    out = [list(ids[p]) for p in prompts]  # each distinct text tokenised once (prompts repeat N-fold in studies)
    for i, ids in enumerate(out):
        if not ids:
            raise ValueError(f"prompt {i} tokenizes to zero tokens; log π(c|p) needs at least one prompt token")
    return out


def generation_prompts(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, *,
                       add_special_tokens: bool = True):
    """Prompts made ready for ``generate``: ``(p_ids, prompt_ids, prompt_mask, pad_id, eos_ids)`` — each prompt's
    token ids, the ``[B, P]`` left-padded ids and mask on the model's device, and the special ids — after checking
    that every prompt plus ``max_new_tokens`` fits the model's context (the samplers' one home of that check)."""
    pad_id, eos_ids = resolve_special_ids(tokenizer, model)
    p_ids = tokenize_prompts(tokenizer, prompts, add_special_tokens=add_special_tokens)
    ctx = context_length(model)
    if ctx is not None:
        for i, ids in enumerate(p_ids):
            if len(ids) + max_new_tokens > ctx:
                raise ValueError(
                    f"prompt {i} has {len(ids)} tokens; with max_new_tokens={max_new_tokens} that exceeds the "
                    f"model's context of {ctx} tokens. Shorten the prompt or lower max_new_tokens"
                )
    prompt_ids, prompt_mask = pad_left(p_ids, pad_id, model_device(model))
    return p_ids, prompt_ids, prompt_mask, pad_id, eos_ids


# --- the forward pass -------------------------------------------------------------------------------------


_DROPOUTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def stochastic_forward(model) -> bool:
    """Whether a forward pass of ``model`` in its current mode may differ between identical rows (active dropout)."""
    if not model.training:
        return False
    drops = _DROPOUTS.get(model)
    if drops is None:  # the module tree is walked once per model (a per-step walk cost ~2 ms on a tiny model)
        drops = _DROPOUTS[model] = [m for m in model.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    if any(m.p > 0 for m in drops):
        return True
    cfg = getattr(model, "config", None)
    return any(float(getattr(cfg, k, 0.0) or 0.0) > 0 for k in ("attention_dropout", "hidden_dropout",
                                                                  "dropout", "attn_pdrop", "resid_pdrop"))




#: rows of a batch that share at least this many leading tokens (a chat template, a few-shot example) have that
#: prefix run once (:func:`shared_prefix_forward`)
MIN_SHARED_PREFIX = 8


def shared_prefix_forward(model, ids, attn, *, max_shared: int, cache_kw: str = "past_key_values", **kwargs):
    """``model(input_ids=ids, attention_mask=attn, position_ids=…, **kwargs)`` with the rows' common start run once.

    Prompts of one task share a long start (SmolLM2's system turn and a one-shot example: 50–74 of 70–125
    tokens). When the rows' first ``c`` real tokens agree (``MIN_SHARED_PREFIX ≤ c ≤ max_shared``), they are run
    once (batch 1), the KV cache is repeated to the B rows (differentiably: training uses it too) and only the
    rest of each row is run on top of it. Left padding then sits between prefix and rest, masked, and every token
    keeps its position 0 … len−1, so the outputs equal the plain pass up to float rounding (tested against it).
    Returns ``(output, attention mask of prefix + rest)``; the output covers the last ``ids.shape[1] − m`` columns
    (m ≤ the first column after any row's prefix), so logits of the last ``k`` columns are those of the plain pass
    while every row keeps a real token outside the prefix (``max_shared`` < each row's length). Falls back to the
    plain pass when fewer tokens are shared or the model's cache cannot be repeated.
    """
    attn = attn.long()
    B, P = ids.shape
    first = (attn.cumsum(-1) == 0).long().sum(-1)  # leading padding of each row
    c = 0
    if B > 1 and max_shared >= MIN_SHARED_PREFIX:
        rows = [ids[i, int(first[i]): int(first[i]) + max_shared].tolist() for i in range(B)]
        top = min(len(r) for r in rows)
        while c < top and all(r[c] == rows[0][c] for r in rows):
            c += 1
    if c >= MIN_SHARED_PREFIX:
        f0 = int(first[0])
        pre = ids[:1, f0: f0 + c]
        try:
            out = model(input_ids=pre, attention_mask=torch.ones_like(pre),
                        position_ids=torch.arange(c, device=ids.device)[None], use_cache=True)
            cache = output_cache(out)
            cache.batch_repeat_interleave(B)
        except (TypeError, ValueError, AttributeError, NotImplementedError):  # no repeatable KV cache:
            cache = None  # the plain pass below (which raises any genuine error again)
        if cache is not None:
            m = int((first + c).min())
            rest = attn[:, m:] * (torch.arange(m, P, device=ids.device)[None] >= (first + c)[:, None]).long()
            full = torch.cat([torch.ones((B, c), dtype=torch.long, device=ids.device), rest], 1)
            pos = (c + rest.cumsum(-1) - 1).clamp(min=0)
            kwargs = {**kwargs, "use_cache": True, cache_kw: cache}
            return model(input_ids=ids[:, m:], attention_mask=full, position_ids=pos, **kwargs), full
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    return model(input_ids=ids, attention_mask=attn, position_ids=pos, **kwargs), attn


def output_cache(out):
    """The KV cache a forward pass returned: ``out.cache`` (transformers ≥ 5.2x; reading ``past_key_values`` there
    logs a deprecation warning) or ``out.past_key_values`` (earlier versions)."""
    return out["cache"] if "cache" in out else out.past_key_values


def forward_kwargs(model) -> tuple[dict, str]:
    """``({"logits_to_keep": 1} or {}, name of the KV-cache argument)`` for ``model``'s forward (a peft wrapper
    passes keyword arguments on to its base model; transformers ≥ 5.2x renamed ``past_key_values`` to ``cache``)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    return ({"logits_to_keep": 1} if "logits_to_keep" in params else {},
            "cache" if "cache" in params else "past_key_values")


def _forward_completion_logits(model, input_ids, attention_mask, num_completion: int, max_shared: int = 0):
    """Logits predicting the last ``num_completion`` positions (``[B, num_completion, V]``), float32; a start
    shared by the rows (at most ``max_shared`` tokens) is run once (:func:`shared_prefix_forward`).

    The forward pass runs under :func:`float32_forward`: autocast off, accelerate's mixed-precision wrapper bypassed.
    """
    keep, cache_kw = forward_kwargs(model)
    if stochastic_forward(model):  # active dropout: every row draws its own masks, the prefix included
        max_shared = 0
    kwargs = {"use_cache": False}
    if keep:  # only materialise the logits we need (V can be ~50k): positions P-1 ... P+T-1
        kwargs["logits_to_keep"] = num_completion + 1
    with float32_forward(model):
        out, _ = shared_prefix_forward(model, input_ids, attention_mask, max_shared=max_shared, cache_kw=cache_kw,
                                       **kwargs)
    return out.logits[:, -(num_completion + 1):-1, :].float()


def completion_token_logps(model, prompt_ids, prompt_mask, completion_ids, completion_mask):
    """Per-token log π(c_t | p, c_<t) for a batch, with gradients (used by training and scoring).

    ``prompt_ids/prompt_mask``: ``[B, P]`` left-padded; ``completion_ids/completion_mask``: ``[B, T]``
    right-padded. Returns ``[B, T]`` float32 with masked positions set to 0 (``masked_fill``).
    """
    return _token_logps(model, prompt_ids, prompt_mask, completion_ids, completion_mask, None)[0]


def completion_token_logps_tempered(model, prompt_ids, prompt_mask, completion_ids, completion_mask, alpha: float):
    """Per-token ``(log π(c_t | p, c_<t), log q_α(c_t | p, c_<t))`` from ONE teacher-forced float32 pass, where
    q_α = softmax(α · logits) is the next-token law at temperature 1/α (no top-k / top-p).

    Same shapes and masking as :func:`completion_token_logps` (both ``[B, T]``, 0 outside the mask). Used by the
    power sampler (:func:`~sharpsim.bridge.power_mh_sample`), whose acceptance ratio needs both densities.
    """
    return _token_logps(model, prompt_ids, prompt_mask, completion_ids, completion_mask, float(alpha))


def _token_logps(model, prompt_ids, prompt_mask, completion_ids, completion_mask, alpha):
    """log π per token and, when ``alpha`` is not None, log softmax(α·logits) per token (else ``None``)."""
    check_same_device(model, prompt_ids=prompt_ids, completion_ids=completion_ids)
    prompt_mask = prompt_mask.bool()
    completion_mask = completion_mask.bool()
    if prompt_ids.shape[0] != completion_ids.shape[0]:
        raise ValueError(f"{prompt_ids.shape[0]} prompt rows but {completion_ids.shape[0]} completion rows")
    if not bool(prompt_mask[:, -1].all()):
        raise ValueError("prompts must be left-padded: the last prompt column must be a real token in every row")
    # drop all-pad leading prompt columns and trailing completion columns (saves compute on ragged chunks)
    keep_from = int((~prompt_mask).all(0).long().cumprod(0).sum())
    prompt_ids, prompt_mask = prompt_ids[:, keep_from:], prompt_mask[:, keep_from:]
    t_used = int(completion_mask.long().sum(-1).max()) if completion_ids.numel() else 0
    B, T = completion_ids.shape
    if t_used == 0:
        zeros = torch.zeros((B, T), dtype=torch.float32, device=completion_ids.device)
        return zeros, (None if alpha is None else zeros.clone())
    c_ids, c_mask = completion_ids[:, :t_used], completion_mask[:, :t_used]
    ctx = context_length(model)
    total = prompt_mask.long().sum(-1) + c_mask.long().sum(-1)
    if ctx is not None and int(total.max()) > ctx:
        i = int(total.argmax())
        raise ValueError(
            f"row {i}: prompt + completion is {int(total[i])} tokens, longer than the model's context ({ctx}); "
            "shorten the prompt or the completion"
        )
    input_ids = torch.cat([prompt_ids, c_ids], dim=1)
    attn = torch.cat([prompt_mask, c_mask], dim=1)
    logits = _forward_completion_logits(model, input_ids, attn, t_used,
                                        max_shared=int(prompt_mask.long().sum(-1).min()) - 1)
    picked = torch.gather(logits, -1, c_ids.unsqueeze(-1)).squeeze(-1)
    tok = (picked - torch.logsumexp(logits, dim=-1)).masked_fill(~c_mask, 0.0)
    tok = torch.nn.functional.pad(tok, (0, T - t_used))
    if alpha is None:
        return tok, None
    tempered = (alpha * picked - torch.logsumexp(alpha * logits, dim=-1)).masked_fill(~c_mask, 0.0)
    return tok, torch.nn.functional.pad(tempered, (0, T - t_used))


def _distinct_rows(model, prompt_ids, prompt_mask, completion_ids, completion_mask, group: int):
    """``(todo, back)``: the first row of each distinct (prompt, completion) pair, in row order, and for every row
    the position of its pair in ``todo`` (``back`` is ``None`` when every row is distinct or the forward pass is
    stochastic). Samples from a peaked law repeat: a tiny model's 1,440 best-of-N rows hold a few dozen pairs."""
    M, dev = completion_ids.shape[0], completion_ids.device
    every = torch.arange(M, device=dev)
    if M < 2 or stochastic_forward(model):
        return every, None
    p = prompt_ids.masked_fill(~prompt_mask.bool(), -1).repeat_interleave(group, 0)
    c = completion_ids.masked_fill(~completion_mask.bool(), -1)
    _, inverse = torch.unique(torch.cat([p, c], 1), dim=0, return_inverse=True)
    U = int(inverse.max()) + 1
    if U == M:
        return every, None
    first = torch.full((U,), M, dtype=torch.long, device=dev).scatter_reduce(0, inverse, every, "amin")
    todo, order = first.sort()
    rank = torch.empty_like(order)
    rank[order] = torch.arange(U, device=dev)
    return todo, rank[inverse].cpu()


def score_ids(
    model,
    prompt_ids,
    prompt_mask,
    completion_ids,
    completion_mask,
    *,
    normalize: str = "sum",
    batch_size: int = 16,
    truncated=None,
) -> Scores:
    """log π(c|p) on token ids, without gradients, in chunks of ``batch_size`` rows (each distinct (prompt,
    completion) pair is scored once and its score copied to its repeats, unless dropout is active).

    ``prompt_ids`` may have ``B`` rows for ``B·N`` completion rows grouped per prompt (rows ``i·N … i·N+N−1``,
    as ``generate(num_return_sequences=N)`` returns them): prompts are then repeated to match.
    """
    _check_normalize(normalize)
    check_count("batch_size", batch_size)
    B, M = prompt_ids.shape[0], completion_ids.shape[0]
    if M % max(B, 1) != 0:
        raise ValueError(f"{M} completion rows is not a multiple of {B} prompt rows")
    group = M // B if B else 1
    todo, back = _distinct_rows(model, prompt_ids, prompt_mask, completion_ids, completion_mask, group)
    sums = []
    with torch.inference_mode(), bridge_threads(model, "scoring"):
        for start in range(0, len(todo), batch_size):
            rows = todo[start: start + batch_size]
            prow = rows // group
            tok = completion_token_logps(
                model, prompt_ids[prow], prompt_mask[prow], completion_ids[rows], completion_mask[rows]
            )
            sums.append(tok.sum(-1).cpu())
    logps = torch.cat(sums) if sums else torch.zeros(0)
    if back is not None:
        logps = logps[back]
    lengths = completion_mask.long().sum(-1).cpu()
    values = logps / lengths.clamp(min=1) if normalize == "mean" else logps
    return Scores(values=values, logps=logps, lengths=lengths, normalize=normalize,
                  truncated=None if truncated is None else truncated.cpu())


def score_completions(
    model,
    tokenizer,
    prompts: Sequence[str],
    completions: Sequence[str],
    normalize: str = "sum",
    *,
    add_eos: bool = False,
    batch_size: int = 16,
    add_special_tokens: bool = True,
) -> Scores:
    """log π(c | p) of each completion text given its prompt text, by teacher forcing in float32.

    The prompt and the completion are tokenized separately (so the completion's tokens are exactly the ones
    scored) and concatenated; the batch is left-padded with explicit position ids. Completions are scored
    **as given**: no EOS is appended unless ``add_eos=True``. ``normalize="mean"`` divides by the number of
    completion tokens (``Scores.lengths``). ``len(prompts)`` must equal ``len(completions)``, or divide it
    (completions grouped per prompt).

    >>> from sharpsim.bridge import tiny_gpt2, char_tokenizer
    >>> tok = char_tokenizer("ab"); model = tiny_gpt2(tok, seed=0)
    >>> s = score_completions(model, tok, ["a", "b"], ["ab", "b"])
    >>> s.lengths.tolist(), bool((s.logps < 0).all())
    ([2, 1], True)
    """
    _check_normalize(normalize)
    check_count("batch_size", batch_size)
    prompts = check_prompts(prompts)
    completions = check_prompts(completions, "completions") if len(completions) else []
    pad_id, eos_ids = resolve_special_ids(tokenizer, model)
    if len(prompts) == 0 or len(completions) % len(prompts) != 0:
        raise ValueError(
            f"got {len(prompts)} prompts and {len(completions)} completions; need equal counts, or completions "
            "grouped per prompt (a multiple)"
        )
    dev = model_device(model)
    p_ids = tokenize_prompts(tokenizer, prompts, add_special_tokens=add_special_tokens)
    c_ids = [list(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in completions]
    if add_eos:
        c_ids = [ids + [eos_ids[0]] for ids in c_ids]
    prompt_ids, prompt_mask = pad_left(p_ids, pad_id, dev)
    completion_ids, completion_mask = pad_right(c_ids, pad_id, dev)
    return score_ids(model, prompt_ids, prompt_mask, completion_ids, completion_mask,
                     normalize=normalize, batch_size=batch_size)


def _check_normalize(normalize: str) -> None:
    if normalize not in ("sum", "mean"):
        raise ValueError(f"normalize must be 'sum' or 'mean', got {normalize!r}")
