"""A tiny causal transformer over Y = V^H in pure JAX (parameter pytree, trainable with optax).

Position h reads the previous token (a BOS id ``V`` at h = 0), adds a learned position embedding and a
learned prompt embedding for x, and goes through pre-LayerNorm blocks of causal multi-head attention and
a GELU MLP; an unembedding gives the logits of π_h(· | y_{<h}, x). Teacher-forced scoring is one causal
pass; sampling (``sample_and_log_prob``) decodes one position per ``lax.scan`` step with a key/value cache
``[layers, H, heads, head_dim]``, so a length-H response costs O(H) attention rows instead of O(H²).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from sharpsim._validation import check_positive_int
from sharpsim.policies._autoregressive import AutoregressivePolicy, _check_eos

__all__ = ["TransformerPolicy", "init_transformer_params"]


#: Full float32 matmuls: GPUs otherwise default to TF32 (10-bit mantissa), and the KV-cached sampling pass
#: and the teacher-forced scoring pass then disagree on log π(y|x) by ~1e-3 (seen on an H100).
_HIGHEST = jax.lax.Precision.HIGHEST


def _mm(a, b):
    return jnp.matmul(a, b, precision=_HIGHEST)


def _layer_norm(h, scale, bias, eps=1e-5):
    mu = jnp.mean(h, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(h - mu), axis=-1, keepdims=True)
    return (h - mu) * jax.lax.rsqrt(var + eps) * scale + bias


def init_transformer_params(
    key: PRNGKeyArray, *, num_prompts: int, vocab_size: int, horizon: int, d_model: int, num_heads: int,
    num_layers: int, d_ff: int, dtype=None,
) -> dict:
    """Random parameters (normal(0, 0.02) weights, GPT-2 style; unit LayerNorm scales)."""
    dtype = dtype or jnp.result_type(float)
    keys = iter(jax.random.split(key, 4 + 6 * num_layers))

    def w(shape, std=0.02):
        return (std * jax.random.normal(next(keys), shape)).astype(dtype)

    D, F = d_model, d_ff
    layers = []
    for _ in range(num_layers):
        layers.append(dict(
            ln1_scale=jnp.ones(D, dtype), ln1_bias=jnp.zeros(D, dtype),
            wq=w((D, D)), wk=w((D, D)), wv=w((D, D)), wo=w((D, D), 0.02 / math.sqrt(2 * num_layers)),
            ln2_scale=jnp.ones(D, dtype), ln2_bias=jnp.zeros(D, dtype),
            w1=w((D, F)), b1=jnp.zeros(F, dtype), w2=w((F, D), 0.02 / math.sqrt(2 * num_layers)), b2=jnp.zeros(D, dtype),
        ))
    return dict(
        tok_emb=w((vocab_size + 1, D)), pos_emb=w((horizon, D)), prompt_emb=w((num_prompts, D)),
        layers=layers, lnf_scale=jnp.ones(D, dtype), lnf_bias=jnp.zeros(D, dtype), unembed=w((D, vocab_size)),
    )


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TransformerPolicy(AutoregressivePolicy):
    """π_h(· | y_{<h}, x) from a tiny causal transformer; ``params`` is the only pytree leaf.

    >>> import jax
    >>> pi = TransformerPolicy.init(jax.random.key(0), num_prompts=2, vocab_size=4, horizon=3)
    >>> ys, lps = pi.sample_and_log_prob(jax.random.key(1), 0, 5)
    >>> ys.shape, bool(jax.numpy.allclose(lps, pi.log_prob(0, ys), atol=1e-5))
    ((5, 3), True)
    """

    params: dict
    num_prompts: int = dataclasses.field(metadata=dict(static=True))
    vocab_size: int = dataclasses.field(metadata=dict(static=True))
    horizon: int = dataclasses.field(metadata=dict(static=True))
    num_heads: int = dataclasses.field(default=2, metadata=dict(static=True))
    eos_id: int | None = dataclasses.field(default=None, metadata=dict(static=True))

    @classmethod
    def init(
        cls, key: PRNGKeyArray, *, num_prompts: int, vocab_size: int, horizon: int, d_model: int = 32,
        num_heads: int = 2, num_layers: int = 2, d_ff: int | None = None, eos_id: int | None = None,
    ) -> "TransformerPolicy":
        """A freshly initialised model (``d_ff`` defaults to 4·d_model)."""
        X = check_positive_int(num_prompts, "num_prompts")
        V = check_positive_int(vocab_size, "vocab_size")
        H = check_positive_int(horizon, "horizon")
        D = check_positive_int(d_model, "d_model")
        nh = check_positive_int(num_heads, "num_heads")
        L = check_positive_int(num_layers, "num_layers")
        F = check_positive_int(d_ff if d_ff is not None else 4 * D, "d_ff")
        if D % nh:
            raise ValueError(f"d_model={D} must be divisible by num_heads={nh}.")
        init = jax.jit(init_transformer_params, static_argnames=(
            "num_prompts", "vocab_size", "horizon", "d_model", "num_heads", "num_layers", "d_ff", "dtype"))
        params = init(key, num_prompts=X, vocab_size=V, horizon=H, d_model=D, num_heads=nh, num_layers=L, d_ff=F)
        return cls(params=params, num_prompts=X, vocab_size=V, horizon=H, num_heads=nh, eos_id=_check_eos(eos_id, V))

    def with_params(self, params: dict) -> "TransformerPolicy":
        """Same architecture, new parameters (e.g. after an optax update)."""
        return dataclasses.replace(self, params=params)

    @property
    def d_model(self) -> int:
        return self.params["pos_emb"].shape[-1]

    @property
    def num_layers(self) -> int:
        return len(self.params["layers"])

    # ---------------------------------------------------------------- forward passes
    def _embed(self, x, tokens, positions):
        p = self.params
        return p["tok_emb"][tokens] + p["pos_emb"][positions] + p["prompt_emb"][x]

    def _mlp(self, lp, h):
        a = _layer_norm(h, lp["ln2_scale"], lp["ln2_bias"])
        return h + _mm(jax.nn.gelu(_mm(a, lp["w1"]) + lp["b1"]), lp["w2"]) + lp["b2"]

    def _split(self, a):
        return a.reshape(a.shape[:-1] + (self.num_heads, a.shape[-1] // self.num_heads))

    def _unembed(self, h):
        p = self.params
        return _mm(_layer_norm(h, p["lnf_scale"], p["lnf_bias"]), p["unembed"])

    def _teacher_forced_logits(self, x, y) -> Float[Array, "H V"]:
        """One causal pass over inputs [BOS, y_0, …, y_{H-2}] → logits of every position."""
        H = self.horizon
        inputs = jnp.concatenate([jnp.array([self.vocab_size], jnp.int32), y[:-1].astype(jnp.int32)])
        h = self._embed(x, inputs, jnp.arange(H))
        causal = jnp.tril(jnp.ones((H, H), bool))
        for lp in self.params["layers"]:
            a = _layer_norm(h, lp["ln1_scale"], lp["ln1_bias"])
            q, k, v = self._split(_mm(a, lp["wq"])), self._split(_mm(a, lp["wk"])), self._split(_mm(a, lp["wv"]))
            s = jnp.einsum("qnd,knd->nqk", q, k, precision=_HIGHEST) / math.sqrt(q.shape[-1])
            w = jax.nn.softmax(jnp.where(causal, s, -jnp.inf), axis=-1)
            h = h + _mm(jnp.einsum("nqk,knd->qnd", w, v, precision=_HIGHEST).reshape(H, -1), lp["wo"])
            h = self._mlp(lp, h)
        return self._unembed(h)

    def _logits_at(self, x, prefix, h):
        return self._teacher_forced_logits(x, prefix)[h]

    def _init_cache(self, x):
        L, H, nh = self.num_layers, self.horizon, self.num_heads
        shape = (L, H, nh, self.d_model // nh)
        dt = self.params["pos_emb"].dtype
        return jnp.zeros(shape, dt), jnp.zeros(shape, dt)

    def _cached_logits(self, x, prefix, h, cache):
        """Position ``h`` only: append its key/value to the cache and attend to positions ≤ h."""
        K, Vc = cache
        tok = jnp.where(h > 0, prefix[jnp.maximum(h - 1, 0)], self.vocab_size)
        e = self._embed(x, tok, h)
        visible = jnp.arange(self.horizon) <= h
        for l, lp in enumerate(self.params["layers"]):
            a = _layer_norm(e, lp["ln1_scale"], lp["ln1_bias"])
            q, k, v = self._split(_mm(a, lp["wq"])), self._split(_mm(a, lp["wk"])), self._split(_mm(a, lp["wv"]))
            K = K.at[l, h].set(k)
            Vc = Vc.at[l, h].set(v)
            s = jnp.einsum("nd,knd->nk", q, K[l], precision=_HIGHEST) / math.sqrt(q.shape[-1])
            w = jax.nn.softmax(jnp.where(visible, s, -jnp.inf), axis=-1)
            e = e + _mm(jnp.einsum("nk,knd->nd", w, Vc[l], precision=_HIGHEST).reshape(-1), lp["wo"])
            e = self._mlp(lp, e)
        return self._unembed(e), (K, Vc)

    def nll(self, x, y) -> Float[Array, ""]:
        """Mean negative log-likelihood −(1/B) Σ log π(y_b|x_b) of a batch (``x [B]``, ``y [B, H]``): an optax loss."""
        return -jnp.mean(self.log_prob(x, y))

    def __repr__(self) -> str:
        return (f"TransformerPolicy(X={self.num_prompts}, V={self.vocab_size}, H={self.horizon}, d_model={self.d_model}, "
                f"heads={self.num_heads}, layers={self.num_layers}, eos_id={self.eos_id})")
