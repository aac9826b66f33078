"""Markov-table autoregressive policies: the next token depends on the prompt, the position and the previous token.

    π(y_{1:H} | x) = ∏_{h} π_h(y_h | y_{h-1}, x),    π_h(v | p, x) = softmax_v L[x, h, p, v],

with ``p = V`` the start state at h = 0. It is the simplest autoregressive family of theory.md §1 for
which the sequence-level argmax (Eq. 5) is computable exactly by dynamic programming (Viterbi,
:func:`sharpsim.decoding.viterbi`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from sharpsim._validation import as_numeric_array, check_probability_table, is_concrete
from sharpsim.policies._autoregressive import AutoregressivePolicy, _check_eos

__all__ = ["MarkovPolicy"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MarkovPolicy(AutoregressivePolicy):
    """π_h(y_h | y_{h-1}, x) from a table ``log_probs[x, h, prev, v]`` of shape ``[X, H, V+1, V]``.

    ``prev = V`` is the start state (used at h = 0 only); rows are normalised over ``v``. With ``eos_id``
    set, every position after the first EOS is forced to EOS (see :mod:`sharpsim.policies._autoregressive`).

    >>> import jax, jax.numpy as jnp
    >>> pi = MarkovPolicy.from_logits(jnp.zeros((1, 3, 3, 2)))   # X=1, H=3, V=2: uniform
    >>> float(jnp.exp(pi.log_prob(0, jnp.array([0, 1, 1]))))
    0.125
    """

    log_probs: Float[Array, "X H Vp1 V"]
    eos_id: int | None = dataclasses.field(default=None, metadata=dict(static=True))

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_logits(cls, logits: Float[Array, "X H Vp1 V"], *, eos_id: int | None = None) -> "MarkovPolicy":
        """From unnormalised logits ``L[x, h, prev, v]`` (``-inf`` allowed), normalised by ``log_softmax`` over v."""
        if is_concrete(logits):
            as_numeric_array(logits, "logits")
        L = jnp.asarray(logits, dtype=jnp.result_type(float))
        cls._check_shape(L, "logits")
        if is_concrete(logits):
            a = np.asarray(L)
            if np.any(np.isnan(a)) or np.any(a == np.inf):
                raise ValueError("logits contain NaN or +inf; use finite values (or -inf to exclude a token).")
            if np.any(np.all(a == -np.inf, axis=-1)):
                raise ValueError("a row L[x, h, prev, :] is all -inf; every state needs at least one possible next token.")
        return cls(log_probs=jax.nn.log_softmax(L, axis=-1), eos_id=_check_eos(eos_id, L.shape[-1]))

    @classmethod
    def from_probs(cls, probs: Float[Array, "X H Vp1 V"], *, eos_id: int | None = None) -> "MarkovPolicy":
        """From conditional probabilities ``P[x, h, prev, v]`` (rows over v sum to 1)."""
        if is_concrete(probs):
            as_numeric_array(probs, "probs")
        P = jnp.asarray(probs, dtype=jnp.result_type(float))
        cls._check_shape(P, "probs")
        check_probability_table(probs, "probs")
        log_p = jnp.log(P) - jnp.log(jnp.sum(P, axis=-1, keepdims=True))
        return cls(log_probs=log_p, eos_id=_check_eos(eos_id, P.shape[-1]))

    @staticmethod
    def _check_shape(a, name):
        if a.ndim != 4 or a.shape[2] != a.shape[3] + 1:
            raise ValueError(
                f"{name} must have shape [X, H, V+1, V] (prompt, position, previous token with V = start, "
                f"next token), got {a.shape}."
            )

    # ---------------------------------------------------------------- static sizes
    @property
    def num_prompts(self) -> int:
        return self.log_probs.shape[0]

    @property
    def horizon(self) -> int:
        return self.log_probs.shape[1]

    @property
    def vocab_size(self) -> int:
        return self.log_probs.shape[3]

    # ---------------------------------------------------------------- the model
    def _logits_at(self, x, prefix, h):
        prev = jnp.where(h > 0, prefix[jnp.maximum(h - 1, 0)], self.vocab_size)
        return self.log_probs[x, h, prev]

    def _teacher_forced_logits(self, x, y):
        prev = jnp.concatenate([jnp.array([self.vocab_size], jnp.int32), y[:-1].astype(jnp.int32)])
        return self.log_probs[x, jnp.arange(self.horizon), prev]

    def effective_log_probs(self) -> Float[Array, "X H Vp1 V"]:
        """The transition table with EOS forcing applied: from state ``prev = eos`` the next token is EOS.

        With EOS the Markov state still suffices: after the first EOS every token is EOS, so "an EOS has
        occurred" is the same as "the previous token is EOS" on every sequence of positive probability.
        """
        if self.eos_id is None:
            return self.log_probs
        V = self.vocab_size
        forced = jnp.where(jnp.arange(V) == self.eos_id, 0.0, -jnp.inf).astype(self.log_probs.dtype)
        return self.log_probs.at[:, :, self.eos_id, :].set(forced)

    def __repr__(self) -> str:
        X, H, _, V = self.log_probs.shape
        return f"MarkovPolicy(X={X}, H={H}, V={V}, eos_id={self.eos_id}, dtype={self.log_probs.dtype})"
