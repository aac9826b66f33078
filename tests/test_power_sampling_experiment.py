"""The power_sampling experiment (issue 15): registered, rows well-formed, checks that can fail, end to end."""

import copy
import dataclasses
import json

import pytest

import sharpsim_experiments
from sharpsim.runner import is_verdict, run_experiment, trial_keys, verdict_kind

SETTINGS = [dict(horizon=3, alpha=4.0)]


@pytest.fixture(scope="module")
def exp():
    return sharpsim_experiments.get("power_sampling")


@pytest.fixture(scope="module")
def rows(exp):
    out = []
    for i, s in enumerate(SETTINGS):
        out += [dict(r, **s) for r in exp.run_setting(trial_keys(0, i, 2048), s, "quick")]
    return out


def test_registered_with_quick_settings(exp):
    assert "power_sampling" in sharpsim_experiments.REGISTRY
    quick = exp.settings("quick")
    assert {s["alpha"] for s in quick} >= {2.0, 4.0}
    assert {s["horizon"] for s in exp.settings("full")} >= {3, 4, 6}  # H varies in the full run


def test_rows_and_checks(exp, rows):
    for r in rows:
        for k in ("trial", "queries", "metric", "value"):
            assert k in r
    summary = exp.analyze(rows, "quick")
    assert [verdict_kind(c["verdict"]) for c in summary["checks"]][:2] == ["consistent", "consistent"]
    assert all(is_verdict(c["verdict"]) for c in summary["checks"])


def test_checks_can_fail(exp, rows):
    # Catches: a TV check that cannot fail — a sampler law 0.5 away from π^α must be flagged.
    bad = copy.deepcopy(rows)
    for r in bad:
        if r["metric"] in ("tv_mh", "tv_smc"):
            r["value"] = 0.5
    kinds = [verdict_kind(c["verdict"]) for c in exp.analyze(bad, "quick")["checks"]]
    assert kinds[0] == "inconsistent" and kinds[1] == "inconsistent"


@pytest.mark.slow  # ~22 s: compiles the samplers again inside the runner
def test_end_to_end(exp, tmp_path):
    small = dataclasses.replace(exp, settings=lambda mode: SETTINGS)
    folder = run_experiment(small, tmp_path, mode="quick", trials=1024, progress=False)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["checks"]
    assert {p.suffix for p in folder.iterdir()} >= {".png", ".csv", ".json"}
