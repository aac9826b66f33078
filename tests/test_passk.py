"""Pass@k after sharpening (issue 16, item 4): sharpsim.passk and the passk_shrinkage experiment."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sharpsim import TabularPolicy
from sharpsim.bridge._planner import pass_at_n_estimate
from sharpsim.metrics import pass_at_n
from sharpsim.passk import pass_at_k_curve, pass_at_k_plugin, pass_at_k_unbiased, passk_task_family


def test_exact_curve_equals_metrics_pass_at_n():
    # Catches: a k-grid formula that differs from the one-k exact metric (e.g. k − 1 or p instead of 1 − p).
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(6), size=4)
    correct = rng.random((4, 6)) < 0.3
    mu = np.full(4, 0.25)
    ks = [1, 3, 10, 100]
    got = pass_at_k_curve(TabularPolicy.from_probs(P), correct, mu, ks)
    want = [float(pass_at_n(TabularPolicy.from_probs(P), correct, mu, k)) for k in ks]
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_unbiased_estimator_matches_binomial_coefficients():
    # Catches: an off-by-one in the product range or the gather at n − c (checked against math.comb and the
    # bridge's scalar implementation, written independently).
    n, ks = 20, [1, 2, 5, 16, 20]
    cs = np.arange(n + 1)
    got = np.asarray(pass_at_k_unbiased(jnp.asarray(cs), n, ks))
    for c in cs:
        for j, k in enumerate(ks):
            want = 1.0 - math.comb(n - c, k) / math.comb(n, k)
            assert got[c, j] == pytest.approx(want, abs=1e-5)
            assert got[c, j] == pytest.approx(pass_at_n_estimate(int(c), n, k), abs=1e-5)
    # the plug-in differs (biased): at k = n with one success it gives 1 − (1 − 1/n)^n, not 1
    assert float(pass_at_k_plugin(jnp.asarray([1]), n, [n])[0, 0]) < 0.7
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k_unbiased(jnp.asarray([1]), 4, [5])


def test_task_families():
    # Catches: a control family whose correct responses are not the likely ones, or a shrink family whose
    # hard prompts still have a correct argmax.
    for control in (True, False):
        t = passk_task_family(jax.random.key(1), num_prompts=10, num_responses=12, num_answers=3, control=control,
                              hard_mass=0.04)
        P = np.asarray(t.pi_base.probs, np.float64)
        C = np.asarray(t.correct)
        np.testing.assert_allclose(P.sum(1), 1.0, atol=1e-5)
        assert np.all(C.sum(1) == 4)
        hard = np.asarray(t.hard)
        assert hard.sum() == (0 if control else 5)
        for x in range(10):
            top = np.argsort(-P[x])[:4]
            if hard[x]:
                assert not C[x, top].any() and P[x][C[x]].sum() == pytest.approx(0.04, abs=1e-5)
            else:
                assert C[x, top].all()


# ------------------------------------------------------------------------------------------ experiment
def _rows(**setting_extra):
    import sharpsim_experiments.passk_shrinkage as E
    from sharpsim.runner.loop import trial_keys

    rows = []
    for i, fam in enumerate(("shrink", "control")):
        setting = dict(family=fam, **setting_extra)
        rows += [dict(family=fam, **r) for r in E.run_setting(trial_keys(0, i, 16), setting, "quick")]
    return E.analyze(rows, "quick")["checks"]


def _verdicts(checks):
    return {c["quantity"].split(":")[0]: c["verdict"].split(":")[0] for c in checks}


@pytest.mark.slow  # one compile of the experiment (~20 s CPU), shared by every break below
def test_passk_shrinkage_checks_pass_and_each_break_turns_its_check_red():
    ok = _verdicts(_rows())
    assert ok == {
        "exact sharpening (best-of-N law, π^{1+1/β}) on shrink tasks": "consistent",
        "GRPO with self-rewards on shrink tasks": "consistent",
        "control tasks (all correct responses likely)": "consistent",
        "GRPO with self-certainty on one-step (tabular) policies": "finding",
        "unbiased pass@k estimator (n = 256 draws per prompt) agrees with the exact pass@k": "consistent",
    }, ok
    broken = {  # hook -> the check that must turn inconsistent
        "no_sharpening": ("exact sharpening (best-of-N law, π^{1+1/β}) on shrink tasks",
                          "GRPO with self-rewards on shrink tasks"),
        "control_unlikely": ("control tasks (all correct responses likely)",),
        "plugin_estimator": ("unbiased pass@k estimator (n = 256 draws per prompt) agrees with the exact pass@k",),
        "no_baseline": ("GRPO with self-certainty on one-step (tabular) policies",),
    }
    for hook, names in broken.items():
        got = _verdicts(_rows(_break=hook))
        for name in names:
            assert got[name] == "inconsistent", (hook, name, got)


def test_registered_under_its_fixed_name():
    # Catches: the experiment missing from `sharpsim reproduce` (the issue fixes the name).
    import sharpsim_experiments

    assert sharpsim_experiments.get("passk_shrinkage").name == "passk_shrinkage"
    assert sharpsim_experiments.get("passk_shrinkage").in_quick
