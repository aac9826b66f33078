"""Autoregressive experiments of issue 5: greedy_vs_argmax (Prop. 3.1, E.2) and bon_lift (Fig. 1 analogue).

Small shapes and few trials: settings are well-formed, ``run_setting`` rows carry the runner's required
fields, ``analyze`` produces checks, and ``run_experiment`` runs end to end on a shrunken settings list.
"""

import json
import math

import numpy as np
import pytest

import experiments
from sharpsim.runner import run_experiment, trial_keys

REQUIRED = ("trial", "queries", "metric", "value")


def _json_scalars(d):
    return all(isinstance(v, (str, int, float, bool)) for v in d.values())


def _check_rows(rows):
    assert rows
    for r in rows:
        for k in REQUIRED:
            assert k in r, (k, r)
        assert isinstance(r["metric"], str)
        assert isinstance(r["trial"], int)
        assert math.isfinite(float(r["value"])) or r["metric"].startswith("sample_")


def _check_checks(summary):
    assert summary["checks"]
    for c in summary["checks"]:
        assert set(c) >= {"quantity", "predicted", "measured", "lower", "upper", "verdict", "note"}
        assert c["verdict"] in ("consistent", "inconsistent", "inconclusive")


# ------------------------------------------------------------------------------------------ greedy_vs_argmax
@pytest.fixture(scope="module")
def gva():
    return experiments.get("greedy_vs_argmax")


def test_greedy_vs_argmax_registered_and_settings(gva):
    assert "greedy_vs_argmax" in experiments.REGISTRY
    for mode in ("quick", "full"):
        s = gva.settings(mode)
        assert s and all(_json_scalars(d) for d in s)
        assert {d["family"] for d in s} == {"random_markov", "counterexample", "nonclosure"}
    assert len(gva.settings("full")) > len(gva.settings("quick"))


TINY_GVA = [
    dict(family="random_markov", vocab=2, horizon=3, scale=4.0),
    dict(family="random_markov", vocab=2, horizon=3, scale=0.5),
    dict(family="counterexample", vocab=2, horizon=3, target_mass=0.45),
    dict(family="nonclosure", n=5, norm_bound=3.0),
]


def test_greedy_vs_argmax_rows_and_prop_3_1(gva):
    rows = []
    for i, s in enumerate(TINY_GVA):
        new = gva.run_setting(trial_keys(0, i, 8), s, "quick")  # 8 = the end-to-end count: shared compiles
        _check_rows(new)
        rows += [{"experiment": gva.name, "setting": i, **s, **r} for r in new]
    hits = [r for r in rows if r["metric"].startswith("hit_")]
    assert all(0.0 <= r["pi_star"] <= 1.0 + 1e-6 for r in hits)
    # Proposition 3.1 on these instances: every decoder finds y* when π(y*) > 1/2.
    assert all(r["value"] == 1.0 for r in hits if r["pi_star"] > 0.5)
    cex = [r for r in hits if r["family"] == "counterexample" and r["metric"] == "hit_greedy"]
    assert len(cex) == 1 and cex[0]["value"] == 0.0 and cex[0]["pi_star"] == pytest.approx(0.45, abs=1e-5)
    summary = gva.analyze(rows, "quick")
    _check_checks(summary)
    by_q = {c["quantity"]: c for c in summary["checks"]}
    assert by_q["P[greedy = y* | π(y*) > 1/2] = 1"]["verdict"] == "consistent"
    e2 = by_q["sup_θ π_θ(2,1) ≤ 1/2 on E.2"]
    assert e2["verdict"] == "consistent"
    from sharpsim.ar_instances import nonclosure_class_sup

    assert e2["measured"] == pytest.approx(nonclosure_class_sup(5, 3.0), abs=1e-3)


def test_greedy_vs_argmax_end_to_end(gva, tmp_path):
    import dataclasses

    small = dataclasses.replace(gva, settings=lambda mode: TINY_GVA)
    folder = run_experiment(small, tmp_path, mode="quick", trials=8, progress=False)
    summary = json.loads((folder / "summary.json").read_text())
    _check_checks(summary)
    assert (folder / "results.csv").exists()
    assert {p.suffix for p in folder.iterdir()} >= {".png", ".pdf", ".csv", ".json"}
