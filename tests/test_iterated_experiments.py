"""The issue-16 experiments iterated_sharpening and self_training_collapse: registered, checks pass on the real
mechanism, and turn red when a private hook breaks it. (Same rows on 1 and 4 devices: the registry-wide
``tests/test_run_safety.py::test_every_registered_experiment_gives_the_same_rows_on_one_and_four_devices``.)"""

import pytest

import sharpsim_experiments
from sharpsim_experiments import iterated_sharpening as IS
from sharpsim_experiments import self_training_collapse as SC
from sharpsim import rewards
from sharpsim.runner import is_verdict, trial_keys, verdict_kind


def _rows(mod, settings, trials, mode="quick"):
    out = []
    for i, s in enumerate(settings):
        out += [{"setting": i, **s, **r} for r in mod.run_setting(trial_keys(0, i, trials), s, mode)]
    return out


def _kinds(summary, tag):
    return {c["quantity"]: verdict_kind(c["verdict"]) for c in summary["checks"] if tag in c["quantity"]}


def _least_likely(x, responses, log_probs):  # a self-reward that picks the least likely draw
    return -rewards.logprob_reward(x, responses, log_probs)


def test_registered_with_named_settings():
    assert {"iterated_sharpening", "self_training_collapse"} <= set(sharpsim_experiments.REGISTRY)
    assert {s["part"] for s in IS.settings("quick")} == {"queries", "lockin", "eq8"}
    assert [s["part"] for s in IS.settings("quick")][:7] == ["queries"] * 5 + ["lockin"] * 2  # eq8 appended: old keys kept
    assert {(s["memory"], s["N"]) for s in SC.settings("quick")} == {(m, N) for m in ("replace", "accumulate")
                                                                     for N in (1, 4)}


LOCK = [s for s in IS.settings("quick") if s["part"] == "lockin"]


def test_lockin_checks_pass_and_turn_red_when_the_self_reward_is_broken(monkeypatch):
    # Catches: a round-1 simulation off its exact multinomial law, and controls that cannot fail: with a
    # self-reward that keeps the least likely draw, round 1 leaves the exact law and the final mode is wrong
    # (lock-in "appears" where the mechanism is absent), so every lock-in check but the finding turns red.
    good = IS.analyze(_rows(IS, LOCK, 128), "quick")
    kinds = _kinds(good, "[lockin")
    assert all(is_verdict(c["verdict"]) for c in good["checks"])
    assert [v for q, v in kinds.items() if "round-1" in q or "control" in q] == ["consistent"] * 4, kinds
    assert kinds[next(q for q in kinds if "after K" in q)] == "finding"  # near tie: early picks lock in
    monkeypatch.setattr(IS, "REWARD", _least_likely)
    bad = _kinds(IS.analyze(_rows(IS, LOCK, 128), "quick"), "[lockin")
    assert [v for q, v in bad.items() if "round-1" in q or "control" in q] == ["inconsistent"] * 4, bad


@pytest.mark.slow  # ~30 s on a loaded 2-core machine: compiles the queries sweep
def test_queries_checks_turn_red_when_the_self_reward_is_broken(monkeypatch):
    # Catches: a reach check that cannot fail (Theorem 4.1's one-shot arm must reach (ε, δ) on the grid).
    monkeypatch.setitem(IS._P, "quick", (2, 4))
    qs = [s for s in IS.settings("quick") if s["part"] == "queries"]
    good = _kinds(IS.analyze(_rows(IS, qs, 64), "quick"), "reaches")
    assert list(good.values()) == ["consistent", "consistent"], good
    monkeypatch.setattr(IS, "REWARD", _least_likely)
    bad = _kinds(IS.analyze(_rows(IS, qs, 64), "quick"), "reaches")
    assert list(bad.values()) == ["inconsistent", "inconsistent"], bad


def test_collapse_checks_pass_and_turn_red_when_accumulate_replaces(monkeypatch):
    # Catches: accumulate implemented as replace (the Gerstgrasser control): its exact E[H_K] law and the
    # support-loss control must turn red, while the replace-arm checks stay green.
    rows = _rows(SC, SC.settings("quick"), 128)
    good = SC.analyze(rows, "quick")
    assert all(verdict_kind(c["verdict"]) != "inconsistent" for c in good["checks"]), good["checks"]
    monkeypatch.setitem(SC._MEMORY, "accumulate", "replace")
    bad = _kinds(SC.analyze(_rows(SC, SC.settings("quick"), 128), "quick"), "")
    assert bad[next(q for q in bad if q.startswith("[N=1/accumulate] E[H_K]"))] == "inconsistent"
    assert bad[next(q for q in bad if q.startswith("[control"))] == "inconsistent"
    assert bad[next(q for q in bad if q.startswith("[N=1/replace] E[H_K]"))] == "consistent"


@pytest.mark.slow  # ~20 s on a loaded 2-core machine: compiles the Eq. 8 sweep
def test_eq8_arm_never_beats_one_round_at_the_matching_beta():
    # One Eq. 8 round at 1 + 1/β = 2^k has the exact target of k rounds at β = 1 and succeeds whenever y* is among
    # its pairs, which the loop also needs: k rounds may cost more, never (significantly) less. Catches: rounds
    # counted as one (queries not × k), or a loop that keeps π_base as its reference.
    e8 = [s for s in IS.settings("quick") if s["part"] == "eq8"]
    summary = IS.analyze(_rows(IS, e8, 64), "quick")
    kinds = _kinds(summary, "[eq8]")
    assert list(kinds.values()) == ["consistent"], kinds
    for p in summary["points"]:
        assert p["eq8_iterated"][0] >= p["eq8_one_shot"][0], p
