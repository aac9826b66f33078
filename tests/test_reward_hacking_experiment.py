"""The reward_hacking experiment (issue 15, item 3): registered, checks that pass and that can fail.

Each failure test breaks the mechanism through a private hook of the experiment module and shows the
corresponding check turn 'inconsistent'.
"""

import json

import pytest

import sharpsim_experiments
from sharpsim_experiments import reward_hacking as rh
from sharpsim.runner import is_verdict, run_experiment, trial_keys, verdict_kind

TRIALS = 512
# A shorter N grid keeps the default suite fast (one compile of the Monte Carlo function, N ≤ 256); best-of-N
# still peaks inside it (noisy proxy: N = 128; self-reward: N = 2).
SMALL_GRID = {"quick": tuple(2**k for k in range(9)), "full": rh.N_GRID["full"]}


@pytest.fixture(autouse=True, scope="module")
def _small_grid():
    saved = rh.N_GRID
    rh.N_GRID = SMALL_GRID
    yield
    rh.N_GRID = saved


def _rows(families=None):
    out = []
    for i, s in enumerate(rh.settings("quick")):
        if families is None or s["family"] in families:
            out += [dict(r, **s) for r in rh.run_setting(trial_keys(0, i, TRIALS), s, "quick")]
    return out


@pytest.fixture(scope="module")
def rows():
    return _rows()


def _kinds(rows):
    return [verdict_kind(c["verdict"]) for c in rh.analyze(rows, "quick")["checks"]]


def test_registered_and_settings():
    assert sharpsim_experiments.REGISTRY["reward_hacking"] == "sharpsim_experiments.reward_hacking"
    assert {s["family"] for s in rh.settings("quick")} == {"exact_proxy", "noisy_proxy", "self_reward"}


def test_checks_pass_on_the_real_run(rows):
    summary = rh.analyze(rows, "quick")
    assert all(is_verdict(c["verdict"]) for c in summary["checks"])
    assert _kinds(rows) == ["consistent", "consistent", "consistent", "consistent", "finding"]
    bon = summary["families"]["self_reward"]["bon"]
    assert bon["peak_N"] == 2 and bon["at_max_N"] < 0.01  # the shortcut takes over (exact law)


def test_control_check_fails_when_the_control_proxy_is_noisy(rows, monkeypatch):
    # Catches: a control check that cannot fail — with noise in the control's proxy best-of-N degrades.
    monkeypatch.setattr(rh, "_CONTROL_NOISE", 1.0)
    broken = [r for r in rows if r["family"] != "exact_proxy"] + _rows({"exact_proxy"})
    assert _kinds(broken)[0] == "inconsistent"


def test_pessimism_and_sampler_checks_fail_when_broken(rows, monkeypatch):
    # Catches: a monotonicity check blind to a pessimism sampler that is really best-of-N, and a sampler check
    # blind to a soft best-of-N sampler run at the wrong temperature.
    monkeypatch.setattr(rh, "_PESSIMISM_AS_BON", True)
    monkeypatch.setattr(rh, "_SOFT_SAMPLER_TAU_FACTOR", 10.0)
    kinds = _kinds(_rows())
    assert kinds[2] == "inconsistent" and kinds[3] == "inconsistent"


@pytest.mark.slow  # the full runner: figure, CSV, summary
def test_end_to_end(tmp_path):
    folder = run_experiment(rh.EXPERIMENT, tmp_path, mode="quick", trials=256, progress=False)
    assert {p.suffix for p in folder.iterdir()} >= {".png", ".csv", ".json"}
    assert json.loads((folder / "summary.json").read_text())["checks"]
