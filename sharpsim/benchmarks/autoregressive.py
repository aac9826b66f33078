"""Benchmarks for autoregressive policies.

1. ``transformer_sampling``: tokens/s of jitted ``TransformerPolicy.sample_and_log_prob`` (``lax.scan`` with a
   KV cache, ``vmap`` over samples) against a vectorised NumPy implementation of the same model (same
   parameters, same KV-cache algorithm, batched over samples, inverse-CDF draws) in the same run.
2. ``exact_argmax``: seconds for the exact sequence argmax of a peaked random Markov policy by the generic
   best-first search (the path any autoregressive policy takes; Viterbi is not used) against brute-force
   enumeration of all V^H sequences, as H grows. ``ratio`` = brute-force time / search time.

Compile time is reported apart (first call minus a steady-state call); throughput is the median of several
repetitions after a warm-up, each ending in ``block_until_ready``.
"""

from __future__ import annotations

import math

import jax
import numpy as np

from sharpsim import decoding
from sharpsim.ar_instances import random_markov_policy
from sharpsim.benchmarks._timing import environment, time_jax, time_numpy
from sharpsim.policies._transformer import TransformerPolicy

__all__ = ["run", "numpy_transformer_sample"]


# ---------------------------------------------------------------------------------------------------- NumPy
def _np_ln(h, s, b, eps=1e-5):
    mu = h.mean(-1, keepdims=True)
    var = ((h - mu) ** 2).mean(-1, keepdims=True)
    return (h - mu) / np.sqrt(var + eps) * s + b


def _np_gelu(z):  # tanh approximation, as jax.nn.gelu(approximate=True)
    return 0.5 * z * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z**3)))


def numpy_transformer_sample(params: dict, *, num_heads: int, x: int, num: int, rng: np.random.Generator):
    """Sample ``num`` responses from a :class:`TransformerPolicy`'s parameters in NumPy (KV cache, batched).

    Returns ``(responses [num, H] int32, log_probs [num])``; no EOS handling (benchmark models have none).
    """
    p = jax.tree_util.tree_map(np.asarray, params)
    V = p["unembed"].shape[1]
    H, D = p["pos_emb"].shape
    nh = num_heads
    dh = D // nh
    L = len(p["layers"])
    K = np.zeros((L, num, H, nh, dh), p["pos_emb"].dtype)
    Vc = np.zeros_like(K)
    ys = np.zeros((num, H), np.int32)
    total = np.zeros(num)
    tok = np.full(num, V)
    for h in range(H):
        e = p["tok_emb"][tok] + p["pos_emb"][h] + p["prompt_emb"][x]  # [num, D]
        for l, lp in enumerate(p["layers"]):
            a = _np_ln(e, lp["ln1_scale"], lp["ln1_bias"])
            q = (a @ lp["wq"]).reshape(num, nh, dh)
            K[l, :, h] = (a @ lp["wk"]).reshape(num, nh, dh)
            Vc[l, :, h] = (a @ lp["wv"]).reshape(num, nh, dh)
            s = np.einsum("bnd,bknd->bnk", q, K[l, :, : h + 1]) / math.sqrt(dh)
            w = np.exp(s - s.max(-1, keepdims=True))
            w /= w.sum(-1, keepdims=True)
            e = e + np.einsum("bnk,bknd->bnd", w, Vc[l, :, : h + 1]).reshape(num, D) @ lp["wo"]
            a = _np_ln(e, lp["ln2_scale"], lp["ln2_bias"])
            e = e + _np_gelu(a @ lp["w1"] + lp["b1"]) @ lp["w2"] + lp["b2"]
        logits = _np_ln(e, p["lnf_scale"], p["lnf_bias"]) @ p["unembed"]
        logp = logits - logits.max(-1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
        cdf = np.cumsum(np.exp(logp), axis=-1)
        u = rng.random(num) * cdf[:, -1]
        tok = np.minimum((cdf <= u[:, None]).sum(-1), V - 1)
        ys[:, h] = tok
        total += logp[np.arange(num), tok]
    return ys, total


def _bench_transformer(V, H, D, layers, heads, num, reps) -> dict:
    pol = TransformerPolicy.init(jax.random.key(0), num_prompts=4, vocab_size=V, horizon=H, d_model=D,
                                 num_heads=heads, num_layers=layers)
    fn = jax.jit(lambda pi, k: pi.sample_and_log_prob(k, 1, num))
    compile_s, jax_s = time_jax(fn, pol, jax.random.key(1), reps=reps)
    rng = np.random.default_rng(0)
    np_s = time_numpy(lambda: numpy_transformer_sample(pol.params, num_heads=heads, x=1, num=num, rng=rng),
                      reps=max(1, reps // 2))
    tokens = num * H
    return dict(
        name="transformer_sampling_kv_cache", benchmark="transformer sampling (KV cache)",
        shape=f"V={V} H={H} d={D} L={layers} heads={heads} num={num}", unit="tokens", **environment(),
        dtype=str(pol.params["pos_emb"].dtype), V=V, H=H, d_model=D, layers=layers, heads=heads, num=num,
        compile_s=round(compile_s, 4), jax_s=jax_s, numpy_s=np_s,
        jax_per_s=tokens / jax_s, numpy_per_s=tokens / np_s, ratio=np_s / jax_s,
    )


def _bench_argmax(V, H, scale, reps) -> dict:
    pol = random_markov_policy(jax.random.key(H), num_prompts=1, vocab_size=V, horizon=H, scale=scale)
    # warm-up (compiles both scorers), then time.
    res = decoding.exact_argmax(pol, 0, method="best_first")
    bf = decoding.exact_argmax(pol, 0, method="brute_force")
    assert abs(res.log_prob - bf.log_prob) < 1e-4 * (1 + abs(bf.log_prob)), (res, bf)
    search_s = time_numpy(lambda: decoding.exact_argmax(pol, 0, method="best_first"), reps=reps)
    brute_s = time_numpy(lambda: decoding.exact_argmax(pol, 0, method="brute_force"), reps=max(1, reps // 2))
    return dict(
        name="exact_argmax_best_first_vs_brute_force", benchmark="exact argmax: best-first vs brute force",
        shape=f"V={V} H={H}", unit="searches", **environment(),
        dtype=str(pol.log_probs.dtype), V=V, H=H, logit_scale=scale, sequences=V**H,
        nodes_expanded=res.nodes_expanded, search_s=search_s, brute_force_s=brute_s, ratio=brute_s / search_s,
        jax_per_s=1.0 / search_s, numpy_per_s=1.0 / brute_s,
    )


def run(quick: bool = True) -> list[dict]:
    """Run both benchmarks; ``quick`` uses smaller shapes and fewer repetitions."""
    reps = 3 if quick else 7
    rows = []
    tf_configs = [(32, 16, 64, 2, 4, 256)] if quick else [(32, 16, 64, 2, 4, 256), (64, 64, 128, 4, 4, 1024)]
    for V, H, D, layers, heads, num in tf_configs:
        rows.append(_bench_transformer(V, H, D, layers, heads, num, reps))
    for H in ([4, 6, 8] if quick else [4, 6, 8, 10]):
        rows.append(_bench_argmax(4, H, 3.0, reps))
    return rows
