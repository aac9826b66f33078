"""Benchmarks for autoregressive policies.

1. ``transformer_sampling``: tokens/s of jitted ``TransformerPolicy.sample_and_log_prob`` (``lax.scan`` with a
   KV cache, ``vmap`` over samples) against a vectorised NumPy implementation of the same model (same
   parameters, same KV-cache algorithm, batched over samples, inverse-CDF draws) in the same run.
2. ``exact_argmax``: seconds for the exact sequence argmax of a peaked random Markov policy by the generic
   best-first search (the path any autoregressive policy takes; Viterbi is not used) against brute-force
   enumeration of all V^H sequences (``method="brute_force"``), as H grows. ``ratio`` = brute-force time /
   search time. The search is called with ``enumerate_limit=decoding.ONE_CALL_ENUMERATE_LIMIT``: a tree of at
   most that many sequences (here H ≤ 6) is scored in one jitted call instead of searched (cheaper than H
   sequential expansions); ``method_used`` says which ran.

Compile time is reported apart (first call minus a steady-state call); throughput is the median of several
repetitions after a warm-up, each ending in ``block_until_ready``.
"""

from __future__ import annotations

import functools
import math

import jax
import numpy as np

from sharpsim import decoding
from sharpsim.ar_instances import random_markov_policy
from sharpsim.benchmarks._timing import (environment, moments_agree, time_jax, time_numpy, time_torch,
                                         torch_or_none, with_peers)
from sharpsim.policies._transformer import TransformerPolicy

__all__ = ["run", "numpy_transformer_sample", "torch_transformer_sample"]


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


def torch_transformer_sample(torch, params: dict, *, num_heads: int, x: int, num: int, gen, device="cpu"):
    """:func:`numpy_transformer_sample` in PyTorch (same model, same KV-cache algorithm, batched over samples)."""
    p = jax.tree_util.tree_map(lambda a: torch.as_tensor(np.array(a), device=device), params)
    V = p["unembed"].shape[1]
    H, D = p["pos_emb"].shape
    nh = num_heads
    dh = D // nh
    L = len(p["layers"])
    dt = p["pos_emb"].dtype

    def ln(h, s, b, eps=1e-5):
        mu = h.mean(-1, keepdim=True)
        var = ((h - mu) ** 2).mean(-1, keepdim=True)
        return (h - mu) / torch.sqrt(var + eps) * s + b

    def gelu(z):
        return 0.5 * z * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z**3)))

    with torch.inference_mode():
        K = torch.zeros((L, num, H, nh, dh), dtype=dt, device=device)
        Vc = torch.zeros_like(K)
        ys = torch.zeros((num, H), dtype=torch.long, device=device)
        total = torch.zeros(num, dtype=dt, device=device)
        tok = torch.full((num,), V, dtype=torch.long, device=device)
        ar = torch.arange(num, device=device)
        for h in range(H):
            e = p["tok_emb"][tok] + p["pos_emb"][h] + p["prompt_emb"][x]
            for l, lp in enumerate(p["layers"]):
                a = ln(e, lp["ln1_scale"], lp["ln1_bias"])
                q = (a @ lp["wq"]).reshape(num, nh, dh)
                K[l, :, h] = (a @ lp["wk"]).reshape(num, nh, dh)
                Vc[l, :, h] = (a @ lp["wv"]).reshape(num, nh, dh)
                w = torch.softmax(torch.einsum("bnd,bknd->bnk", q, K[l, :, : h + 1]) / math.sqrt(dh), -1)
                e = e + torch.einsum("bnk,bknd->bnd", w, Vc[l, :, : h + 1]).reshape(num, D) @ lp["wo"]
                a = ln(e, lp["ln2_scale"], lp["ln2_bias"])
                e = e + gelu(a @ lp["w1"] + lp["b1"]) @ lp["w2"] + lp["b2"]
            logp = torch.log_softmax(ln(e, p["lnf_scale"], p["lnf_bias"]) @ p["unembed"], -1)
            cdf = torch.cumsum(torch.exp(logp), -1)
            u = torch.rand(num, generator=gen, dtype=dt, device=device) * cdf[:, -1]
            tok = torch.searchsorted(cdf, u[:, None], right=True)[:, 0].clamp_(max=V - 1)
            ys[:, h] = tok
            total += logp[ar, tok]
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
    jax_lp = np.asarray(fn(pol, jax.random.key(2))[1])
    agree = moments_agree(jax_lp, numpy_transformer_sample(pol.params, num_heads=heads, x=1, num=num, rng=rng)[1])
    peers = {"numpy": tokens / np_s}
    torch = torch_or_none()
    if torch is not None:
        for dev in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
            gen = torch.Generator(device=dev).manual_seed(0)

            def one(dev=dev, gen=gen):
                return torch_transformer_sample(torch, pol.params, num_heads=heads, x=1, num=num, gen=gen, device=dev)

            peers["torch" if dev == "cpu" else "torch_cuda"] = tokens / time_torch(one, reps=max(1, reps // 2))
            agree &= moments_agree(jax_lp, one()[1].cpu().numpy())
    row = dict(
        name="transformer_sampling_kv_cache", benchmark="transformer sampling (KV cache)",
        shape=f"V={V} H={H} d={D} L={layers} heads={heads} num={num}", unit="tokens", **environment(),
        dtype=str(pol.params["pos_emb"].dtype), V=V, H=H, d_model=D, layers=layers, heads=heads, num=num,
        compile_s=round(compile_s, 4), jax_s=jax_s, numpy_s=np_s, agree=agree,
    )
    return with_peers(row, tokens / jax_s, peers)


def _bench_argmax(V, H, scale, reps) -> dict:
    pol = random_markov_policy(jax.random.key(H), num_prompts=1, vocab_size=V, horizon=H, scale=scale)
    # warm-up (compiles both scorers), then time.
    search = functools.partial(decoding.exact_argmax, pol, 0, method="best_first",
                               enumerate_limit=decoding.ONE_CALL_ENUMERATE_LIMIT)
    res = search()
    bf = decoding.exact_argmax(pol, 0, method="brute_force")
    assert abs(res.log_prob - bf.log_prob) < 1e-4 * (1 + abs(bf.log_prob)), (res, bf)
    search_s = time_numpy(search, reps=reps)
    brute_s = time_numpy(lambda: decoding.exact_argmax(pol, 0, method="brute_force"), reps=max(1, reps // 2))
    return dict(
        name="exact_argmax_best_first_vs_brute_force", benchmark="exact argmax: best-first vs brute force",
        shape=f"V={V} H={H}", unit="searches", **environment(),
        dtype=str(pol.log_probs.dtype), V=V, H=H, logit_scale=scale, sequences=V**H,
        method_used=res.method, nodes_expanded=res.nodes_expanded, search_s=search_s, brute_force_s=brute_s,
        ratio=brute_s / search_s,
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
