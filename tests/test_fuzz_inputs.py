"""Hypothesis fuzz of the core library's public constructors, configs and metrics with bad values (issue 12).

Random NaN, ±inf, negative, huge, wrong-dtype and wrong-rank values go into one argument at a time (the
others valid). Each call must give a clear error (a ``ValueError``/``TypeError`` raised by sharpsim's own
checks, not from deep inside NumPy or JAX) or a result without NaN; an out-of-range index must raise
(JAX would clamp it). Catches: any future constructor or metric that lets NaN through or clamps an index.
Deterministic (``derandomize=True``) and fast (few examples per target; most raise before compiling).
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _fuzz_targets import TARGETS, classify, config_targets_elsewhere

FUZZ = settings(max_examples=12, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _run(name, kind, call, values):
    @FUZZ
    @given(st.sampled_from(values))
    def check(value):
        outcome, detail = classify(kind, call, value)
        assert outcome in ("clear error", "accepted"), f"{name} with {value!r}: {outcome}: {detail}"

    check()


@pytest.mark.parametrize("name, kind, call, values", TARGETS, ids=[t[0] for t in TARGETS])
def test_bad_values_never_pass_silently(name, kind, call, values):
    _run(name, kind, call, values)


@pytest.mark.parametrize("name, kind, call, values", config_targets_elsewhere(),
                         ids=[t[0] for t in config_targets_elsewhere()])
def test_bad_values_in_xpo_rlhf_configs(name, kind, call, values):
    _run(name, kind, call, values)
