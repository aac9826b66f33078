"""Self-rewards (§1 of the paper) and inference-time best-of-N.

* ``"logprob"``: r_self(y|x) = log π_base(y|x) (Eq. 2, maximum-likelihood sharpening);
* ``"lennorm"``: log π_base(y|x) / |y| (length-normalised; |y| counts tokens, EOS included);
* ``"majority"``: the FRACTION of the N samples whose extracted answer equals y's (count / N, the sample
  approximation of Σ_{y': ans(y') = ans(y)} π_base(y'|x)); responses without an answer get 0;

The names and scales are those of the simulator's reward registry (``sharpsim.rewards``: ``"logprob"``,
``"lennorm"``, ``"majority"`` as a fraction). ``"mean_logprob"`` is accepted as a deprecated alias of
``"lennorm"``.
* any callable ``f(prompts=[...], completions=[...], logps=..., lengths=...) -> list[float]``.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Hashable, Sequence

from sharpsim._validation import check_count, check_prompts
from sharpsim.bridge._deps import require_torch
from sharpsim.bridge._sampling import Samples, check_num_samples, sample_completions
from sharpsim.bridge._scoring import Scores, score_ids

torch = require_torch()

__all__ = ["BestOfN", "best_of_n", "compute_self_reward", "majority_reward", "select_best"]

REWARDS = ("logprob", "lennorm", "majority")
#: Deprecated reward names and what they mean now.
REWARD_ALIASES = {"mean_logprob": "lennorm"}


def canonical_reward(reward):
    """``reward`` with a deprecated alias replaced by its registry name (callables pass through)."""
    if isinstance(reward, str) and reward in REWARD_ALIASES:
        import warnings

        warnings.warn(f"reward {reward!r} is deprecated; use {REWARD_ALIASES[reward]!r}", DeprecationWarning,
                      stacklevel=3)
        return REWARD_ALIASES[reward]
    return reward


def majority_reward(answers: Sequence[Hashable | None], N: int) -> "torch.Tensor":
    """Per-response share (a fraction in [0, 1], count / N) of its prompt's N samples with the same extracted
    answer (``None`` → 0). Prefix-consistent with the simulator's ``"majority"``: for the first n samples of a
    draw, pass those n answers (and N = n)."""
    check_num_samples(N)
    if len(answers) % N:
        raise ValueError(f"{len(answers)} answers is not a multiple of N={N}")
    out = torch.zeros(len(answers), dtype=torch.float32)
    for start in range(0, len(answers), N):
        group = answers[start: start + N]
        counts = Counter(a for a in group if a is not None)
        for j, a in enumerate(group):
            out[start + j] = counts[a] / N if a is not None else 0.0
    return out


def compute_self_reward(
    reward: str | Callable,
    scores: Scores,
    *,
    N: int,
    texts: Sequence[str] | None = None,
    prompts: Sequence[str] | None = None,
    extract_answer: Callable[[str], Hashable | None] | None = None,
) -> "torch.Tensor":
    """Self-reward of each of the ``B·N`` completions (float32 tensor on the CPU)."""
    if callable(reward):
        if texts is None or prompts is None:
            raise ValueError("a callable reward needs the prompts and completion texts")
        rows = [prompts[i // N] for i in range(len(texts))]
        vals = reward(prompts=rows, completions=list(texts), logps=scores.logps, lengths=scores.lengths)
        out = torch.as_tensor(list(vals), dtype=torch.float32)
        name = getattr(reward, "__name__", repr(reward))
        if out.shape != (len(texts),):
            raise ValueError(f"reward {name} returned {tuple(out.shape)} values for {len(texts)} completions")
        if torch.isnan(out).any():
            raise ValueError(f"reward {name} returned NaN for completion {int(torch.isnan(out).nonzero()[0, 0])}: "
                             "best-of-N would silently rank it last; return -inf for 'never pick this'")
        return out
    reward = canonical_reward(reward)
    if reward == "logprob":
        return scores.logps.float()
    if reward == "lennorm":
        return scores.logps.float() / scores.lengths.clamp(min=1)
    if reward == "majority":
        if texts is None or extract_answer is None:
            raise ValueError("reward='majority' needs the completion texts and an extract_answer function")
        return majority_reward([extract_answer(t) for t in texts], N)
    raise ValueError(f"unknown self-reward {reward!r}; use one of {REWARDS} or a callable")


def select_best(rewards: "torch.Tensor", *, tie_break: str = "first", generator=None):
    """Best-of-N selection on a ``[B, N]`` reward table: returns ``(indices [B], best [B])``.

    ``tie_break="first"`` takes the lowest index among maximisers (deterministic); ``"random"`` picks uniformly
    among them (the paper's "~ argmax"), using ``generator`` if given.
    """
    if rewards.ndim != 2:
        raise ValueError(f"rewards must be [B, N], got shape {tuple(rewards.shape)}")
    r = rewards.float().nan_to_num(nan=float("-inf"))
    best = r.max(dim=1).values
    if tie_break == "first":
        idx = r.argmax(dim=1)
    elif tie_break == "random":
        is_max = r == best[:, None]
        noise = torch.rand(r.shape, generator=generator)
        idx = torch.where(is_max, noise, torch.full_like(noise, -1.0)).argmax(dim=1)
    else:
        raise ValueError(f"tie_break must be 'first' or 'random', got {tie_break!r}")
    return idx, best


@dataclasses.dataclass
class BestOfN:
    """Result of inference-time best-of-N for B prompts.

    ``indices [B]`` (which of the N samples won), ``scores [B]`` (its self-reward), ``lengths [B]``,
    ``truncated [B]``, ``texts`` (the winners), plus every sample: ``samples``, ``all_texts`` (B·N),
    ``all_rewards [B, N]`` and ``all_logps [B, N]`` (log π_base, the self-reward of Eq. 2 whatever the
    selection reward was), ``all_lengths [B, N]``.
    """

    indices: "torch.Tensor"
    scores: "torch.Tensor"
    lengths: "torch.Tensor"
    truncated: "torch.Tensor"
    texts: list[str]
    samples: Samples
    all_texts: list[str]
    all_rewards: "torch.Tensor"
    all_logps: "torch.Tensor"
    all_lengths: "torch.Tensor"

    @property
    def logps(self) -> "torch.Tensor":
        """log π_base of each winner."""
        return self.all_logps.gather(1, self.indices[:, None]).squeeze(1)


def best_of_n(
    model,
    tokenizer,
    prompts: Sequence[str],
    N: int,
    *,
    reward: str | Callable = "logprob",
    extract_answer: Callable[[str], Hashable | None] | None = None,
    reference=None,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    seed: int | None = None,
    max_batch_rows: int = 64,
    score_batch_size: int = 16,
    tie_break: str = "first",
) -> BestOfN:
    """Inference-time best-of-N with a self-reward (§2, Proposition C.1).

    Samples N completions per prompt from ``model`` at ``temperature``, scores each by teacher forcing under
    ``reference`` (default: ``model`` itself, i.e. π_base), and returns the argmax of the self-reward with its
    index, score and length.
    """
    check_num_samples(N)
    prompts = check_prompts(prompts)
    check_count("score_batch_size", score_batch_size)
    if tie_break not in ("first", "random"):
        raise ValueError(f"tie_break must be 'first' or 'random', got {tie_break!r}")
    samples = sample_completions(model, tokenizer, prompts, N, max_new_tokens=max_new_tokens,
                                 temperature=temperature, seed=seed, max_batch_rows=max_batch_rows)
    scorer = reference if reference is not None else model
    scores = score_ids(scorer, samples.prompt_ids, samples.prompt_mask, samples.completion_ids,
                       samples.completion_mask, batch_size=score_batch_size, truncated=samples.truncated)
    texts = samples.texts(tokenizer)
    rewards = compute_self_reward(reward, scores, N=N, texts=texts, prompts=list(prompts),
                                  extract_answer=extract_answer)
    table = rewards.view(len(prompts), N)
    idx, best = select_best(table, tie_break=tie_break)
    flat = torch.arange(len(prompts)) * N + idx
    return BestOfN(
        indices=idx, scores=best, lengths=scores.lengths[flat], truncated=samples.truncated.cpu()[flat],
        texts=[texts[i] for i in flat.tolist()], samples=samples, all_texts=texts, all_rewards=table,
        all_logps=scores.logps.view(len(prompts), N),
        all_lengths=scores.lengths.view(len(prompts), N),
    )
