"""Small helpers for the parameter recipes (validation and rounding up to integers)."""

from __future__ import annotations

import numpy as np


def open_unit(value, name: str) -> np.ndarray:
    v = np.asarray(value, dtype=float)
    if np.any(~np.isfinite(v)) or np.any((v <= 0) | (v >= 1)):
        raise ValueError(f"{name} must lie in the open interval (0, 1), got {value!r}.")
    return v


def positive(value, name: str) -> np.ndarray:
    v = np.asarray(value, dtype=float)
    if np.any(~np.isfinite(v)) or np.any(v <= 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}.")
    return v


def at_least(value, low: float, name: str) -> np.ndarray:
    v = np.asarray(value, dtype=float)
    if np.any(~np.isfinite(v)) or np.any(v < low):
        raise ValueError(f"{name} must be finite and >= {low:g}, got {value!r}.")
    return v


def ceil_int(value):
    """⌈value⌉ as a Python int for scalars, an int64 array otherwise (at least 1)."""
    out = np.maximum(np.ceil(np.asarray(value, dtype=float) - 1e-12), 1).astype(np.int64)
    return int(out) if out.ndim == 0 else out


def evaluate(expr, **values):
    """Evaluate a sympy expression of the shared symbols on broadcast NumPy values (keys are symbol names)."""
    import sympy

    free = sorted(expr.free_symbols, key=lambda s: s.name)
    missing = [s.name for s in free if s.name not in values]
    if missing:
        raise ValueError(f"missing value(s) for {missing}.")
    fn = sympy.lambdify(free, expr, "numpy")
    return np.asarray(fn(*(np.asarray(values[s.name], dtype=float) for s in free)), dtype=float)
