"""Autoregressive experiments of issue 5: greedy_vs_argmax (Prop. 3.1, E.2) and bon_lift (Fig. 1 analogue).

Small shapes and few trials: settings are well-formed, ``run_setting`` rows carry the runner's required
fields, ``analyze`` produces checks, and ``run_experiment`` runs end to end on a shrunken settings list.
"""

import json
import math

import numpy as np
import pytest

import sharpsim_experiments
from sharpsim.runner import is_verdict, run_experiment, trial_keys

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
        assert is_verdict(c["verdict"])


# ------------------------------------------------------------------------------------------ greedy_vs_argmax
@pytest.fixture(scope="module")
def gva():
    return sharpsim_experiments.get("greedy_vs_argmax")


def test_greedy_vs_argmax_registered_and_settings(gva):
    assert "greedy_vs_argmax" in sharpsim_experiments.REGISTRY
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


# ------------------------------------------------------------------------------------------ bon_lift
@pytest.fixture(scope="module")
def bl():
    return sharpsim_experiments.get("bon_lift")


TINY_SHAPE = dict(num_prompts=4, answers=2, reasoning=2, horizon=4)


def _tiny_bl_settings(mode="quick"):
    from sharpsim_experiments.bon_lift import _FAMILIES

    return [dict(family=f, **TINY_SHAPE, **_FAMILIES[f]) for f in ("likelihood_correct", "short_wrong")]


def test_bon_lift_registered_and_settings(bl):
    assert list(sharpsim_experiments.REGISTRY).index("bon_lift") > list(sharpsim_experiments.REGISTRY).index("greedy_vs_argmax")
    for mode in ("quick", "full"):
        s = bl.settings(mode)
        assert s and all(_json_scalars(d) for d in s)
        assert {"likelihood_correct", "short_wrong"} <= {d["family"] for d in s}


def test_bon_law_grid_matches_library():
    """The N-vectorised law bon_lift uses equals sharpsim.exact.bon_log_probs at every N, ties and zeros included."""
    import jax
    import jax.numpy as jnp

    from sharpsim.exact import bon_log_probs, bon_log_probs_grid

    p = jnp.array([0.3, 0.2, 0.2, 0.0, 0.1, 0.1, 0.1])
    lp = jnp.log(p)
    Ns = (1, 2, 5, 50)
    law = np.exp(np.asarray(jax.jit(bon_log_probs_grid)(lp, jnp.asarray(Ns))))
    for i, N in enumerate(Ns):
        np.testing.assert_allclose(law[i], np.exp(np.asarray(bon_log_probs(lp, N))), atol=1e-6)
    np.testing.assert_allclose(law.sum(axis=1), 1.0, atol=1e-5)


def test_bon_lift_task_is_a_valid_policy():
    """The canonical responses carry all the mass, and their answers are the extracted ones."""
    import jax
    import jax.numpy as jnp

    from sharpsim_experiments.bon_lift import _FAMILIES
    from sharpsim.ar_instances import extract_answer, reasoning_task, reasoning_task_responses, reasoning_task_table

    params = {k: jnp.asarray(v, jnp.float32) for k, v in _FAMILIES["short_wrong"].items()}
    seqs, ans = reasoning_task_responses(TINY_SHAPE["answers"], TINY_SHAPE["reasoning"], TINY_SHAPE["horizon"])

    @jax.jit  # one compile instead of one per eager op
    def masses(key):
        pi, a_star = reasoning_task(key, params, **TINY_SHAPE)
        lp = pi.log_prob(jnp.arange(TINY_SHAPE["num_prompts"])[:, None], jnp.asarray(seqs)[None])
        table = reasoning_task_table(key, params, **TINY_SHAPE)  # the library's table: the same π, a*, rows
        same = (jnp.all(table.log_probs == lp) & jnp.all(table.a_star == a_star)
                & jnp.all(table.correct == (jnp.asarray(ans)[None, :] == a_star[:, None])))
        return jnp.exp(lp).sum(axis=1), jnp.exp(pi.to_tabular().log_probs).sum(axis=1), a_star, same

    canonical, everything, a_star, same = masses(jax.random.key(0))
    assert bool(same)
    assert seqs.shape[0] == len({tuple(s) for s in seqs.tolist()})
    np.testing.assert_array_equal(np.asarray(extract_answer(jnp.asarray(seqs), TINY_SHAPE["answers"])), ans)
    np.testing.assert_allclose(np.asarray(canonical), 1.0, atol=1e-5)  # all V^H sequences: also 1
    np.testing.assert_allclose(np.asarray(everything), 1.0, atol=1e-5)
    assert set(np.asarray(a_star).tolist()) <= set(range(1, TINY_SHAPE["answers"] + 1))


def test_bon_lift_rows_and_end_to_end(bl, tmp_path):
    import dataclasses

    s = _tiny_bl_settings()[0]
    rows = bl.run_setting(trial_keys(0, 0, 8), s, "quick")
    _check_rows(rows)
    metrics = {r["metric"] for r in rows}
    assert {"greedy_acc", "bon_logprob_exact", "bon_logprob_mc", "bon_lennorm_mc", "bon_majority_mc",
            "pass_at_n", "sample_logprob"} <= metrics
    for r in rows:
        if r["metric"].startswith(("bon_", "pass")) and not r["metric"].endswith("loglik"):
            assert 0.0 <= r["value"] <= 1.0 + 1e-6 and r["queries"] == r["N"] * TINY_SHAPE["num_prompts"]
    # Pass@N dominates BoN(log-prob) at every N (the skyline), exactly.
    by = {(r["metric"], r["trial"], r.get("N")): r["value"] for r in rows}
    for (m, t, N), v in by.items():
        if m == "bon_logprob_exact":
            assert v <= by[("pass_at_n", t, N)] + 1e-5

    small = dataclasses.replace(bl, settings=_tiny_bl_settings)
    folder = run_experiment(small, tmp_path, mode="quick", trials=8, progress=False)
    summary = json.loads((folder / "summary.json").read_text())
    _check_checks(summary)
    assert len(summary["checks"]) >= 8
    names = {p.name for p in folder.iterdir()}
    assert {"bon_lift.png", "bon_lift.pdf", "bon_lift_logprob_hist.png", "bon_lift_logprob_hist.pdf"} <= names
