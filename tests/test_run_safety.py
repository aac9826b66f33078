"""Run safety of the runner and the CLI (issue 12): no silent wrong results.

Each test names the defect it catches; every one of them failed on the runner before these fixes:
concurrent runs overwrote each other, resume mixed configurations, rows depended on the device count,
CLI values were silently reinterpreted, ``--force`` deleted the old results first, a truncated results
file resumed "successfully", errors came as deep tracebacks, files were created 0600.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

import sharpsim_experiments
from sharpsim import cli
from sharpsim.runner import (
    MAX_SEED,
    MIN_TRIALS,
    ResultFileError,
    ResultMismatchError,
    RunLockedError,
    experiment_lock,
    finalize,
    read_results,
    run_experiment,
)

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import toy_experiment  # noqa: E402
import toy_reduction  # noqa: E402

EXP = toy_experiment.EXPERIMENT
TOY = "toy_experiment:EXPERIMENT"


def _cli(args, env_extra=None):
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "sharpsim.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _main(capsys, *args):
    """``sharpsim ARGS`` in this process: (exit code, stderr). argparse errors exit 2 through SystemExit."""
    try:
        rc = cli.main(list(args))
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr().err


def _body(path):
    return [line for line in pathlib.Path(path).read_text().splitlines() if not line.startswith("# ")]


# ------------------------------------------------------------------------------------------ concurrency
def test_two_runs_on_the_same_out_cannot_overwrite_each_other(tmp_path):
    # Catches: seeds 0 and 1 at once on one --out both exiting 0 with only one seed's rows surviving.
    out = str(tmp_path / "out")
    env = {"SHARPSIM_TOY_SLEEP": "3"}  # the winner holds the folder ~9 s: long enough under load
    procs = [_cli(["run", TOY, "--out", out, "--trials", "4", "--seed", str(s)], env) for s in (0, 1)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    codes = sorted(rc for _, _, rc in results)
    assert codes == [0, 1], results
    loser_err = next(err for _, err, rc in results if rc == 1)
    assert "is in use by another run (pid " in loser_err and "host " in loser_err and "started " in loser_err
    assert "Traceback" not in loser_err
    winner_seed = next(s for s, (_, _, rc) in zip((0, 1), results) if rc == 0)
    meta, rows = read_results(tmp_path / "out" / "toy" / "results.csv")
    assert meta["root_seed"] == winner_seed and len(rows) == 3 * 4
    assert not (tmp_path / "out" / ".toy.lock").exists()  # released


def test_a_held_lock_names_its_holder_and_a_stale_one_is_taken_over(tmp_path, capsys):
    # Catches: no lock at all, and a lock left by a killed run blocking the folder forever.
    with experiment_lock(tmp_path, "toy"):
        with pytest.raises(RunLockedError, match=rf"in use by another run \(pid {os.getpid()} on host .*started "):
            run_experiment(EXP, tmp_path, trials=4, progress=False)
    assert not (tmp_path / "toy").exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is no longer running
    (tmp_path / ".toy.lock").write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename,
                                                     "started": "2026-01-01T00:00:00+00:00"}))
    run_experiment(EXP, tmp_path, trials=4, progress=False, plot=False)
    err = capsys.readouterr().err
    assert f"taking over a stale lock (pid {dead.pid}" in err and "no longer running" in err
    assert read_results(tmp_path / "toy" / "results.csv")[0]["trials"] == 4


# ------------------------------------------------------------------------------------------ resume
def _finished_as_partial(tmp_path, **kw):
    folder = run_experiment(EXP, tmp_path, trials=4, progress=False, plot=False, **kw)
    (folder / "results.csv").rename(folder / "results.partial.csv")
    return folder / "results.partial.csv"


@pytest.mark.parametrize("field,recorded", [("x64", "True"), ("jax_version", "0.0.1"), ("git_commit", "deadbeef"),
                                            ("numpy_version", "1.0"), ("device", "gpu:H100")])
def test_resume_refuses_rows_made_under_another_configuration(tmp_path, field, recorded):
    # Catches: a float32 partial resumed under JAX_ENABLE_X64=1 (or other versions / commit) mixing rows.
    partial = _finished_as_partial(tmp_path)
    text = "".join(f"# {field}: {recorded}\n" if line.startswith(f"# {field}: ") else line
                   for line in partial.read_text().splitlines(keepends=True))
    partial.write_text(text)
    with pytest.raises(ResultMismatchError, match=rf"{field}: {recorded} in the file, .* now"):
        run_experiment(EXP, tmp_path, trials=4, progress=False)
    assert not (tmp_path / "toy" / "results.csv").exists()


def test_reproduce_refuses_finished_results_of_another_seed_unless_forced(tmp_path, capsys):
    # Catches: `reproduce --only X --seed 5` over a seed-0 run keeping the seed-0 results and exiting 0.
    out = str(tmp_path)
    assert _main(capsys, "reproduce", "--only", TOY, "--trials", "4", "--out", out)[0] == 0
    rc, err = _main(capsys, "reproduce", "--only", TOY, "--trials", "4", "--seed", "5", "--out", out)
    assert rc == 1 and "root_seed: 0 in the file, 5 now" in err and "Traceback" not in err
    rc, err = _main(capsys, "reproduce", "--only", TOY, "--trials", "8", "--out", out)
    assert rc == 1 and "trials: 4 in the file, 8 now" in err
    assert read_results(tmp_path / "toy" / "results.csv")[0]["root_seed"] == 0
    assert _main(capsys, "reproduce", "--only", TOY, "--trials", "4", "--seed", "5", "--out", out, "--force")[0] == 0
    assert read_results(tmp_path / "toy" / "results.csv")[0]["root_seed"] == 5
    assert _main(capsys, "reproduce", "--only", TOY, "--trials", "4", "--seed", "5", "--out", out)[0] == 0  # reuse


def test_reproduce_reports_a_conflict_and_still_runs_the_other_experiments(tmp_path, capsys):
    # Catches: an uncaught ResultExistsError on the first experiment, the later ones never running, exit 0.
    run_experiment(EXP, tmp_path, trials=8, progress=False, plot=False)
    (tmp_path / "toy" / "results.csv").rename(tmp_path / "toy" / "results.partial.csv")
    rc, err = _main(capsys, "reproduce", "--only", TOY, "toy_reduction:EXPERIMENT", "--trials", "4",
                    "--out", str(tmp_path))
    assert rc == 1 and "Traceback" not in err
    assert "[reproduce] toy: error:" in err and "trials: 8 in the file, 4 now" in err
    assert "1 experiment(s) not run: toy" in err
    assert read_results(tmp_path / "toy_reduction" / "results.csv")[0]["trials"] == 4
    assert (tmp_path / "report.md").exists()


def test_a_truncated_or_undecodable_results_file_is_refused_naming_the_file(tmp_path):
    # Catches: a results file cut at a line boundary resuming "successfully" with rows missing.
    partial = _finished_as_partial(tmp_path)
    lines = partial.read_text().splitlines(keepends=True)
    partial.write_text("".join(lines[:-3]))  # three rows lost, at a line boundary
    with pytest.raises(ResultFileError, match=rf"{partial}.* is damaged: .*rows per setting"):
        run_experiment(EXP, tmp_path, trials=4, progress=False)
    partial.write_text("".join(lines[:-1]) + lines[-1].replace("1.0", "0.0"))  # an edited value
    with pytest.raises(ResultFileError, match="checksum"):
        run_experiment(EXP, tmp_path, trials=4, progress=False)
    partial.write_bytes(b"".join(line.encode() for line in lines[:20]) + b"\xff\xfe garbage\n")
    with pytest.raises(ResultFileError, match=rf"{partial} cannot be read"):
        run_experiment(EXP, tmp_path, trials=4, progress=False)
    # a finished file is verified too, when figures or summaries are regenerated from it
    run_experiment(EXP, tmp_path, trials=4, progress=False, force=True, plot=False)
    final = tmp_path / "toy" / "results.csv"
    final.write_text("".join(final.read_text().splitlines(keepends=True)[:-2]))
    with pytest.raises(ResultFileError, match=str(final)):
        finalize(EXP, tmp_path / "toy")


def test_a_killed_resumed_run_still_matches_a_fresh_one_byte_for_byte(tmp_path):
    # Catches: the checksum or parallel settings changing what a resumed run writes.
    partial = _finished_as_partial(tmp_path)
    lines = partial.read_text().splitlines(keepends=True)
    meta, rows = read_results(partial)
    keep = [r for r in rows if r["setting"] == 0]
    from sharpsim.runner import _to_csv

    partial.write_text(_to_csv({k: v for k, v in meta.items()}, keep))
    run_experiment(EXP, tmp_path, trials=4, progress=False, plot=False)
    fresh = run_experiment(EXP, tmp_path / "fresh", trials=4, progress=False, plot=False)
    assert _body(tmp_path / "toy" / "results.csv") == _body(fresh / "results.csv")
    assert len(lines) > 0


# ------------------------------------------------------------------------------------------ --force
def test_force_replaces_the_old_results_only_when_the_new_run_is_complete(tmp_path):
    # Catches: --force deleting results.csv first, so a kill left the old summary and figures beside nothing.
    out = tmp_path / "out"
    run_experiment(EXP, out, trials=4, seed=0, progress=False)
    old = (out / "toy" / "results.csv").read_text()
    log = tmp_path / "ran.txt"
    proc = _cli(["run", TOY, "--out", str(out), "--trials", "4", "--seed", "1", "--force"],
                {"SHARPSIM_TOY_SLEEP": "3", "SHARPSIM_TOY_LOG": str(log)})
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and len(log.read_text().split()) >= 2):
        time.sleep(0.2)  # the forced run has finished setting 0 and sleeps in setting 1
    assert log.exists(), proc.communicate()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "toy" / "results.csv").read_text() == old  # the old run is whole
    assert (out / "toy" / "summary.json").exists() and (out / "toy" / "toy.png").exists()
    assert not (out / "toy" / "results.partial.csv").exists()
    run_experiment(EXP, out, trials=4, seed=1, force=True, progress=False)
    assert read_results(out / "toy" / "results.csv")[0]["root_seed"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["toy"]  # no staging folder, no lock left behind


# ------------------------------------------------------------------------------------------ CLI values
@pytest.mark.parametrize("args,message", [
    (["--trials", "0"], f"at least {MIN_TRIALS} trials"),
    (["--trials", "1"], f"at least {MIN_TRIALS} trials"),
    (["--seed", "-1"], f"outside [0, {MAX_SEED}]"),
    (["--seed", str(2**32)], f"outside [0, {MAX_SEED}]"),
    (["--seed", str(2**64)], f"outside [0, {MAX_SEED}]"),
    (["--out", ""], "must not be empty"),
])
def test_cli_values_are_refused_not_reinterpreted(tmp_path, capsys, monkeypatch, args, message):
    # Catches: --trials 0 running 256 trials, --seed -1 == 4294967295, --out "" writing to results/quick,
    # --trials 1 reporting "inconsistent" from zero-width intervals, --seed >= 2**64 as a traceback.
    monkeypatch.chdir(tmp_path)
    rc, err = _main(capsys, "run", TOY, *(["--out", str(tmp_path / "o")] if "--out" not in args else []), *args)
    assert rc == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "results").exists()


def test_api_refuses_the_same_values(tmp_path):
    # Catches: run_experiment(trials=0) falling back to the default trial count.
    for kw, match in [(dict(trials=0), "trials must be >= 2"), (dict(trials=1), "trials must be >= 2"),
                      (dict(seed=-1), "seed must lie in"), (dict(seed=2**32), "seed must lie in"),
                      (dict(trials=2.5), "trials must be an integer")]:
        with pytest.raises(ValueError, match=match):
            run_experiment(EXP, tmp_path, progress=False, **{"trials": 4, **kw})
    assert not (tmp_path / "toy").exists()


# ------------------------------------------------------------------------------------------ one-line errors
def test_unusable_folders_and_bad_names_give_one_line_errors(tmp_path, capsys):
    # Catches: deep tracebacks for --out a file / under a file, `run nomod:EXP`, `run module:NOPE`, and
    # plot/report into a folder whose files cannot be written.
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [
        (["run", TOY, "--trials", "4", "--out", str(a_file)], 1, str(a_file)),
        (["run", TOY, "--trials", "4", "--out", str(a_file / "sub")], 1, "Not a directory"),
        (["run", "nomod:EXP"], 2, "cannot import module 'nomod'"),
        (["run", "sharpsim_experiments.bon_vs_n:NOPE"], 2, "has no attribute 'NOPE'"),
        (["run", "toy_experiment:run_setting"], 2, "not a sharpsim.runner.Experiment"),
    ]
    for args, code, message in cases:
        rc, err = _main(capsys, *args)
        assert rc == code and message in err and "Traceback" not in err, (args, rc, err)
        assert err.count("\n") == 1, err
    run_experiment(EXP, tmp_path / "out", trials=4, progress=False)
    (tmp_path / "out" / "toy" / "summary.json").unlink()
    (tmp_path / "out" / "toy" / "summary.json").mkdir()  # cannot be replaced by a file
    rc, err = _main(capsys, "plot", TOY, "--out", str(tmp_path / "out"))
    assert rc == 1 and "summary.json" in err and "Traceback" not in err
    (tmp_path / "out" / "report.md").mkdir()
    rc, err = _main(capsys, "report", "--out", str(tmp_path / "out"))
    assert rc == 1 and "report.md" in err and "Traceback" not in err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folders_give_one_line_errors(tmp_path, capsys):
    run_experiment(EXP, tmp_path / "out", trials=4, progress=False)
    ro = tmp_path / "out"
    for p in (ro / "toy", ro):
        p.chmod(0o555)
    try:
        for args in (["plot", TOY], ["report"], ["reproduce", "--only", TOY, "--trials", "4"],
                     ["run", TOY, "--trials", "4", "--force"]):
            rc, err = _main(capsys, *args, "--out", str(ro))
            assert rc == 1 and "Traceback" not in err and "Permission denied" in err, (args, err)
    finally:
        for p in (ro, ro / "toy"):
            p.chmod(0o755)


# ------------------------------------------------------------------------------------------ files
def test_result_files_respect_the_umask(tmp_path):
    # Catches: results.csv, summary.json and report.md created 0600 through mkstemp whatever the umask.
    from sharpsim.report import write_report

    old = os.umask(0o022)
    try:
        folder = run_experiment(EXP, tmp_path, trials=4, progress=False)
        report = write_report(tmp_path, [EXP])
        os.umask(0o077)
        run_experiment(EXP, tmp_path / "private", trials=4, progress=False, plot=False)
    finally:
        os.umask(old)
    for p in (folder / "results.csv", folder / "summary.json", report):
        assert p.stat().st_mode & 0o777 == 0o644, p
    assert (tmp_path / "private" / "toy" / "results.csv").stat().st_mode & 0o777 == 0o600


def test_bench_json_refuses_to_overwrite_without_force(tmp_path, capsys):
    # Catches: `sharpsim bench --json FILE` silently overwriting an existing file (after running the bench).
    target = tmp_path / "bench.json"
    target.write_text("keep me")
    t0 = time.perf_counter()
    rc, err = _main(capsys, "bench", "tabular", "--json", str(target))
    assert rc == 1 and "exists; pass --force" in err and target.read_text() == "keep me"
    assert time.perf_counter() - t0 < 5  # refused before the benchmarks ran


# ------------------------------------------------------------------------------------------ devices
def _run_on(devices, name, out, trials=None):
    env = {"JAX_PLATFORMS": "cpu"}  # host devices on both sides (a GPU machine would mix kinds)
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return _cli(["run", name, "--out", str(out), *(["--trials", str(trials)] if trials else [])], env)


def _assert_same_on_one_and_four_devices(tmp_path, name, trials=None):
    procs = {d: _run_on(d, name, tmp_path / f"d{d}", trials) for d in (1, 4)}
    for p in procs.values():
        _, err = p.communicate(timeout=1800)
        assert p.returncode == 0, err
    folders = {d: next(p for p in (tmp_path / f"d{d}").iterdir() if not p.name.startswith(".")) for d in procs}
    m1, r1 = read_results(folders[1] / "results.csv")
    m4, r4 = read_results(folders[4] / "results.csv")
    assert m1["num_devices"] == 1 and m4["num_devices"] == 4
    differ = [(a, b) for a, b in zip(r1, r4) if a != b]
    assert len(r1) == len(r4) and not differ, f"{len(differ)} of {len(r1)} rows differ, e.g. {differ[:2]}"
    assert m1["body_sha256"] == m4["body_sha256"]
    s1, s4 = (json.loads((folders[d] / "summary.json").read_text()) for d in (1, 4))
    s1.pop("compile"), s4.pop("compile")  # compile counts and seconds describe the run, not the results
    assert s1 == s4


def test_same_rows_on_one_and_four_devices_when_batch_shape_matters(tmp_path):
    # Catches: trials split over devices, so XLA reduced a batch of T/4 with another kernel (and summation
    # order) than a batch of T: 4096 trials of a 3-term sum differed in the last bit on 4 devices.
    _assert_same_on_one_and_four_devices(tmp_path, "toy_reduction:EXPERIMENT")


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in sharpsim_experiments.REGISTRY if not n.startswith("bridge")])
def test_every_registered_experiment_gives_the_same_rows_on_one_and_four_devices(tmp_path, name):
    # Catches: greedy_vs_argmax (3,680 of 6,958 rows) and bon_lift (563 of 14,081 rows and summary.json)
    # differing ~1e-7 between 1 and 4 devices at their --quick trial counts; new experiments are picked up
    # from sharpsim_experiments.REGISTRY automatically.
    if sharpsim_experiments.get(name).run_external is not None:
        pytest.skip(f"{name} is an external study (no trials axis)")
    _assert_same_on_one_and_four_devices(tmp_path, name)
