"""Tabular conditional policies π(y|x) over finite X and Y, stored as log-probabilities ``[X, Y]``.

The core primitive is *sample-and-evaluate* (Definition 3.2): draw y ~ π(·|x) and return log π(y|x).
Draws use the inverse CDF (``cumsum`` + binary search, O(log Y) per draw) instead of
``jax.random.categorical`` (Gumbel-max, O(Y) per draw): see ``design.md`` §4.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from sharpsim._validation import (
    as_numeric_array,
    check_index,
    check_key,
    check_positive_int,
    check_probability_table,
    is_concrete,
    mark_normalized,
)

__all__ = [
    "TabularPolicy",
    "InverseCDFTable",
    "inverse_cdf_sample",
    "cumulative_sum",
    "upper_bound",
    "TWO_LEVEL_MIN_RESPONSES",
]

#: float32 distributions over more than this many outcomes are drawn in two levels (a block of
#: :data:`TWO_LEVEL_BLOCK` outcomes, then an outcome within it). One float32 uniform lies on a 2⁻²³ grid
#: and a float32 CDF is exact only to about 2⁻²⁴ in absolute terms, so a single-level draw gives an outcome
#: of mass p a probability off by up to ~1e-7 absolute: at Y = 10⁶ (Dirichlet(0.5), typical p ~ 1e-6)
#: 16.8 M draws gave χ² = 2.03·10⁶ against 10⁶ ± 1.4·10³. Two levels resolve each outcome relative to its
#: block's mass instead (the block draw is resolved to ~1e-7 absolute, ~1e-4 of a typical block's mass).
#: Smaller tables and float64 keep the single-level draw, so their random streams are unchanged.
TWO_LEVEL_MIN_RESPONSES = 1 << 16
TWO_LEVEL_BLOCK = 1 << 10


def _take(a: Array, *index) -> Array:
    """``a[index]`` without NumPy's wrap-around of negative indices (so checkify's index checks see them).

    Values are those of ``a[index]`` for every in-range index; out-of-range indices are clamped by XLA.
    """
    return a.at[index].get(wrap_negative_indices=False)


def _float_dtype():
    """Default float dtype: float64 when ``jax_enable_x64`` is on, float32 otherwise."""
    return jnp.result_type(float)


def cumulative_sum(p: Float[Array, "... Y"], block: int = 64) -> Float[Array, "... Y"]:
    """Cumulative sum along the last axis as a blocked triangular matmul.

    XLA:CPU lowers ``jnp.cumsum`` to a reduce-window that measured ~4x slower than this on 2 cores at
    [1024, 4096]; within-block prefix sums are a ``[block, block]`` upper-triangular matmul (full float32
    precision, so GPUs do not drop to TF32) and block offsets a short ``cumsum`` over Y/block entries.
    """
    Y = p.shape[-1]
    if Y <= 2 * block:
        return jnp.cumsum(p, axis=-1)
    pad = (-Y) % block
    r = jnp.pad(p, [(0, 0)] * (p.ndim - 1) + [(0, pad)]).reshape(p.shape[:-1] + ((Y + pad) // block, block))
    inner = jnp.matmul(r, jnp.triu(jnp.ones((block, block), p.dtype)), precision=jax.lax.Precision.HIGHEST)
    totals = inner[..., -1]
    offsets = jnp.cumsum(totals, axis=-1) - totals
    return (inner + offsets[..., None]).reshape(p.shape[:-1] + (Y + pad,))[..., :Y]


def _uniform_below(key: PRNGKeyArray, total: Float[Array, "..."], num: int) -> tuple[Float[Array, " num"], Float[Array, " num"]]:
    """``r ~ U[0, 1)`` and ``u = r · total`` clamped strictly below ``total`` (against rounding up).

    ``total`` is a scalar or one total per draw (``[num]``).
    """
    r = jax.random.uniform(key, (num,), dtype=total.dtype)
    return r, jnp.minimum(r * total, jnp.nextafter(total, jnp.zeros_like(total)))


def _two_level(dtype, size: int) -> bool:
    """Whether draws over ``size`` outcomes in ``dtype`` use the two-level sampler (float32, large size)."""
    return jnp.dtype(dtype) == jnp.float32 and int(size) > TWO_LEVEL_MIN_RESPONSES


def _two_level_tables(probs: Float[Array, "... Y"]) -> tuple[Float[Array, "... Yp"], Float[Array, "... nb"]]:
    """Within-block prefix sums ``[..., nb·B]`` (zero-padded) and the block CDF ``[..., nb]``."""
    B = TWO_LEVEL_BLOCK
    Y = probs.shape[-1]
    nb = -(-Y // B)
    p = jnp.pad(probs, [(0, 0)] * (probs.ndim - 1) + [(0, nb * B - Y)])
    local = cumulative_sum(p.reshape(p.shape[:-1] + (nb, B)))
    block_cdf = jnp.cumsum(local[..., -1], axis=-1)
    return local.reshape(p.shape), block_cdf


def _two_level_draw(key, flat_local, local_start, block_cdf, block_start, nb: int, num: int) -> Int[Array, " num"]:
    """A block by the inverse CDF of the block masses, then an outcome within it from a fresh uniform.

    ``flat_local[local_start + b·B + j]`` are the within-block prefix sums of block b, ``block_cdf`` (from
    ``block_start``) the block CDF. A block of zero mass is never chosen, nor (as in the one-level draw) an
    outcome of zero mass within a block. Outcomes come back as ``b·B + j`` (≤ the last real outcome).
    """
    k_block, k_in = jax.random.split(key)
    _, u_block = _uniform_below(k_block, block_cdf[block_start + nb - 1], num)
    b = upper_bound(block_cdf, block_start, nb, u_block)
    return _two_level_within(k_in, flat_local, local_start, b, num)


def _two_level_within(key, flat_local, local_start, b: Int[Array, " num"], num: int) -> Int[Array, " num"]:
    """Within-block draws for blocks ``b``: a fresh uniform below each block's mass, an unrolled search."""
    B = TWO_LEVEL_BLOCK
    starts = local_start + b * B
    _, u_in = _uniform_below(key, flat_local[starts + B - 1], num)
    return b * B + upper_bound(flat_local, starts, B, u_in, int(B).bit_length(), unroll=True)


def upper_bound(
    flat_cdf: Float[Array, " L"],
    start: Int[Array, "..."],
    size: int | Int[Array, "..."],
    u: Float[Array, " num"],
    num_steps: int | None = None,
    *,
    unroll: bool = False,
) -> Int[Array, " num"]:
    """``#{i < size : flat_cdf[start + i] ≤ u}`` for a non-decreasing segment: ``searchsorted(side="right")``.

    A branchless binary search over power-of-two steps on a flat array, so one call can search row ``x``
    of a ``[X, Y]`` table at offset ``start = x·Y`` without slicing it out; under ``vmap`` over rows each
    step is one flat gather, which XLA:CPU runs faster than ``jnp.searchsorted``'s per-row gathers
    (design.md §4). ``start`` and ``size`` may differ per query (broadcast against ``u``); the static
    ``num_steps`` must be at least ``max(size).bit_length()`` and defaults to that for an ``int`` ``size``.
    ``unroll`` writes the steps out so XLA fuses them into one kernel instead of a loop.
    """
    num_steps = int(size).bit_length() if num_steps is None else int(num_steps)
    top = jnp.int32(1 << (num_steps - 1))
    last = jnp.maximum(jnp.asarray(size, jnp.int32) - 1, 0)

    def step(i, pos):
        width = jnp.right_shift(top, i)
        cand = pos + width - 1  # the last index the step would cover
        ok = (cand < size) & (flat_cdf[start + jnp.minimum(cand, last)] <= u)
        return jnp.where(ok, pos + width, pos)

    pos = jnp.zeros(u.shape, jnp.int32)
    if unroll:
        for i in range(num_steps):
            pos = step(i, pos)
        return pos
    return jax.lax.fori_loop(0, num_steps, step, pos)


def inverse_cdf_sample(
    key: PRNGKeyArray, log_probs: Float[Array, " Y"], num: int
) -> Int[Array, " num"]:
    """Draw ``num`` i.i.d. indices from the distribution ``exp(log_probs)`` by the inverse CDF.

    Zero-probability entries are never returned: ``u`` is uniform on ``[0, total)`` (clamped strictly below
    ``total``, against ``uniform · total`` rounding up), and the first index whose cumulative mass exceeds
    ``u`` always carries positive mass, since a zero entry does not increase the CDF.

    In float32 with more than :data:`TWO_LEVEL_MIN_RESPONSES` entries the draw is two-level (a block, then
    an entry within it; see :data:`TWO_LEVEL_MIN_RESPONSES`) so that small probabilities are not rounded to
    the 2⁻²³ grid of one float32 uniform. Residual limit: a block's own probability is still resolved to
    ~1e-7 absolute, which matters only for blocks of 1,024 consecutive entries with mass below ~1e-5.
    """
    Y = log_probs.shape[-1]
    if _two_level(log_probs.dtype, Y):
        local, block_cdf = _two_level_tables(jnp.exp(log_probs))
        nb = block_cdf.shape[-1]
        return _two_level_draw(key, local, jnp.int32(0), block_cdf, jnp.int32(0), nb, num)
    cdf = cumulative_sum(jnp.exp(log_probs))
    _, u = _uniform_below(key, cdf[-1], num)
    return upper_bound(cdf, jnp.int32(0), cdf.shape[-1], u)


class _LogProbViews:
    """Views shared by the pytrees that hold a table ``log_probs [X, Y]``."""

    log_probs: Float[Array, "X Y"]

    @property
    def num_prompts(self) -> int:
        return self.log_probs.shape[-2]

    @property
    def num_responses(self) -> int:
        return self.log_probs.shape[-1]

    def _check_prompt(self, x, name: str = "x") -> None:
        check_index(x, self.num_prompts, name, "prompt id")

    def log_prob(self, x: Int[Array, "..."], y: Int[Array, "..."]) -> Float[Array, "..."]:
        """log π(y|x), broadcasting ``x`` against ``y`` (the *evaluate* half of an oracle call).

        Concrete ``x`` and ``y`` must be integers in ``[0, X)`` and ``[0, Y)`` (else ``ValueError``). Under
        ``jit``/``vmap`` they cannot be checked: XLA clamps an out-of-range index to the nearest valid one
        (negative indices are not wrapped around); wrap the traced function in :func:`sharpsim.checked` to
        turn that into an error.
        """
        self._check_prompt(x)
        check_index(y, self.num_responses, "y", "response id")
        return _take(self.log_probs, x, y)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TabularPolicy(_LogProbViews):
    """A conditional distribution π(y|x) over ``X`` prompts and ``Y`` responses.

    A pytree whose only leaf is ``log_probs`` (``[X, Y]``, rows normalised, ``-inf`` for zero mass), so
    policies can be stacked and ``vmap``-ed over, passed through ``jit``, and differentiated.

    Build one with :meth:`from_probs` (validated) or :meth:`from_logits` (normalised by ``log_softmax``).

    >>> import jax, jax.numpy as jnp
    >>> pi = TabularPolicy.from_probs(jnp.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]))
    >>> pi.num_prompts, pi.num_responses
    (2, 3)
    >>> ys, lps = pi.sample_and_log_prob(jax.random.key(0), 1, 4)
    >>> bool(jnp.all(lps == pi.log_prob(1, ys)))
    True
    """

    log_probs: Float[Array, "X Y"]

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_probs(cls, probs: Float[Array, "X Y"]) -> "TabularPolicy":
        """From a probability table. Rows must be non-negative and sum to 1 (tolerance in the error)."""
        check_probability_table(probs, "probs", ndim=2)
        p = jnp.asarray(probs, dtype=_float_dtype())
        # Re-normalise in the working dtype so rows sum to 1 to machine precision.
        log_p = jnp.log(p) - jnp.log(jnp.sum(p, axis=-1, keepdims=True))
        mark_normalized(log_p)
        return cls(log_probs=log_p)

    @classmethod
    def from_logits(cls, logits: Float[Array, "X Y"]) -> "TabularPolicy":
        """From unnormalised logits (``-inf`` allowed for excluded responses), via ``log_softmax``."""
        if is_concrete(logits):
            as_numeric_array(logits, "logits")
        L = jnp.asarray(logits, dtype=_float_dtype())
        if is_concrete(logits):
            a = np.asarray(L)
            if a.ndim != 2:
                raise ValueError(f"logits must have shape [X, Y], got {a.shape}.")
            if a.size == 0:
                raise ValueError(f"logits is empty (shape {a.shape}); give at least one prompt and one response.")
            if np.any(np.isnan(a)) or np.any(a == np.inf):
                raise ValueError("logits contain NaN or +inf; use finite values (or -inf to exclude a response).")
            if np.any(np.all(a == -np.inf, axis=-1)):
                raise ValueError("a row of logits is all -inf; every prompt needs at least one possible response.")
        out = jax.nn.log_softmax(L, axis=-1)
        mark_normalized(out)
        return cls(log_probs=out)

    # ------------------------------------------------------------------ views
    @property
    def probs(self) -> Float[Array, "X Y"]:
        """π(y|x) as a ``[X, Y]`` table."""
        return jnp.exp(self.log_probs)

    # ------------------------------------------------------------------ sampling
    def sample(self, key: PRNGKeyArray, x: Int[Array, ""], num: int) -> Int[Array, " num"]:
        """Draw ``num`` responses y ~ π(·|x) for one prompt ``x`` (``vmap`` for many prompts).

        A concrete ``x`` must be an integer in ``[0, X)`` (``ValueError`` otherwise); a traced one is clamped
        by XLA when out of range (see :meth:`log_prob` and :func:`sharpsim.checked`).
        """
        num = check_positive_int(num, "num")
        check_key(key)
        self._check_prompt(x)
        return inverse_cdf_sample(key, _take(self.log_probs, x), num)

    def sample_and_log_prob(
        self, key: PRNGKeyArray, x: Int[Array, ""], num: int
    ) -> tuple[Int[Array, " num"], Float[Array, " num"]]:
        """Draw ``num`` responses for prompt ``x`` together with their log-probabilities log π(y|x).

        Prompt checks as in :meth:`sample`.
        """
        num = check_positive_int(num, "num")
        check_key(key)
        self._check_prompt(x)
        row = _take(self.log_probs, x)
        ys = inverse_cdf_sample(key, row, num)
        return ys, row[ys]

    def inverse_cdf_table(self) -> "InverseCDFTable":
        """This policy prepared for many sample-and-evaluate calls: its CDF and a guide table, built once.

        Draws are identical to :meth:`sample_and_log_prob` for the same key; the
        :class:`~sharpsim.SampleEvaluateOracle` builds one for a tabular ``pi_base`` automatically.
        """
        if _two_level(self.log_probs.dtype, self.num_responses):  # cdf: within-block sums; guide: over blocks
            local, block_cdf, guide, widest = _two_level_tables_jit(self.log_probs)
            depth = int(widest).bit_length() if is_concrete(widest) else int(block_cdf.shape[-1]).bit_length()
            return InverseCDFTable(self.log_probs, local, guide, depth, two_level=True, block_cdf=block_cdf)
        cdf, guide, widest = _build_table(self.log_probs)
        # The search depth is static (unrolled steps): the widest bucket's bit length when the table is
        # concrete, else enough for a whole row.
        depth = int(widest).bit_length() if is_concrete(widest) else int(self.num_responses).bit_length()
        return InverseCDFTable(self.log_probs, cdf, guide, depth)

    def __repr__(self) -> str:  # arrays can be huge: show the shape, not the table
        lp = self.log_probs
        return f"TabularPolicy(X={lp.shape[-2]}, Y={lp.shape[-1]}, dtype={lp.dtype})"


def _num_buckets(Y: int) -> int:
    """Guide-table buckets: the power of two ≥ Y (a power of two keeps ``j / K`` exact in floating point)."""
    return 1 << max(int(Y) - 1, 0).bit_length()


@jax.jit
def _two_level_tables_jit(log_probs):
    local, block_cdf = _two_level_tables(jnp.exp(log_probs))
    nb = block_cdf.shape[-1]
    K = _num_buckets(nb)
    thresholds = (jnp.arange(K + 1, dtype=block_cdf.dtype) / K) * block_cdf[:, -1:]
    guide = jax.vmap(lambda row, t: upper_bound(row, jnp.int32(0), nb, t))(block_cdf, thresholds)
    return local, block_cdf, guide, jnp.max(guide[:, 1:] - guide[:, :-1])


@jax.jit
def _build_table(log_probs: Float[Array, "X Y"]):
    """CDF ``[X, Y]``, guide ``[X, K + 1]`` and its widest bucket, for :class:`InverseCDFTable`."""
    X, Y = log_probs.shape
    K = _num_buckets(Y)
    cdf = cumulative_sum(jnp.exp(log_probs))
    thresholds = (jnp.arange(K + 1, dtype=cdf.dtype) / K) * cdf[:, -1:]  # fl((j / K) · total), j / K exact
    guide = jax.vmap(lambda row, t: upper_bound(row, jnp.int32(0), Y, t))(cdf, thresholds)
    return cdf, guide, jnp.max(guide[:, 1:] - guide[:, :-1])


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class InverseCDFTable(_LogProbViews):
    """A tabular policy prepared for repeated sampling (Walker's *guide table* over the inverse CDF).

    Built once by :meth:`TabularPolicy.inverse_cdf_table` (X·Y cumulative sums plus X·(K+1) searches,
    with K the power of two ≥ Y): the CDF ``[X, Y]``, the guide ``g[x, j] = #{y : cdf[x, y] ≤ (j/K)·total}``
    and ``depth``, the bit length of the widest bucket ``max g[x, j+1] − g[x, j]`` (static: one compiled
    search per depth). A draw with ``r ~ U[0, 1)`` and ``u = r·total`` lies in bucket ``j = ⌊r·K⌋``
    (``r·K`` and ``j/K`` are exact, and rounding is monotone, so ``g[x, j] ≤ answer ≤ g[x, j+1]``), hence
    its index is ``g[x, j] + #{y ≥ g[x, j] : cdf[x, y] ≤ u}``: one guide lookup and a ``depth``-step
    unrolled binary search (Dirichlet(0.5) tables with Y = 4096: depth 4 instead of 12; a table built
    under a trace searches whole rows); no per-call ``exp``/``cumsum``.
    Draws equal ``TabularPolicy.sample_and_log_prob`` for the same key (same uniforms, same CDF).

    >>> import jax, jax.numpy as jnp
    >>> pi = TabularPolicy.from_probs(jnp.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]))
    >>> table = pi.inverse_cdf_table()
    >>> ys, lps = table.sample_and_log_prob(jax.random.key(0), 1, 4)
    >>> bool(jnp.all(ys == pi.sample(jax.random.key(0), 1, 4)))
    True
    """

    log_probs: Float[Array, "X Y"]
    cdf: Float[Array, "X Y"]
    guide: Int[Array, "X K1"]
    depth: int = dataclasses.field(metadata=dict(static=True))
    #: float32 tables over more than TWO_LEVEL_MIN_RESPONSES responses: ``cdf`` holds the within-block
    #: prefix sums ``[X, nb·B]`` and ``guide`` the block CDF ``[X, nb]`` (see :func:`inverse_cdf_sample`).
    two_level: bool = dataclasses.field(default=False, metadata=dict(static=True))
    block_cdf: Any = None  # [X, nb] block CDF of a two-level table (``guide`` then indexes blocks)

    def sample(self, key: PRNGKeyArray, x: Int[Array, ""], num: int) -> Int[Array, " num"]:
        """Draw ``num`` responses y ~ π(·|x) for one prompt ``x`` (``vmap`` for many prompts)."""
        num = check_positive_int(num, "num")
        check_key(key)
        self._check_prompt(x)
        if self.two_level:  # the block by the guide table over blocks, then the within-block search
            x = jnp.asarray(x, jnp.int32)
            Yp, nb = self.cdf.shape[-1], self.block_cdf.shape[-1]
            K = self.guide.shape[-1] - 1
            flat_blocks = self.block_cdf.reshape(-1)
            k_block, k_in = jax.random.split(key)
            r, u = _uniform_below(k_block, _take(flat_blocks, x * nb + nb - 1), num)
            lo = _take(self.guide, x, jnp.minimum((r * K).astype(jnp.int32), K - 1))
            width = jnp.minimum((1 << self.depth) - 1, nb - lo)
            b = lo + upper_bound(flat_blocks, x * nb + lo, width, u, self.depth, unroll=True)
            return _two_level_within(k_in, self.cdf.reshape(-1), x * Yp, b, num)
        Y = self.cdf.shape[-1]
        K = self.guide.shape[-1] - 1
        x = jnp.asarray(x, jnp.int32)
        flat = self.cdf.reshape(-1)
        r, u = _uniform_below(key, _take(flat, x * Y + Y - 1), num)
        lo = _take(self.guide, x, jnp.minimum((r * K).astype(jnp.int32), K - 1))  # r·K exact: K is a power of 2
        width = jnp.minimum((1 << self.depth) - 1, Y - lo)  # the answer lies in [lo, lo + width]
        return lo + upper_bound(flat, x * Y + lo, width, u, self.depth, unroll=True)

    def sample_and_log_prob(
        self, key: PRNGKeyArray, x: Int[Array, ""], num: int
    ) -> tuple[Int[Array, " num"], Float[Array, " num"]]:
        """Draw ``num`` responses for prompt ``x`` together with log π(y|x)."""
        ys = self.sample(key, x, num)
        return ys, _take(self.log_probs.reshape(-1), jnp.asarray(x, jnp.int32) * self.log_probs.shape[-1] + ys)

    def __repr__(self) -> str:
        lp = self.log_probs
        return f"InverseCDFTable(X={lp.shape[-2]}, Y={lp.shape[-1]}, dtype={lp.dtype})"
