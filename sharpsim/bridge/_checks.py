"""Argument checks shared by the bridge (pure Python: no torch import).

Every float the bridge takes from a user is checked for finiteness and range *before* any sampling or training
starts, and every integer count for type and range, so a bad value fails at once with a ``ValueError`` that names
the field and says what to pass instead (issue 12: no NaN weights, no silent one-step "epochs=0" runs, no error
from deep inside torch after minutes of sampling).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

__all__ = ["check_count", "check_float", "check_optional_count", "check_prompts"]


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
