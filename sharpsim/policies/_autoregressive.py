"""Autoregressive policies over Y = V^H: the shared interface and its generic machinery.

The paper's main special case (theory.md §1) is

    π(y_{1:H} | x) = ∏_{h=1}^H π_h(y_h | y_{1:h-1}, x),

with the sequence-level argmax of Eq. (5) as the sharpening target. Every family in this package
(:class:`~sharpsim.MarkovPolicy`, :class:`~sharpsim.LinearSoftmaxPolicy`, :class:`~sharpsim.TransformerPolicy`)
subclasses :class:`AutoregressivePolicy` and supplies only its next-token *logits*; this module turns
them into

* ``next_log_probs(x, prefix)`` — log π_h(· | prefix, x), shape ``[V]``;
* ``log_prob(x, y)`` — teacher-forced log π(y|x) of whole sequences ``[H]`` (leading batch axes allowed);
* ``sample_and_log_prob(key, x, num)`` — ``lax.scan`` over positions (with the family's decoding cache,
  e.g. a transformer KV cache), returning ``(responses [num, H] int32, log_probs [num])``: exactly the
  sample-and-evaluate query of Definition 3.2;
* ``to_tabular()`` — the policy as a :class:`~sharpsim.TabularPolicy` over all V^H sequences in row-major
  order (index = Σ_h y_h V^{H-1-h}), so every tabular metric and algorithm applies unchanged.

**EOS and variable-length responses.** With ``eos_id`` set, a response ends at its first EOS token; the
positions after it are filled with EOS, and the model is *forced* to emit EOS there (conditional
probability 1, log-probability 0). So responses stay fixed-shape ``[H]`` arrays, π still sums to 1 over
V^H (non-canonical sequences, with a non-EOS token after an EOS, have probability 0), and the response
length (:func:`sequence_lengths`: tokens up to and including the first EOS, H if none) gives the
length-normalised self-reward log π(y|x)/|y| of App. A.2 its meaning.

Subclass contract (all pure, unbatched, jit-able; ``prefix`` is an ``[H]`` int buffer of which only the
first ``h`` entries are meaningful, ``h`` may be traced):

* ``_logits_at(x, prefix, h) -> [V]`` unnormalised logits of position ``h`` (``-inf`` allowed);
* optionally ``_teacher_forced_logits(x, y) -> [H, V]`` (one causal pass; default: vmap of ``_logits_at``);
* optionally ``_init_cache(x)`` / ``_cached_logits(x, prefix, h, cache) -> (logits, cache)`` for
  incremental decoding, called for h = 0, 1, …, H-1 in order (default: no cache).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from sharpsim._validation import check_key, check_positive, check_positive_int, is_concrete
from sharpsim.policies._tabular import TabularPolicy, inverse_cdf_sample

__all__ = [
    "AutoregressivePolicy",
    "sequence_lengths",
    "index_to_sequences",
    "sequences_to_index",
    "MAX_TABULAR_SIZE",
]

#: Largest V^H that :meth:`AutoregressivePolicy.to_tabular` and brute-force enumeration accept by default.
MAX_TABULAR_SIZE = 2**20


def _float_dtype():
    return jnp.result_type(float)


def sequence_lengths(responses: Int[Array, "... H"], eos_id: int | None) -> Int[Array, "..."]:
    """Length of each response: the number of tokens up to **and including** the first EOS; H if none.

    This is |y| in the length-normalised self-reward log π(y|x) / |y| (theory.md §1, App. A.2).
    With ``eos_id=None`` every response has length H.

    >>> import jax.numpy as jnp
    >>> sequence_lengths(jnp.array([[3, 0, 0], [1, 2, 1]]), eos_id=0).tolist()
    [2, 3]
    """
    responses = jnp.asarray(responses)
    H = responses.shape[-1]
    if eos_id is None:
        return jnp.full(responses.shape[:-1], H, dtype=jnp.int32)
    is_eos = responses == eos_id
    first = jnp.argmax(is_eos, axis=-1)
    return jnp.where(jnp.any(is_eos, axis=-1), first + 1, H).astype(jnp.int32)


def index_to_sequences(index: Int[Array, "..."], vocab_size: int, horizon: int) -> Int[Array, "... H"]:
    """Row-major decoding of a sequence index: ``index = Σ_h y_h · V^{H-1-h}`` (inverse of :func:`sequences_to_index`)."""
    index = jnp.asarray(index)
    powers = vocab_size ** np.arange(horizon - 1, -1, -1, dtype=np.int64)
    return ((index[..., None] // jnp.asarray(powers, dtype=index.dtype)) % vocab_size).astype(jnp.int32)


def sequences_to_index(y: Int[Array, "... H"], vocab_size: int) -> Int[Array, "..."]:
    """Row-major index of sequences: ``Σ_h y_h · V^{H-1-h}`` (the column of :meth:`AutoregressivePolicy.to_tabular`)."""
    y = jnp.asarray(y)
    H = y.shape[-1]
    powers = jnp.asarray(vocab_size ** np.arange(H - 1, -1, -1, dtype=np.int64), dtype=jnp.int32)
    return jnp.sum(y.astype(jnp.int32) * powers, axis=-1)


def _as_array(value, name: str) -> np.ndarray:
    if value is None or isinstance(value, (str, bytes)):
        raise ValueError(f"{name} must be an integer id or an array of them, got {value!r}.")
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{name} must be a rectangular array of integer ids: {err}") from None


def _tempered(lp: Float[Array, " V"], temperature) -> Float[Array, " V"]:
    """log softmax(lp / T), computed as log softmax((lp − max lp) / T).

    The gaps to the maximum are ≤ 0 and the maximum's own is exactly 0, so a tiny T (where lp / T overflows
    to −inf everywhere and the direct form is NaN) gives the greedy limit instead. At T = 1 this is
    bit-identical to ``log_softmax(lp)``, which subtracts the same maximum itself.
    """
    return jax.nn.log_softmax((lp - jnp.max(lp)) / temperature)


def _exclusive_any(mask: Array) -> Array:
    """``out[h] = any(mask[:h])`` along the last axis."""
    c = jnp.cumsum(mask.astype(jnp.int32), axis=-1)
    return (c - mask.astype(jnp.int32)) > 0


class AutoregressivePolicy:
    """Interface and generic machinery of an autoregressive policy π(y_{1:H}|x) = ∏_h π_h(y_h|y_{<h}, x).

    Subclasses are frozen dataclass pytrees that define the static attributes ``num_prompts`` (X),
    ``vocab_size`` (V), ``horizon`` (H), ``eos_id`` (``int`` or ``None``) and the next-token logits
    (see the module docstring). Everything here is pure and jit/vmap-able; argument checks run only on
    concrete values.
    """

    # ---------------------------------------------------------------- subclass hooks
    def _logits_at(self, x, prefix, h):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define _logits_at")  # abstract hook

    def _teacher_forced_logits(self, x, y) -> Float[Array, "H V"]:
        return jax.vmap(lambda h: self._logits_at(x, y, h))(jnp.arange(self.horizon))

    def _init_cache(self, x) -> Any:
        return ()

    def _cached_logits(self, x, prefix, h, cache):
        return self._logits_at(x, prefix, h), cache

    # ---------------------------------------------------------------- validation
    def _check_prompt(self, x) -> None:
        if is_concrete(x):
            xa = _as_array(x, "x")
            if not np.issubdtype(xa.dtype, np.integer):
                raise ValueError(f"x must be an integer prompt id, got dtype {xa.dtype}.")
            if np.any(xa < 0) or np.any(xa >= self.num_prompts):
                raise ValueError(
                    f"prompt id x={xa.tolist()} is outside [0, {self.num_prompts}); this policy has "
                    f"{self.num_prompts} prompts."
                )

    def _check_tokens(self, y, name: str) -> None:
        if is_concrete(y):
            ya = _as_array(y, name)
            if ya.size and not np.issubdtype(ya.dtype, np.integer):
                raise ValueError(f"{name} must hold integer token ids, got dtype {ya.dtype}.")
            if ya.size and (ya.min() < 0 or ya.max() >= self.vocab_size):
                raise ValueError(
                    f"{name} has token ids outside [0, {self.vocab_size}) (min {ya.min()}, max {ya.max()}); "
                    f"the vocabulary has V={self.vocab_size} tokens."
                )

    # ---------------------------------------------------------------- EOS handling
    def _eos_mask(self, log_probs: Float[Array, " V"], done: Array) -> Float[Array, " V"]:
        """After an EOS the next token is EOS with probability 1 (padding that carries no mass)."""
        if self.eos_id is None:
            return log_probs
        forced = jnp.where(jnp.arange(self.vocab_size) == self.eos_id, 0.0, -jnp.inf).astype(log_probs.dtype)
        return jnp.where(done, forced, log_probs)

    def _done(self, prefix, h):
        if self.eos_id is None:
            return jnp.asarray(False)
        return jnp.any((prefix == self.eos_id) & (jnp.arange(self.horizon) < h))

    def _next_log_probs_buffer(self, x, prefix, h) -> Float[Array, " V"]:
        lp = jax.nn.log_softmax(self._logits_at(x, prefix, h))
        return self._eos_mask(lp, self._done(prefix, h))

    # ---------------------------------------------------------------- public API
    def next_log_probs(
        self, x: Int[Array, ""], prefix: Int[Array, " h"], length: Int[Array, ""] | None = None
    ) -> Float[Array, " V"]:
        """log π_h(· | prefix, x): next-token log-probabilities after ``prefix``.

        With ``length=None``, ``prefix`` is exactly the prefix y_{1:h} (static length h < H). With
        ``length`` given, ``prefix`` is an ``[H]`` buffer whose first ``length`` entries form the prefix
        (``length`` may be traced: use this form under ``jit``/``vmap`` with prefixes of varying length).
        """
        H = self.horizon
        self._check_prompt(x)
        prefix = jnp.asarray(prefix, dtype=jnp.int32)
        self._check_tokens(prefix, "prefix")
        if prefix.ndim != 1:
            raise ValueError(f"prefix must be a 1-D token array (one prefix; vmap for many), got shape {prefix.shape}.")
        if length is None:
            h = prefix.shape[0]
            if h >= H:
                raise ValueError(
                    f"prefix has length {h} but the horizon is H={H}: a prefix has at most H-1 tokens for a "
                    "next token to exist."
                )
            buf = jnp.zeros(H, jnp.int32).at[:h].set(prefix)
            return _next_log_probs_jit(self, x, buf, h)
        if prefix.shape[0] != H:
            raise ValueError(f"with length given, prefix must be an [H]={H} buffer, got shape {prefix.shape}.")
        if is_concrete(length) and not (0 <= int(length) < H):
            raise ValueError(f"length must lie in [0, H) = [0, {H}), got {int(length)}.")
        return _next_log_probs_jit(self, x, prefix, length)

    def token_log_probs(self, x: Int[Array, ""], y: Int[Array, " H"]) -> Float[Array, " H"]:
        """Teacher-forced per-token log π_h(y_h | y_{<h}, x) for one full sequence (0 after an EOS)."""
        logits = self._teacher_forced_logits(x, y)
        lp = jax.nn.log_softmax(logits, axis=-1)
        if self.eos_id is not None:
            done = _exclusive_any(y == self.eos_id)
            lp = jax.vmap(self._eos_mask)(lp, done)
        return jnp.take_along_axis(lp, y[:, None], axis=-1)[:, 0]

    def log_prob(self, x: Int[Array, "..."], y: Int[Array, "... H"]) -> Float[Array, "..."]:
        """Teacher-forced log π(y|x) = Σ_h log π_h(y_h | y_{<h}, x) of whole sequences.

        ``y`` has shape ``[..., H]``; ``x`` broadcasts against its leading axes (like
        :meth:`TabularPolicy.log_prob`). Sequences with a non-EOS token after an EOS get ``-inf``.
        """
        H = self.horizon
        self._check_prompt(x)
        self._check_tokens(y, "y")  # before any conversion: int64 ids would wrap around in int32
        y = jnp.asarray(y)
        if y.ndim == 0 or y.shape[-1] != H:
            raise ValueError(
                f"y must have shape [..., H] with H={H}, got {y.shape}"
                + ("; pad shorter responses with the EOS token." if y.ndim and y.shape[-1] < H else
                   "; a response is longer than the horizon H." if y.ndim and y.shape[-1] > H else ".")
            )
        return _log_prob_jit(self, jnp.asarray(x, dtype=jnp.int32), y.astype(jnp.int32))

    def _log_prob_impl(self, x, y):
        batch = jnp.broadcast_shapes(x.shape, y.shape[:-1])
        xb = jnp.broadcast_to(x, batch).reshape(-1)
        yb = jnp.broadcast_to(y, batch + (self.horizon,)).reshape(-1, self.horizon)
        out = jax.vmap(lambda xi, yi: jnp.sum(self.token_log_probs(xi, yi)))(xb, yb)
        return out.reshape(batch)

    def _sample_one(self, key, x, temperature) -> tuple[Int[Array, " H"], Float[Array, ""]]:
        """One response by ``lax.scan`` over positions; returns it with its log π(y|x) (untempered)."""
        H = self.horizon

        def step(carry, inp):
            prefix, cache, total = carry
            h, k = inp
            logits, cache = self._cached_logits(x, prefix, h, cache)
            lp = self._eos_mask(jax.nn.log_softmax(logits), self._done(prefix, h))
            draw_lp = _tempered(lp, temperature)  # T = 1: the same distribution
            tok = inverse_cdf_sample(k, draw_lp, 1)[0]
            return (prefix.at[h].set(tok), cache, total + lp[tok]), None

        carry0 = (jnp.zeros(H, jnp.int32), self._init_cache(x), jnp.zeros((), _float_dtype()))
        (y, _, total), _ = jax.lax.scan(step, carry0, (jnp.arange(H), jax.random.split(key, H)))
        return y, total

    def sample_and_log_prob(
        self, key: PRNGKeyArray, x: Int[Array, ""], num: int, *, temperature: float | None = None
    ) -> tuple[Int[Array, "num H"], Float[Array, " num"]]:
        """Draw ``num`` responses y ~ π(·|x) with their log-probabilities log π(y|x) (Definition 3.2).

        Tokens are drawn left to right inside ``lax.scan`` by the inverse CDF (design.md §4), using the
        family's decoding cache. With ``temperature`` T, tokens are drawn from softmax(log π_h / T) at
        each position, but the returned log-probabilities are always those of the policy itself (T = 1),
        which is what an evaluate query returns.
        """
        num = check_positive_int(num, "num")
        check_key(key)
        self._check_prompt(x)
        if temperature is None:
            temperature = 1.0
        check_positive(temperature, "temperature")
        if is_concrete(temperature):
            fi = np.finfo(np.dtype(_float_dtype()))
            t = float(np.asarray(temperature, np.float64))
            if not fi.tiny <= t <= fi.max:  # subnormal T is flushed to 0 on CPUs/GPUs: 0/0 = NaN
                raise ValueError(
                    f"temperature {temperature!r} is outside the normal range of {fi.dtype} "
                    f"[{fi.tiny:.3g}, {fi.max:.3g}]; it would round to 0 or inf."
                )
        return _sample_jit(self, key, jnp.asarray(x, jnp.int32), num, jnp.asarray(temperature, _float_dtype()))

    def sample(self, key: PRNGKeyArray, x: Int[Array, ""], num: int) -> Int[Array, "num H"]:
        """Draw ``num`` responses ``[num, H]`` for prompt ``x``."""
        return self.sample_and_log_prob(key, x, num)[0]

    @property
    def num_sequences(self) -> int:
        """|Y| = V^H."""
        return self.vocab_size**self.horizon

    def all_sequences(self, max_size: int = MAX_TABULAR_SIZE) -> Int[Array, "Y H"]:
        """All V^H sequences in row-major order (row i is the sequence with index i)."""
        size = self.num_sequences
        if size > max_size:
            raise ValueError(
                f"V^H = {self.vocab_size}^{self.horizon} = {size} sequences exceeds max_size={max_size}; "
                "enumeration is only for small instances (use search or Monte-Carlo estimates instead)."
            )
        return index_to_sequences(jnp.arange(size, dtype=jnp.int32), self.vocab_size, self.horizon)

    def to_tabular(self, max_size: int = MAX_TABULAR_SIZE) -> TabularPolicy:
        """The policy as a :class:`TabularPolicy` with ``log_probs[x, i] = log π(seq_i | x)``.

        Sequences are in row-major order, index = Σ_h y_h V^{H-1-h} (:func:`sequences_to_index`). Rows sum
        to 1 up to floating-point rounding. Raises ``ValueError`` when V^H exceeds ``max_size``.
        """
        return TabularPolicy(log_probs=_table_jit(self, self.all_sequences(max_size)))

    def response_lengths(self, responses: Int[Array, "... H"]) -> Int[Array, "..."]:
        """:func:`sequence_lengths` with this policy's ``eos_id``."""
        return sequence_lengths(responses, self.eos_id)


# Module-level jitted kernels: the policy is a pytree argument, so each (family, static config, shapes)
# compiles once and every later call (eager or inside an outer jit) reuses it.
@jax.jit
def _next_log_probs_jit(policy, x, buf, h):
    return policy._next_log_probs_buffer(x, buf, h)


@jax.jit
def _log_prob_jit(policy, x, y):
    return policy._log_prob_impl(x, y)


@partial(jax.jit, static_argnames="num")
def _sample_jit(policy, key, x, num, temperature):
    keys = jax.random.split(key, num)
    return jax.vmap(lambda k: policy._sample_one(k, x, temperature))(keys)


@jax.jit
def _table_jit(policy, seqs):
    return jax.lax.map(lambda x: jax.vmap(lambda y: jnp.sum(policy.token_log_probs(x, y)))(seqs),
                       jnp.arange(policy.num_prompts))


def _check_eos(eos_id, vocab_size: int) -> int | None:
    if eos_id is None:
        return None
    if isinstance(eos_id, bool) or not isinstance(eos_id, (int, np.integer)) or not 0 <= eos_id < vocab_size:
        raise ValueError(f"eos_id must be None or an integer token id in [0, {vocab_size}), got {eos_id!r}.")
    return int(eos_id)

