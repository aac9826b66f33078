"""The experiment runner: result files, refusal to overwrite, resume after a kill, devices, report."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from sharpsim.report import write_report
from sharpsim.runner import ResultExistsError, read_results, run_experiment

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import toy_experiment  # noqa: E402

EXP = toy_experiment.EXPERIMENT


def _cli(args, env_extra=None, **kw):
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "sharpsim.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_run_writes_results_metadata_summary_and_figures(tmp_path):
    folder = run_experiment(EXP, tmp_path, trials=8, seed=3, progress=False)
    meta, rows = read_results(folder / "results.csv")
    assert meta["root_seed"] == 3 and meta["mode"] == "quick" and meta["trials"] == 8
    assert {"git_commit", "jax_version", "device", "x64"} <= set(meta)
    assert len(rows) == 3 * 8 and {r["setting"] for r in rows} == {0, 1, 2}
    assert all(r["experiment"] == "toy" and r["metric"] == "success" for r in rows)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["checks"][0]["quantity"] == "mean success"
    assert (folder / "toy.png").exists() and (folder / "toy.pdf").exists()


def test_finished_results_are_never_silently_overwritten(tmp_path):
    run_experiment(EXP, tmp_path, trials=8, progress=False)
    with pytest.raises(ResultExistsError, match="pass --force"):
        run_experiment(EXP, tmp_path, trials=8, progress=False)
    run_experiment(EXP, tmp_path, trials=8, seed=1, force=True, progress=False)
    assert read_results(tmp_path / "toy" / "results.csv")[0]["root_seed"] == 1
    # a half-done run with other settings is not mixed in either
    (tmp_path / "toy" / "results.csv").rename(tmp_path / "toy" / "results.partial.csv")
    with pytest.raises(ResultExistsError, match="half-done run with other settings"):
        run_experiment(EXP, tmp_path, trials=4, progress=False)


def test_a_killed_run_resumes_where_it_stopped(tmp_path):
    log = tmp_path / "ran.txt"
    args = ["run", "toy_experiment:EXPERIMENT", "--out", str(tmp_path / "a"), "--trials", "8"]
    proc = _cli(args, {"SHARPSIM_TOY_SLEEP": "4", "SHARPSIM_TOY_LOG": str(log)})
    partial = tmp_path / "a" / "toy" / "results.partial.csv"
    deadline = time.time() + 120
    while time.time() < deadline and not (partial.exists() and "0.2" in log.read_text()):
        time.sleep(0.2)  # setting 0 is written, setting 1 is sleeping
    assert partial.exists(), proc.communicate()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "a" / "toy" / "results.csv").exists()
    assert {r["setting"] for r in read_results(partial)[1]} == {0}

    resumed = _cli(args, {"SHARPSIM_TOY_LOG": str(log)})
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "resuming: 1 of 3 settings already done" in err
    assert log.read_text().split() == ["0.1", "0.2", "0.2", "0.4"]  # setting 0 was not recomputed
    fresh = run_experiment(EXP, tmp_path / "b", trials=8, progress=False)
    strip = lambda rows: [(r["setting"], r["trial"], r["value"]) for r in rows]  # noqa: E731
    assert strip(read_results(tmp_path / "a" / "toy" / "results.csv")[1]) == strip(read_results(fresh / "results.csv")[1])


def test_same_seed_same_results_on_one_and_four_devices(tmp_path):
    # Host (CPU) devices on both sides: on a GPU machine the flag would add CPU devices beside one GPU.
    one = _cli(["run", "toy_experiment:EXPERIMENT", "--out", str(tmp_path / "one"), "--trials", "8"],
               {"JAX_PLATFORMS": "cpu"})
    four = _cli(["run", "toy_experiment:EXPERIMENT", "--out", str(tmp_path / "four"), "--trials", "8"],
                {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    for p in (one, four):
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    m1, r1 = read_results(tmp_path / "one" / "toy" / "results.csv")
    m4, r4 = read_results(tmp_path / "four" / "toy" / "results.csv")
    assert m1["num_devices"] == 1 and m4["num_devices"] == 4
    assert [(r["setting"], r["trial"], r["value"]) for r in r1] == [(r["setting"], r["trial"], r["value"]) for r in r4]


def test_report_lists_claims_checks_and_missing_runs(tmp_path):
    run_experiment(EXP, tmp_path, trials=8, progress=False)
    other = EXP.__class__(**{**EXP.__dict__, "name": "toy_missing", "title": "Missing"})
    text = write_report(tmp_path, [EXP, other]).read_text()
    assert "| [Toy best-of-N](#toy) | mean success: predicted 1, measured" in text
    assert "| 1 consistent | **consistent** |" in text
    assert "![toy](toy/toy.png)" in text
    assert "Not run yet: `sharpsim run toy_missing`" in text


def test_cli_list_info_and_unknown_experiment():
    p = _cli(["run", "no_such_experiment"])
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and err.startswith("error: unknown experiment 'no_such_experiment'")
    assert "Traceback" not in err


def _external_experiment(**kw):
    def run_external(folder, mode, seed):
        (folder / "study.png").write_bytes(b"\x89PNG")
        return {"queries": 12, "accuracy": 0.75, "nested": {"lift": 0.1}, "label": "text is not a row"}

    def analyze(rows, mode):
        m = {r["metric"]: r["value"] for r in rows}
        return {"checks": [{"quantity": "accuracy", "predicted": 0.5, "measured": m["accuracy"], "lower": 0.75,
                            "upper": 0.75, "verdict": "consistent"}]}

    fields = dict(EXP.__dict__, name="external", settings=None, run_setting=None, analyze=analyze,
                  plot=lambda rows, s, out: sorted(out.glob("*.png")), run_external=run_external)
    fields.update(kw)
    return EXP.__class__(**fields)


def test_external_studies_record_their_summary_as_rows(tmp_path):
    folder = run_experiment(_external_experiment(), tmp_path, progress=False)
    meta, rows = read_results(folder / "results.csv")
    assert {(r["metric"], r["value"]) for r in rows} == {("queries", 12.0), ("accuracy", 0.75), ("nested.lift", 0.1)}
    assert meta["experiment"] == "external"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["figures"] == ["study.png"] and summary["checks"][0]["measured"] == 0.75
    with pytest.raises(ResultExistsError):
        run_experiment(_external_experiment(), tmp_path, progress=False)


def test_missing_requirements_skip_with_the_install_command(tmp_path):
    from sharpsim.runner import ExperimentSkipped

    with pytest.raises(ExperimentSkipped, match=r"needs no_such_module_xyz: pip install 'sharpsim\[hf\]'"):
        run_experiment(_external_experiment(requires=("no_such_module_xyz",)), tmp_path, progress=False)
    assert not (tmp_path / "external" / "results.csv").exists()


def test_verdict_vocabulary_orders_findings_between_consistent_and_inconsistent():
    # Catches: a finding reported as agreement, or hiding an inconsistency, or a typo passing as a verdict.
    from sharpsim.report import overall_verdict
    from sharpsim.runner import Check, verdict_kind

    assert verdict_kind("finding: the bound is loose here") == "finding"
    with pytest.raises(ValueError, match="verdict"):
        Check("q", 1.0, 1.0, 0.9, 1.1, "consistant")
    # Catches: two different quantities printed as one interval (passk_shrinkage showed "0.0771 [0.0771, -0.142]")
    with pytest.raises(ValueError, match="inverted"):
        Check("q", 0.0, 0.077, 0.077, -0.142, "consistent")
    Check("q", 0.0, 1.0, float("nan"), float("nan"), "inconclusive")  # no interval: allowed
    Check("q", 0.0, 1.0, -1e-4, float("inf"), "consistent")  # one-sided: allowed
    f = {"verdict": "finding: 1/δ is not needed"}
    assert overall_verdict([{"verdict": "consistent"}, f]) == f["verdict"]
    assert overall_verdict([{"verdict": "inconsistent"}, f]) == "inconsistent"
    assert overall_verdict([{"verdict": "inconclusive"}, f]) == "inconclusive"


# ------------------------------------------------------------------------------------------ spec and results I/O
def test_pivot_places_each_row_on_its_grid_cell():
    # Catches: transposed axes, a grid order taken from the rows instead of the sweep, a missing cell read as 0,
    # or a row whose key is off the grid dropped silently (the five hand-written pivots this replaces).
    import numpy as np

    from sharpsim.runner import pivot

    rows = [{"n": 4, "trial": 1, "value": 7.0}, {"n": 1, "trial": 0, "value": 2.0},
            {"n": np.int64(2), "trial": 1, "value": 5.0}]
    m = pivot(rows, "n", "trial", index_values=[4, 2, 1], fill=np.inf)
    assert m.shape == (3, 2)
    assert m.tolist() == [[np.inf, 7.0], [np.inf, 5.0], [2.0, np.inf]]  # built by hand from the three rows
    assert pivot(rows, "trial", "n").tolist()[0][0] == 2.0  # default axes: sorted values, trial 0 × n = 1
    with pytest.raises(ValueError, match="n = 8"):
        pivot(rows + [{"n": 8, "trial": 0, "value": 1.0}], "n", "trial", index_values=[1, 2, 4])


def test_every_stored_check_passes_check_validation(tmp_path):
    # Catches: a raw dict with a misspelt field or an unknown verdict reaching summary.json and the report
    # (checks used to come in three forms; only Check's is validated), and revise_check bypassing validation.
    import dataclasses

    from sharpsim.runner import Check, finalize, revise_check

    good = Check("q", 1.0, 1.1, 0.9, 1.3, "consistent", "n").as_dict()
    assert revise_check(good, verdict="finding: loose")["verdict"] == "finding: loose"
    with pytest.raises(ValueError, match="verdict"):
        revise_check(good, verdict="consistant")
    for bad in ({**good, "verdit": "consistent"}, {k: v for k, v in good.items() if k != "upper"}):
        exp = dataclasses.replace(EXP, analyze=lambda rows, mode, bad=bad: {"checks": [good, bad]})
        with pytest.raises(ValueError, match="check 'q'"):
            finalize(exp, tmp_path, rows=[], mode="quick", plot=False)
    exp = dataclasses.replace(EXP, analyze=lambda rows, mode: {"checks": [Check("q", 1, 1, 1, 1, "consistent")]})
    assert json.loads(finalize(exp, tmp_path, rows=[], mode="quick", plot=False) and
                      (tmp_path / "summary.json").read_text())["checks"][0]["verdict"] == "consistent"


def test_check_sign_max_abs_z_and_group_rows():
    # Catches: a sign check that ignores the predicted direction or calls an interval containing 0 decided, a z
    # check with the wrong Bonferroni count, and groups out of order or mixed.
    import scipy.stats

    from sharpsim.runner import check_max_abs_z, check_sign, group_rows

    assert check_sign("q", 0.2, 0.1, 0.3, positive=True)["verdict"] == "consistent"
    assert check_sign("q", 0.2, 0.1, 0.3, positive=False)["verdict"] == "inconsistent"
    assert check_sign("q", -0.2, -0.3, -0.1, positive=False)["verdict"] == "consistent"
    assert check_sign("q", 0.0, -0.1, 0.1, positive=True)["verdict"] == "inconclusive"
    crit = scipy.stats.norm.isf(0.05 / 2 / 30)
    below, above = check_max_abs_z("z", [0.5, -(crit - 1e-6)], alpha=0.05, comparisons=30), check_max_abs_z(
        "z", [0.5, -(crit + 1e-6)], alpha=0.05, comparisons=30)
    assert below["verdict"] == "consistent" and above["verdict"] == "inconsistent"
    assert below["measured"] == below["lower"] == below["upper"] == crit - 1e-6
    assert check_max_abs_z("z", [3.0, 0.1])["verdict"] == "inconsistent"  # 1%, 2 tests: critical value 2.81
    assert check_max_abs_z("z", [3.0] * 2000)["verdict"] == "consistent"  # 1%, 2000 tests: critical value 4.56
    rows = [{"setting": 2, "v": 1}, {"setting": 0, "v": 2}, {"setting": 2, "v": 3}]
    g = group_rows(rows)
    assert list(g) == [0, 2] and [r["v"] for r in g[2]] == [1, 3]
