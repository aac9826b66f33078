"""Input checks that turn bad arguments into a ``ValueError`` naming the argument and the fix (the one home
of argument validation: the simulator's checks and, at the end, the bridge's user-facing ones).

Checks run eagerly, on concrete values only: under ``jit``/``vmap`` tracing the values are unknown, so
every check here silently passes through tracers (the eager call of the same function did the check).
"""

from __future__ import annotations

import math
import numbers
import weakref
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

__all__ = [
    "is_concrete",
    "as_numeric_array",
    "check_finite",
    "check_key",
    "check_index",
    "check_log_prob_table",
    "check_normalized_policy",
    "mark_normalized",
    "checked",
    "MAX_INT32",
    "check_probability_table",
    "check_distribution",
    "check_open_unit",
    "check_gamma",
    "check_positive",
    "check_nonnegative",
    "check_positive_int",
    "row_sum_tolerance",
    "check_float",
    "check_count",
    "check_optional_count",
    "check_prompts",
]


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds actual values (not a JAX tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def row_sum_tolerance(dtype) -> float:
    """Tolerance on ``|sum(row) - 1|`` accepted by the probability checks: 1e-4 (float32) or 1e-9 (float64)."""
    return 1e-9 if np.dtype(dtype) == np.float64 else 1e-4


def check_probability_table(probs: Any, name: str = "probs", *, ndim: int | None = None) -> None:
    """Check that ``probs`` holds conditional distributions along its last axis.

    Raises ``ValueError`` for NaN/inf or negative entries and rows whose sum differs from 1 by more than
    :func:`row_sum_tolerance` of the dtype.
    """
    if not is_concrete(probs):
        return
    p = as_numeric_array(probs, name)
    if ndim is not None and p.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {p.shape}.")
    if p.size == 0:
        raise ValueError(f"{name} is empty (shape {p.shape}); give at least one prompt and one response.")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} contains NaN or inf entries; every probability must be a finite number in [0, 1].")
    if np.any(p < 0):
        raise ValueError(f"{name} has negative entries (min {p.min():.3g}); probabilities must be >= 0.")
    tol = row_sum_tolerance(p.dtype if p.dtype in (np.float32, np.float64) else np.float64)
    sums = p.sum(axis=-1, dtype=np.float64)
    bad = np.abs(sums - 1.0) > tol
    if np.any(bad):
        idx = np.argwhere(bad)[0]
        raise ValueError(
            f"{name}: each row must sum to 1 within {tol:g} (dtype {p.dtype}); row {tuple(idx)} sums to "
            f"{sums[tuple(idx)]:.10g}. Normalise the rows (P / P.sum(-1, keepdims=True)) or use from_logits."
        )


def check_distribution(mu: Any, size: int | None = None, name: str = "mu") -> None:
    """Check a 1-D probability vector (e.g. the prompt distribution μ), optionally of a given size."""
    if not is_concrete(mu):
        return
    m = np.asarray(mu)
    if m.ndim != 1:
        raise ValueError(f"{name} must be a 1-D probability vector, got shape {m.shape}.")
    if size is not None and m.shape[0] != size:
        raise ValueError(
            f"{name} has {m.shape[0]} entries but the policy has {size} prompts; give one probability per prompt."
        )
    check_probability_table(m, name)


def check_open_unit(value: Any, name: str) -> None:
    """Check ``0 < value < 1`` (ε, δ, ρ)."""
    if not is_concrete(value):
        return
    v = _scalar(value, name)
    if not (0.0 < v < 1.0) or math.isnan(v):
        raise ValueError(f"{name} must lie in the open interval (0, 1), got {v!r}.")


def check_gamma(value: Any, name: str = "gamma") -> None:
    """Check ``0 <= gamma < 1`` (approximate-maximiser slack of Appendix F.1)."""
    if not is_concrete(value):
        return
    v = _scalar(value, name)
    if not (0.0 <= v < 1.0) or math.isnan(v):
        raise ValueError(f"{name} must lie in [0, 1), got {v!r}; gamma = 0 is the exact argmax.")


def check_positive(value: Any, name: str, *, allow_inf: bool = False) -> None:
    """Check ``value > 0`` and finite (e.g. the KL coefficient β); ``allow_inf`` admits ``+inf``."""
    if not is_concrete(value):
        return
    v = _scalar(value, name)
    if not v > 0.0 or (v == math.inf and not allow_inf):
        raise ValueError(f"{name} must be > 0 (and finite), got {v!r}.")


def check_nonnegative(value: Any, name: str, *, allow_inf: bool = False) -> None:
    """Check ``value >= 0`` and finite (e.g. the optimism coefficient α); ``allow_inf`` admits ``+inf``."""
    if not is_concrete(value):
        return
    v = _scalar(value, name)
    if not v >= 0.0 or (v == math.inf and not allow_inf):
        raise ValueError(f"{name} must be >= 0 (and finite), got {v!r}.")


def check_finite(value: Any, name: str) -> float | None:
    """Check that a scalar is a finite real number and return it as ``float`` (``None`` under a trace)."""
    if not is_concrete(value):
        return None
    v = _scalar(value, name)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v!r}.")
    return v


#: Largest size accepted for a count or shape: sampler indices and query counts are int32.
MAX_INT32 = 2**31 - 1


def check_positive_int(value: Any, name: str) -> int:
    """Check that ``value`` is a Python/NumPy integer in [1, 2³¹ − 1] and return it as ``int`` (shapes are static)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be a positive integer (a static shape), got {value!r} of type {type(value).__name__}.")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}.")
    if value > MAX_INT32:
        raise ValueError(f"{name} = {value} is too large: counts and indices are int32, so at most 2^31 - 1.")
    return int(value)


# ------------------------------------------------------------------------------------------------ arrays
def _scalar(value: Any, name: str) -> float:
    """``value`` as a Python float, or a ``ValueError`` naming ``name`` (strings, arrays with > 1 entry, None)."""
    if isinstance(value, (str, bytes)) or value is None:
        raise ValueError(f"{name} must be a real number, got {value!r} of type {type(value).__name__}.")
    a = as_numeric_array(value, name)
    if a.size != 1:
        raise ValueError(f"{name} must be a scalar, got an array of shape {a.shape}.")
    return float(a.reshape(()))


def as_numeric_array(value: Any, name: str) -> np.ndarray:
    """``np.asarray(value)`` for a real-valued array, or a ``ValueError`` naming ``name``.

    Rejects strings, objects, complex numbers and ragged nested lists (NumPy's own errors do not say which
    argument was wrong).
    """
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{name} must be a rectangular array of numbers: {err}") from None
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}.")
    return a


def check_index(index: Any, size: int, name: str, what: str = "index") -> None:
    """Check concrete integer indices ``0 <= index < size``; raise ``ValueError`` naming ``name`` otherwise.

    Used for prompt ids x and response ids y of tabular policies. JAX indexing itself never fails: out of
    range indices are clamped (and negative ones wrap), which silently returns another entry. Under
    ``jit``/``vmap`` the values are unknown and nothing is checked; use :func:`checked` there.
    """
    if not is_concrete(index):
        return
    if isinstance(index, (str, bytes)) or index is None:
        raise ValueError(f"{name} must be an integer {what} in [0, {size}), got {index!r}.")
    try:
        a = np.asarray(index)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{name} must be an integer {what} or an array of them: {err}") from None
    if a.size == 0:
        return
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer {what}s in [0, {size}), got dtype {a.dtype}.")
    if a.size and (a.min() < 0 or a.max() >= size):
        bad = a[(a < 0) | (a >= size)].ravel()[0]
        raise ValueError(
            f"{name} has {what} {int(bad)} outside [0, {size}) (there are {size}); JAX would clamp it to a "
            "different entry silently."
        )


def check_key(key: Any, name: str = "key") -> None:
    """Check that ``key`` is a JAX PRNG key: a typed key (``jax.random.key``) or a raw ``uint32`` key.

    The check uses only the dtype, so it also runs (for free) on tracers inside ``jit``/``vmap``.
    """
    dtype = getattr(key, "dtype", None)
    if dtype is not None:
        if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            return
        if np.dtype(dtype) == np.uint32 and np.ndim(key) >= 1:
            return  # legacy raw key (jax.random.PRNGKey), e.g. shape [2]
    got = f"{type(key).__name__} {key!r}" if isinstance(key, (int, float, str)) or key is None else (
        f"{type(key).__name__} of dtype {dtype} and shape {getattr(key, 'shape', None)}")
    raise ValueError(f"{name} must be a JAX PRNG key, e.g. jax.random.key(seed) (split it for several calls); got {got}.")


def check_log_prob_table(log_probs: Any, name: str, *, tol: float | None = None) -> None:
    """Check a table of log-probabilities: no NaN or +inf, and every row (last axis) a normalised distribution.

    ``tol`` bounds ``|Σ_y exp(log_probs) − 1|``; by default 1e-3 in float32 and 1e-8 in float64 (looser than
    :func:`row_sum_tolerance`: a table computed in float32, e.g. a best-of-N law or a class member, carries
    rounding of its own). Concrete arrays only.
    """
    if not is_concrete(log_probs):
        return
    raw = as_numeric_array(log_probs, name)
    a = raw.astype(np.float64)
    if a.size == 0:
        raise ValueError(f"{name} is empty (shape {a.shape}).")
    if np.any(np.isnan(a)) or np.any(a == np.inf):
        raise ValueError(f"{name} contains NaN or +inf; give log-probabilities (−inf allowed for zero mass).")
    if tol is None:
        tol = 1e-8 if raw.dtype == np.float64 else 1e-3
    sums = np.exp(a).sum(axis=-1)
    if np.any(np.abs(sums - 1) > tol):
        idx = np.unravel_index(np.argmax(np.abs(sums - 1)), sums.shape)
        raise ValueError(
            f"{name}: every row must be a normalised log-distribution (Σ_y exp = 1 within {tol:g}); row {idx} "
            f"sums to {sums[idx]:.6g}. Build policies with TabularPolicy.from_probs or from_logits."
        )


# Tables already known to be normalised (built by from_probs/from_logits or checked once): keyed by id,
# with a weak reference so a recycled id is not mistaken for the checked array.
_NORMALIZED: dict[int, weakref.ref] = {}


def mark_normalized(log_probs: Any) -> None:
    """Record that the concrete array ``log_probs`` is a normalised table (skips later re-checks)."""
    if not is_concrete(log_probs) or not isinstance(log_probs, jax.Array):
        return
    key = id(log_probs)
    try:
        _NORMALIZED[key] = weakref.ref(log_probs, lambda _r, k=key: _NORMALIZED.pop(k, None))
    except TypeError:  # not weak-referenceable: just do not cache
        pass


def check_normalized_policy(pi: Any, name: str) -> None:
    """Check that a tabular policy entering a metric has normalised rows (once per table; concrete only).

    A :class:`~sharpsim.TabularPolicy` built directly from an arbitrary array (rows summing to 3, NaN) would
    otherwise give a metric that is silently wrong.
    """
    lp = getattr(pi, "log_probs", None)
    if lp is None or not is_concrete(lp):
        return
    ref = _NORMALIZED.get(id(lp))
    if ref is not None and ref() is lp:
        return
    try:
        check_log_prob_table(lp, f"{name}.log_probs")
    except ValueError as err:
        raise ValueError(f"{err} ({name} is not a probability table.)") from None
    mark_normalized(lp)


# ------------------------------------------------------------------------------------------------ checked mode
def checked(fn):
    """``fn`` with out-of-range indices turned into errors under ``jit``/``vmap`` (``jax.experimental.checkify``).

    Inside traced code indices are unknown when the Python checks run, and XLA clamps an out-of-range
    gather index to the nearest valid one. ``checked(fn)(*args)`` traces ``fn`` with checkify's index
    checks and raises ``jax.experimental.checkify.JaxRuntimeError`` naming the out-of-bounds access
    (negative prompt/response indices are treated as out of bounds by the tabular policies, which do not
    wrap them). It costs one bounds comparison per gather: use it to debug, not in production loops.

    >>> import jax, jax.numpy as jnp
    >>> from sharpsim import TabularPolicy
    >>> pi = TabularPolicy.from_probs(jnp.array([[0.5, 0.5]]))
    >>> f = jax.jit(lambda x, y: pi.log_prob(x, y))
    >>> checked(f)(0, 7)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    jax._src.checkify.JaxRuntimeError: out-of-bounds indexing...
    """
    from jax.experimental import checkify

    inner = checkify.checkify(fn, errors=checkify.index_checks | checkify.user_checks)

    def wrapper(*args, **kwargs):
        err, out = inner(*args, **kwargs)
        err.throw()
        return out

    return wrapper


# ------------------------------------------------------------------------------------------------ bridge
# User-facing arguments of the bridge (pure Python: no torch). Every float the bridge takes from a user is
# checked for finiteness and range *before* any sampling or training starts, and every integer count for type
# and range, so a bad value fails at once with a ``ValueError`` that names the field and says what to pass
# instead (no NaN weights, no silent one-step "epochs=0" runs, no error from deep inside torch after minutes of
# sampling). ``hint`` is appended to the message.
def check_float(name: str, value, *, low: float | None = None, high: float | None = None,
                low_open: bool = True, high_open: bool = False, hint: str = "") -> float:
    """``float(value)`` if it is a finite real number in the given interval, else ``ValueError`` naming ``name``.

    ``low``/``high`` bound the interval; ``low_open``/``high_open`` say whether the bound itself is excluded
    (default ``(low, high]``). ``hint`` is appended to the message (what to pass instead).
    """
    suffix = f"; {hint}" if hint else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r} ({type(value).__name__}){suffix}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v!r}{suffix}")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {v!r}{suffix}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high:g}, got {v!r}{suffix}")
    return v


def check_count(name: str, value, *, minimum: int = 1, hint: str = "") -> int:
    """``int(value)`` for an integer (not a bool, not a float) ``>= minimum``, else ``ValueError`` naming ``name``."""
    suffix = f"; {hint}" if hint else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__}){suffix}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {int(value)}{suffix}")
    return int(value)


def check_optional_count(name: str, value, *, minimum: int = 1, hint: str = "") -> int | None:
    """:func:`check_count`, letting ``None`` through."""
    return None if value is None else check_count(name, value, minimum=minimum, hint=hint)


def check_prompts(prompts, name: str = "prompts") -> list[str]:
    """A non-empty sequence of strings, returned as a list."""
    if isinstance(prompts, str):
        raise TypeError(f"{name} must be a sequence of strings, not a single string (wrap it: [{prompts[:20]!r}])")
    if not isinstance(prompts, Sequence):
        raise TypeError(f"{name} must be a sequence of strings, got {type(prompts).__name__}")
    if len(prompts) == 0:
        raise ValueError(f"{name} is empty: pass at least one prompt")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"{name}[{i}] must be a string, got {type(p).__name__}")
    return list(prompts)
