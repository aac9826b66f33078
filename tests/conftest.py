"""Shared test configuration.

Hypothesis runs derandomised (fixed seed per test) so statistical properties have a fixed false-failure
rate; the "ci" profile (selected when CI=true) keeps example counts small enough for 2 CPU cores.
"""

import os

# Tests do not write JAX's persistent compilation cache into the user's home (the CLI turns it on by default);
# tests/test_compilation.py turns it on explicitly in a temporary folder.
os.environ.setdefault("SHARPSIM_NO_COMPILE_CACHE", "1")
os.environ.setdefault("SHARPSIM_NO_MODEL_CACHE", "1")  # no 0.5 GB converted SmolLM2 in your home

import jax  # noqa: E402
from hypothesis import HealthCheck, settings

settings.register_profile(
    "dev", deadline=None, max_examples=40, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "ci", deadline=None, max_examples=25, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")

# Catch silent float64 -> float32 surprises: tests run in the default float32 mode unless they opt in.
jax.config.update("jax_numpy_dtype_promotion", "standard")
