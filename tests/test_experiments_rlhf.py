"""Experiments dpo_margin_beta (Theorem 4.2) and xpo_vs_sft_j1 (Example J.1): settings, rows, query counts,
agreement with the library algorithms, analysis and an end-to-end run on shrunken settings.

The tiny settings below share shapes so that every compile is reused across tests (module-level caches).
"""

import dataclasses
import json
import math

import numpy as np
import pytest

from sharpsim_experiments import dpo_margin_beta as dpo
from sharpsim_experiments import xpo_vs_sft_j1 as j1
from sharpsim import exact, metrics
from sharpsim.runner import is_verdict, run_experiment, trial_keys

REQUIRED = {"trial", "queries", "metric", "value"}
#: one trial count everywhere, so the run_setting tests and the end-to-end runs share their compiles
TRIALS = 8


def _tiny_dpo():
    return [dict(s, n_max=64, grid_points=5) for s in dpo.settings("quick")
            if s["sweep"] != "margin" or s["gamma_margin"] > 0.2]


def _tiny_j1():
    return [dict(s, d=d, num_responses=2**d, y_pad=32, N_max=32, n_max=32, T_max=4)
            for s, d in zip(j1.settings("quick"), (3, 4, 5))]


@pytest.mark.parametrize("module", [dpo, j1])
@pytest.mark.parametrize("mode", ["quick", "full"])
def test_settings_are_flat_json(module, mode):
    ss = module.settings(mode)
    assert len(ss) >= 3
    for s in ss:
        assert all(isinstance(v, (int, float, str, bool)) for v in s.values()), s
        json.dumps(s)
    exp = module.EXPERIMENT
    import bounds
    assert all(b in bounds.REGISTRY for b in exp.bounds)
    assert exp.trials == {"quick": 128, "full": 1000}


def test_dpo_settings_cover_every_sweep_with_the_recipe_beta():
    ss = dpo.settings("quick")
    margin = [s for s in ss if s["sweep"] == "margin"]
    assert len(margin) >= 5 and min(s["gamma_margin"] for s in margin) == 1 / 256
    assert len([s for s in ss if s["sweep"] == "noisy"]) >= 5 and any(s["sweep"] == "beta" for s in ss)
    for s in margin:
        assert s["beta"] == pytest.approx(s["gamma_margin"] * s["delta"] * s["epsilon"])
        assert s["set_size"] / dpo.NUM_PROMPTS > s["epsilon"]  # confusers fail on a μ-mass just above ε


def test_dpo_rows_queries_and_exact_rows():
    s = _tiny_dpo()[0]
    keys = trial_keys(0, 0, TRIALS)
    rows = dpo.run_setting(keys, s, "quick")
    trial_rows = [r for r in rows if r["trial"] >= 0]
    assert all(REQUIRED <= set(r) for r in rows)
    ns = dpo.n_grid(s)
    assert len(trial_rows) == TRIALS * len(ns) * 2 * 2  # arms eq8, dpo × (uniform, worst) tie-break
    assert all(r["queries"] == 2 * r["n"] for r in trial_rows)  # N = 2 per prompt: m = 2n
    # worst-case tie-break is never better than the uniform one (catches swapped columns)
    u = {(r["arm"], r["trial"], r["n"]): r["value"] for r in trial_rows if r["metric"] == "sharpness_error"}
    w = {(r["arm"], r["trial"], r["n"]): r["value"] for r in trial_rows if r["metric"] == "worst_error"}
    assert all(w[k] >= u[k] - 1e-6 for k in u)
    assert len([r for r in rows if r["metric"] == "exact_worst_failure"]) == len(ns)


def test_dpo_exact_threshold_is_where_pi_star_stops_being_sharp():
    inst = dpo.instance(0.25)
    thr = dpo.exact_threshold(0.25, 0.2, 0.2)
    err = lambda b: float(metrics.sharpness_error(exact.kl_regularized_optimum(inst.pi_base, b), inst.pi_base,  # noqa: E731
                                                  inst.mu, 0.2))
    assert err(thr * 0.99) <= 0.2 + 1e-6 and err(thr * 1.01) > 0.2


def _tiny_margin(scale_hook=None):
    return [dict(s, n_max=64, grid_points=7) for s in dpo.settings("quick")
            if s["sweep"] == "margin" and s["gamma_margin"] in (1.0, 1 / 64)]


@pytest.mark.parametrize("broken", [False, True])
def test_dpo_end_to_end_control_and_broken(tmp_path, monkeypatch, broken):
    """Positive control: the exact version-space law check is consistent. Broken Eq. (8) (the private hook
    drops the reward from the regression target, so the minimiser set is no longer {π*_β} ∪ untouched
    confusers): the same check must read inconsistent — the bug caught is a regression target without r."""
    if broken:
        monkeypatch.setattr(dpo, "_TARGET_SCALE", 0.0)
    exp = _with_settings(dpo.EXPERIMENT, _tiny_margin())
    folder = run_experiment(exp, tmp_path, mode="quick", trials=64, progress=False)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["arms"] == ["eq8", "dpo"]
    law = [c for c in summary["checks"] if "version-space" in c["quantity"]]
    assert len(law) == 1
    assert law[0]["verdict"] == ("inconsistent" if broken else "consistent"), law[0]
    assert all(is_verdict(c["verdict"]) for c in summary["checks"])


def test_j1_every_arm_and_its_query_count():
    """Each arm on a tiny instance (d = 3): rows for sft, offline_eq8, xpo, xpo_alpha0 with the documented budgets
    (m = n·N for SFT, 2n for offline Eq. 8, 2T + 2E for XPO: footnote 7's rounds plus E held-out queries for each
    of π^(1) and π^(T+1)), one row per trial and grid point, errors in [0, 1]. Catches a wrong query count or a
    dropped arm."""
    s = _tiny_j1()[0]
    oracle, cls, consts = j1.padded_instance(s["d"], s["y_pad"], s["N_max"], s["n_max"])
    assert cls.num_candidates == 1 + j1.NUM_CONFUSERS + len(j1.N_grid(s["N_max"])) and cls.num_responses == s["y_pad"]
    assert consts["pi_star_mass"] >= 1 - j1.DELTA / 2  # Theorem J.2, step 3: π*_β is (ε, δ)-sharp
    rows = j1.run_setting(trial_keys(0, 0, TRIALS), s, "quick")
    assert all(REQUIRED <= set(r) for r in rows)
    err = [r for r in rows if r["metric"] == "sharpness_error"]
    got = {a: sorted({(r["n"], r["N"], r["T"], r["queries"]) for r in err if r["algorithm"] == a}) for a in j1.ARMS}
    assert got["sft"] == sorted((n, N, 0, n * N) for n in j1.SFT_PROMPTS for N in j1.N_grid(s["N_max"]))
    assert got["offline_eq8"] == [(n, 2, 0, 2 * n) for n in j1.N_grid(s["n_max"])]
    xq = [(0, 0, T, 2 * T + 2 * j1.EVAL) for T in j1.T_grid(s["T_max"])]
    assert got["xpo"] == got["xpo_alpha0"] == xq
    assert all(sum(r["algorithm"] == a for r in err) == TRIALS * len(got[a]) for a in j1.ARMS)
    assert all(-1e-6 <= r["value"] <= 1 + 1e-6 for r in err)
    alphas = [r["value"] for r in rows if r["metric"] == "alpha"]
    assert len(alphas) == len(j1.T_grid(s["T_max"])) and all(v > 0 for v in alphas)


def test_argmax_confusers_against_a_hand_computation():
    """target (0.5, 0.3, 0.2), confuser of response 2: its logit becomes log(2·0.5) = 0, so the member is
    (0.5, 0.3, 1)/1.8, and log π(0) − log π(1) = log(5/3) as for the target (the pair avoiding response 2
    does not see it). Catches a raised logit that is not max + log 2, or a changed ratio between other responses."""
    from sharpsim import instances
    from sharpsim.policies import TabularPolicy

    target = TabularPolicy.from_probs(np.array([[0.5, 0.3, 0.2]]))
    got = np.exp(np.asarray(instances.argmax_confusers(target, [2, 0])))
    np.testing.assert_allclose(got[0, 0], np.array([0.5, 0.3, 1.0]) / 1.8, rtol=1e-5)
    np.testing.assert_allclose(got[1, 0], np.array([1.0, 0.3, 0.2]) / 1.5, rtol=1e-5)  # the mode itself raised
    assert math.isclose(math.log(got[0, 0, 0] / got[0, 0, 1]), math.log(5 / 3), rel_tol=1e-5)
    for bad in ([], [-1], [3]):
        with pytest.raises(ValueError, match="responses"):
            instances.argmax_confusers(target, bad)


@pytest.mark.parametrize("p,m", [((0.05, 0.1, 0.2), 6), ((0.3,), 4), ((0.1, 0.1), 5)])
def test_offline_success_law_against_brute_force(p, m):
    """finite_size.argmax_confuser_success (inclusion–exclusion) against an enumeration of every sequence of m draws over
    {confuser responses, rest}: success = 1/(1 + #unseen confusers) (uniform tie-break among the survivors).
    Catches a wrong sign or a wrong superset relation in the inclusion–exclusion."""
    import itertools

    probs = list(p) + [1 - sum(p)]
    exact = 0.0
    for seq in itertools.product(range(len(probs)), repeat=m):
        unseen = len(p) - len({c for c in seq if c < len(p)})
        exact += math.prod(probs[c] for c in seq) / (1 + unseen)
    from sharpsim import finite_size

    assert finite_size.argmax_confuser_success(np.array(p), m) == pytest.approx(exact, rel=1e-9)
    with pytest.raises(ValueError, match="p must"):
        finite_size.argmax_confuser_success([0.7, 0.6], m)


def test_end_to_end_j1(tmp_path):
    """Tiny run (3 values of d): summary.json lists the arms, every check carries a valid verdict (with 3 d's
    the slope checks are inconclusive), both figures are written."""
    exp = _with_settings(j1.EXPERIMENT, _tiny_j1())
    folder = run_experiment(exp, tmp_path, mode="quick", trials=TRIALS, progress=False)
    summary = json.loads((folder / "summary.json").read_text())
    assert {"sft", "xpo", "offline_eq8"} <= set(summary["arms"])
    assert summary["checks"] and all(is_verdict(c["verdict"]) for c in summary["checks"])
    assert summary["figures"] == ["xpo_vs_sft_j1.png", "xpo_vs_sft_j1.pdf"]
    assert [p["d"] for p in summary["per_d"]] == [3, 4, 5]
    assert any("offline" in c["quantity"] for c in summary["checks"])


@pytest.mark.slow
@pytest.mark.parametrize("shuffle", [True, False])
def test_j1_end_to_end_control_and_broken(tmp_path, monkeypatch, shuffle):
    """Positive control: on 5 values of d offline Eq. 8's growth rate matches the exact law and XPO's lies
    below it (`consistent`). Broken (private `_SHUFFLE = False`: the target at index 0 and ties to the lowest
    index, the first version's bug): offline Eq. 8 succeeds at m = 2 at every d, so its check against the
    exact law reads `inconsistent` and XPO's advantage over it is no longer `consistent`."""
    import jax

    monkeypatch.setattr(j1, "_SHUFFLE", shuffle)
    jax.clear_caches()  # the hook is read at trace time
    tiny = [dict(s, y_pad=128, N_max=256, n_max=1024, T_max=16) for s in j1.settings("quick")]
    folder = run_experiment(_with_settings(j1.EXPERIMENT, tiny), tmp_path, mode="quick", trials=48, progress=False)
    jax.clear_caches()
    checks = {c["quantity"]: c["verdict"] for c in json.loads((folder / "summary.json").read_text())["checks"]}
    law = [v for q, v in checks.items() if "for offline_eq8" in q]
    versus = [v for q, v in checks.items() if "offline" in q and "xpo <" in q]
    assert len(law) == 1 and len(versus) == 1, checks
    if shuffle:
        assert law[0] == "consistent" and versus[0] == "consistent", checks
    else:
        assert law[0] == "inconsistent" and versus[0] != "consistent", checks


def _with_settings(exp, tiny):
    """The experiment with its settings list shrunk (the Experiment is frozen: replace, don't mutate)."""
    return dataclasses.replace(exp, settings=lambda mode: tiny)


# ------------------------------------------------------------------------------------------ xpo_exploration
from sharpsim_experiments import xpo_exploration as xe  # noqa: E402


def _tiny_xe(Ms=(16, 64), num_T=2):
    y_pad = max(Ms) + xe.K_RARE
    return [dict(s, M=M, y_pad=y_pad, T_max=8 * 2 ** (num_T - 1), num_T=num_T) for s, M in zip(xe.settings("quick"), Ms)]


def test_xpo_exploration_every_arm_and_its_query_count():
    """Each arm on a tiny instance: rows for all five arms, budgets as documented (footnote 7 for XPO:
    2T + 4 held-out queries at every 8th iterate and the last; m = 2n offline; m = N for SFT), errors in [0, 1],
    and the exact predictions are probabilities."""
    s = _tiny_xe()[0]
    rows = xe.run_setting(trial_keys(0, 0, TRIALS), s, "quick")
    Ts, ns, Ns = xe._grids(s)
    got = {a: sorted({r["queries"] for r in rows if r.get("arm") == a and r["metric"] == "sharpness_error"})
           for a in xe.ARMS}
    assert got["xpo"] == got["xpo_alpha0"] == [2 * T + 4 * (T // 8 + 1) for T in Ts]
    assert got["offline_eq8"] == got["offline_dpo"] == [2 * n for n in ns]
    assert got["sft"] == list(Ns)
    vals = [r["value"] for r in rows if r["metric"] in ("sharpness_error", "predicted_success")]
    assert all(-1e-6 <= v <= 1 + 1e-6 for v in vals)
    assert all(sum(1 for r in rows if r.get("arm") == a and r["metric"] == "sharpness_error") == TRIALS * len(got[a])
               for a in xe.ARMS)


@pytest.mark.slow
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_xpo_exploration_end_to_end_control_and_broken(tmp_path, monkeypatch, sign):
    """Positive control (sign +1): at equal budget XPO beats offline Eq. 8 (`consistent`). Broken algorithm
    (optimism sign flipped, the bug no earlier test caught): XPO no longer explores, so the check of xpo
    against xpo_alpha0 turns `inconsistent` and the equal-budget check is no longer `consistent`."""
    monkeypatch.setattr(xe, "_OPTIMISM_SIGN", sign)
    exp = _with_settings(xe.EXPERIMENT, _tiny_xe(Ms=(64, 256, 1024), num_T=5))
    folder = run_experiment(exp, tmp_path, mode="quick", trials=32, progress=False)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["arms"] == list(xe.ARMS)
    checks = {c["quantity"]: c["verdict"] for c in summary["checks"]}
    assert all(is_verdict(v) for v in checks.values())
    offline = [v for q, v in checks.items() if "offline" in q and "equal budget" in q]
    optimism = [v for q, v in checks.items() if "xpo_alpha0" in q]
    assert len(offline) == 1 and len(optimism) == 1
    if sign > 0:
        assert offline[0] == "consistent", checks
    else:
        assert optimism[0] == "inconsistent" and offline[0] != "consistent", checks


_DEVICE_SCRIPT = """
import json, sys
sys.path.insert(0, '.')
from sharpsim_experiments import xpo_exploration as xe
from sharpsim.runner import shard_trials, trial_keys
import jax
s = [dict(s, M=16, y_pad=19, T_max=16, num_T=2) for s in xe.settings('quick')][0]
rows = xe.run_setting(shard_trials(trial_keys(0, 0, 8)), s, 'quick')
print(json.dumps([len(jax.devices())] + [[r['arm'], r['trial'], r['queries'], r['metric'], r['value']] for r in rows]))
"""


def _assert_same_rows_on_1_and_4_devices(script: str) -> None:
    """Run ``script`` (prints [device count, *rows] as JSON) on 1 and 4 host devices; the rows must be equal."""
    import os
    import subprocess
    import sys

    out = []
    for n in (1, 4):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}", JAX_PLATFORMS="cpu")
        res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), timeout=900)
        assert res.returncode == 0, res.stderr[-2000:]
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    assert out[0][0] == 1 and out[1][0] == 4
    assert out[0][1:] == out[1][1:]


@pytest.mark.slow
def test_xpo_exploration_rows_identical_on_1_and_4_devices():
    """Trials sharded over 4 host devices give exactly the rows of one device (catches per-device key reuse)."""
    _assert_same_rows_on_1_and_4_devices(_DEVICE_SCRIPT)


_DPO_DEVICE_SCRIPT = """
import json, sys
sys.path.insert(0, '.')
from sharpsim_experiments import dpo_margin_beta as dpo
from sharpsim.runner import shard_trials, trial_keys
import jax
ss = [dict(s, n_max=64, grid_points=5) for s in dpo.settings('quick') if s['sweep'] in ('margin', 'noisy')]
rows = []
for s in (ss[0], ss[-1]):
    rows += dpo.run_setting(shard_trials(trial_keys(0, 0, 8)), s, 'quick')
print(json.dumps([len(jax.devices())] + [[r['arm'], r['trial'], r['n'], r['metric'], r['value']] for r in rows]))
"""


@pytest.mark.slow
def test_dpo_rows_identical_on_1_and_4_devices():
    """dpo_margin_beta: trials sharded over 4 host devices give exactly the rows of one device (exact and noisy
    settings; catches per-device key reuse or noise drawn per shard)."""
    _assert_same_rows_on_1_and_4_devices(_DPO_DEVICE_SCRIPT)


_J1_DEVICE_SCRIPT = """
import json, sys
sys.path.insert(0, '.')
from sharpsim_experiments import xpo_vs_sft_j1 as j1
from sharpsim.runner import shard_trials, trial_keys
import jax
rows = j1.run_setting(shard_trials(trial_keys(0, 0, 8)), j1.settings('quick')[0], 'quick')
print(json.dumps([len(jax.devices())] + [sorted((k, str(v)) for k, v in r.items()) for r in rows]))
"""


@pytest.mark.slow
def test_j1_rows_identical_on_1_and_4_devices():
    """xpo_vs_sft_j1 (finite class, smallest d): trials sharded over 4 host devices give exactly the rows of one
    device (catches per-device key reuse, or the per-trial target shuffle drawn per shard)."""
    _assert_same_rows_on_1_and_4_devices(_J1_DEVICE_SCRIPT)
