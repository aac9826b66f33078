"""Compilation paid once: the trace-count guard on the library sweeps, compile statistics, the persistent cache."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sharpsim import metrics

from sharpsim import SampleEvaluateOracle, instances
from sharpsim.algorithms import (RLHFConfig, XPOConfig, rlhf_sharpening_sweep, sft_sharpening_sweep,
                                 xpo_sharpening_sweep)
from sharpsim.classes import FiniteClass
from sharpsim.runner import assert_max_traces, compile_stats, run_experiment
from sharpsim.runner.compilation import TraceCountError, default_cache_dir

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import toy_experiment  # noqa: E402


# ------------------------------------------------------------------------------------------ the guard itself
def test_assert_max_traces_catches_a_recompile_per_call():
    """Catches a guard that never fires: a new shape per call retraces, and the second trace must raise."""
    f = jax.jit(assert_max_traces(lambda x: x * 2, n=1))
    f(jnp.ones(3))
    f(jnp.zeros(3))  # same shape: cached, no trace
    with pytest.raises(TraceCountError, match="traced 2 times"):
        f(jnp.ones(4))


def _instance(delta_gap, key=0):
    inst = instances.hard_instance(jax.random.key(key), d=4, M=4, Delta=delta_gap)
    return SampleEvaluateOracle(inst.pi_base, inst.mu), FiniteClass.from_instance(inst)


# ------------------------------------------------------------------------------------------ the library sweeps
# Each sweep, jitted with its hyperparameters as arguments, is called at two hyperparameter points (another
# instance table, other traced β/α/σ, another key): it must trace once. Catches a hyperparameter that became
# static (a Python float turned into a compile-time constant, or a closure over the instance), which would
# recompile every sweep point of an experiment.
def test_sft_sweep_traces_once_across_instances_and_keys():
    def sweep(key, oracle, cls):
        ev = metrics.SharpnessEvaluation.of(oracle.pi_base, oracle.mu, 0.2)
        sw = sft_sharpening_sweep(key, oracle, lambda N: cls.bon_closure(N), (2, 8), (1, 4), evaluate=ev)
        return sw.sharpness_error

    f = jax.jit(assert_max_traces(sweep, n=1))
    for gap, k in [(0.5, 1), (0.3, 2)]:
        oracle, base = _instance(gap)
        out = f(jax.random.key(k), oracle, base)
        assert out.shape == (2, 2) and bool(jnp.all(jnp.isfinite(out)))


def test_rlhf_sweep_traces_once_across_beta_and_noise():
    oracle, cls = _instance(0.5)
    cfg = RLHFConfig(n=16, beta=0.5)

    def sweep(key, beta, sigma):
        return rlhf_sharpening_sweep(key, oracle, cls, cfg, n_grid=(4, 16), betas=beta, reward_noises=sigma,
                                     evaluate=metrics.SharpnessEvaluation.of(oracle.pi_base, oracle.mu, 0.2)).sharpness_error

    f = jax.jit(assert_max_traces(sweep, n=1))
    a = f(jax.random.key(0), jnp.asarray([0.5]), jnp.asarray([0.0]))
    b = f(jax.random.key(1), jnp.asarray([2.0]), jnp.asarray([0.3]))
    assert a.shape == b.shape == (2, 1)


def test_xpo_sweep_traces_once_across_beta_alpha_and_noise():
    oracle, cls = _instance(0.5)
    cfg = XPOConfig(T=6, beta=0.5, alpha=0.1, eval_samples=4, eval_stride=3)

    def sweep(key, beta, alpha, sigma):
        return xpo_sharpening_sweep(key, oracle, cls, cfg, T_grid=(3, 6), betas=beta, alphas=alpha,
                                    reward_noises=sigma,
                                    evaluate=metrics.SharpnessEvaluation.of(oracle.pi_base, oracle.mu, 0.2)).sharpness_error

    f = jax.jit(assert_max_traces(sweep, n=1))
    a = f(jax.random.key(0), jnp.asarray([0.5, 1.0]), jnp.asarray([0.1, 0.0]), jnp.asarray([0.0, 0.0]))
    b = f(jax.random.key(1), jnp.asarray([2.0, 0.2]), jnp.asarray([0.05, 0.3]), jnp.asarray([0.1, 0.2]))
    assert a.shape == b.shape == (2, 2)


# ------------------------------------------------------------------------------------------ statistics
def test_compile_stats_counts_compilations_and_not_cached_calls():
    """Catches listeners that count calls instead of compilations, or miss them: 1 new program, then 0."""
    f = jax.jit(lambda x: jnp.cumsum(x) * 3.0 + 1.0)
    shape = (7, 13)  # a shape no other test compiles this function at
    with compile_stats() as s1:
        f(jnp.ones(shape)).block_until_ready()
    with compile_stats() as s2:
        f(jnp.ones(shape)).block_until_ready()
    assert s1.programs >= 1 and s1.backend_s > 0 and s1.traces >= 1
    assert s2.programs == 0 and s2.traces == 0


def test_runner_records_compile_statistics_in_the_summary(tmp_path):
    folder = run_experiment(toy_experiment.EXPERIMENT, tmp_path, trials=8, progress=False, plot=False)
    comp = json.loads((folder / "summary.json").read_text())["compile"]
    assert {"programs", "cache_hits", "cache_misses", "total_s", "backend_s", "trace_s"} <= set(comp)
    assert comp["programs"] >= 0 and comp["total_s"] >= 0


# ------------------------------------------------------------------------------------------ the persistent cache
def _cli(args, env):
    full = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **env}
    full.pop("SHARPSIM_NO_COMPILE_CACHE", None)
    if "SHARPSIM_NO_COMPILE_CACHE" in env:
        full["SHARPSIM_NO_COMPILE_CACHE"] = env["SHARPSIM_NO_COMPILE_CACHE"]
    return subprocess.run([sys.executable, "-m", "sharpsim.cli", *args], env=full, capture_output=True, text=True,
                          timeout=300)


def test_cli_persistent_cache_second_run_loads_programs_from_disk(tmp_path):
    """Catches a cache that is not turned on (or keeps only slow-to-compile programs): the second run of the
    same experiment must load its programs from disk."""
    cache = tmp_path / "cache"
    args = ["run", "toy_experiment:EXPERIMENT", "--trials", "8"]
    r1 = _cli([*args, "--out", str(tmp_path / "a")], {"SHARPSIM_CACHE_DIR": str(cache)})
    assert r1.returncode == 0, r1.stderr
    assert any(cache.iterdir())
    r2 = _cli([*args, "--out", str(tmp_path / "b")], {"SHARPSIM_CACHE_DIR": str(cache)})
    assert r2.returncode == 0, r2.stderr
    c1 = json.loads((tmp_path / "a" / "toy" / "summary.json").read_text())["compile"]
    c2 = json.loads((tmp_path / "b" / "toy" / "summary.json").read_text())["compile"]
    assert c1["cache_hits"] == 0 and c1["programs"] >= 1
    assert c2["cache_hits"] == c2["programs"] >= 1
    assert "from the persistent cache" in r2.stderr



def test_cache_opt_outs_leave_jax_config_alone(monkeypatch, tmp_path):
    """Catches an opt-out that is ignored: with SHARPSIM_NO_COMPILE_CACHE=1, or --no-compile-cache on the command
    line, nothing is enabled and no folder is created (in-process; the CLI's flag reaches the setup)."""
    from sharpsim import cli
    from sharpsim.runner.compilation import enable_compile_cache

    before = jax.config.jax_compilation_cache_dir
    monkeypatch.setenv("SHARPSIM_NO_COMPILE_CACHE", "1")
    assert enable_compile_cache(tmp_path / "off") is None and not (tmp_path / "off").exists()
    monkeypatch.setenv("SHARPSIM_NO_COMPILE_CACHE", "0")
    calls = []
    monkeypatch.setattr("sharpsim.runner.compilation.enable_compile_cache", lambda *a: calls.append(a))
    for argv in (["run", "toy", "--no-compile-cache"], ["reproduce", "--no-compile-cache"],
                 ["bench", "tabular", "--no-compile-cache"]):
        cli._setup_compile_cache(cli.build_parser().parse_args(argv))
    assert calls == [] and jax.config.jax_compilation_cache_dir == before
    cli._setup_compile_cache(cli.build_parser().parse_args(["run", "toy"]))
    assert len(calls) == 1  # and without the flag it is turned on


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SHARPSIM_CACHE_DIR", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("SHARPSIM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "sharpsim" / "jax"
