"""Random unit-norm feature tables for log-linear classes in tests (tests/ is on sys.path)."""

from __future__ import annotations

import numpy as np


def unit_features(seed: int, rows: int, dim: int) -> np.ndarray:
    """``[rows, dim]`` standard-normal features, each row scaled to norm 1 (NumPy generator ``seed``)."""
    f = np.random.default_rng(seed).normal(size=(rows, dim))
    return f / np.linalg.norm(f, axis=1, keepdims=True)
