"""The experiment runner: one definition per paper claim, tidy result files, resume, devices, progress.

An :class:`Experiment` (defined in the top-level ``sharpsim_experiments/`` package, one module per claim) states
its claim, instance, sweep, algorithms, bounds and predicted exponent, and provides four functions:

* ``settings(mode) -> list[dict]`` — the sweep points (flat dicts of JSON scalars); ``mode`` is
  ``"quick"`` or ``"full"``;
* ``run_setting(keys, setting, mode) -> list[dict]`` — run every trial of one setting. ``keys`` is a
  ``[trials]`` array of PRNG keys, placed on the device this setting runs on (trials are the batch axis: call
  ``jax.jit(jax.vmap(f))(keys)``). Each row is a dict with at least ``trial`` (int), ``queries`` (the
  sample-and-evaluate queries that produced it), ``metric`` (str) and ``value`` (float); extra columns
  (e.g. ``n``, ``N``) are kept. The runner adds ``experiment``, ``setting`` and the setting's fields;
  with several devices it is called from worker threads, one setting per device at a time, so it must
  not mutate shared state (caches of pure values, such as ``functools.lru_cache``, are fine);
* ``analyze(rows, mode) -> dict`` — from the rows of all settings: ``{"checks": [Check-as-dict, …], …}``
  where each check compares a predicted exponent (or inequality) with the measurement;
* ``plot(rows, summary, out_dir) -> list[Path]`` — figures (PNG and PDF), from the rows only.

Result files: ``<out>/<name>/results.csv`` (metadata as leading ``# key: value`` lines: root seed, git
commit, versions, device, x64, mode, trials, then the row count of every setting and a SHA-256 of the rows,
verified whenever the file is read), ``summary.json`` and the figures. A half-done run keeps its completed
settings in ``results.partial.csv`` (rewritten atomically after each setting) and resumes from it only when
seed, trials, mode, x64, device kind, versions and commit match (:data:`RESUME_FIELDS`); a finished result
is never overwritten unless ``force=True``, and then the new run is built beside the old folder and swapped
in when complete. One run per experiment folder at a time (:func:`experiment_lock`).

Studies whose unit is not a vmapped trial (e.g. a real language model through the bridge) set
``run_external(folder, mode, seed) -> dict`` instead: it writes its own tables and figures into the folder
and returns a flat summary; the runner records the summary's numbers as rows of ``results.csv`` (same
metadata and overwrite rules), so ``analyze`` and the report treat it like any other experiment.
``requires`` lists modules it needs (missing ones skip it with the install command), and
``in_quick=False`` keeps a slow study out of ``reproduce --quick`` (``--only NAME`` still runs it).

The runner has three parts, re-exported here (``from sharpsim.runner import …`` keeps working):

* :mod:`sharpsim.runner.spec` — the experiment spec: :class:`Experiment`, the verdict vocabulary and the one
  check form (:class:`Check`, :func:`check_slope`, :func:`check_sign`, :func:`check_max_abs_z`,
  :func:`revise_check`);
* :mod:`sharpsim.runner.results` — results I/O: :func:`metadata`, :func:`write_atomic`, :func:`read_results`
  (checksummed), :func:`rows_where`, :func:`group_rows`, :func:`column` and the one rows → matrix :func:`pivot`;
* :mod:`sharpsim.runner.compilation` — compilation paid once: the persistent compilation cache the CLI turns
  on (:func:`enable_compile_cache`), compile statistics per experiment (:func:`compile_stats`, stored in
  ``summary.json`` under ``"compile"``) and the trace-count guard :func:`assert_max_traces`;
* :mod:`sharpsim.runner.loop` — the run loop: seeds and keys (:func:`trial_keys`), devices, the folder lock
  (:func:`experiment_lock`), :func:`run_experiment` (run / resume), :func:`reuse_results`, :func:`finalize`.

Keys: ``root = jax.random.key(seed)`` (seed in [0, 2³² − 1]); setting i uses ``fold_in(root, i)`` split into
``trials`` keys. With several local devices, whole settings run on different devices at once, each on one
device with its full batch of trials, so results do not depend on the number of devices (nor on which
settings ran before).
"""

from sharpsim.runner.compilation import (CompileStats, assert_max_traces, compile_stats, default_cache_dir,
                                         enable_compile_cache)
from sharpsim.runner.loop import (MAX_SEED, MIN_TRIALS, ExperimentSkipped, ResultExistsError, ResultMismatchError,
                                  RunLockedError, check_seed, check_trials, experiment_lock, finalize, reuse_results,
                                  run_experiment, shard_trials, trial_keys)
from sharpsim.runner.results import (REUSE_FIELDS, RESUME_FIELDS, ResultFileError, _to_csv,  # noqa: F401 (tests)
                                     column, config_differences, group_rows, metadata, pivot, read_results, rows_where,
                                     write_atomic)
from sharpsim.runner.spec import (VERDICTS, Check, Experiment, as_check_dict, check_max_abs_z, check_sign,
                                  check_slope, is_verdict, revise_check, verdict_kind)

__all__ = [
    "Experiment",
    "Check",
    "check_slope",
    "check_sign",
    "check_max_abs_z",
    "revise_check",
    "as_check_dict",
    "VERDICTS",
    "verdict_kind",
    "is_verdict",
    "ResultExistsError",
    "ResultMismatchError",
    "ResultFileError",
    "RunLockedError",
    "ExperimentSkipped",
    "MIN_TRIALS",
    "MAX_SEED",
    "check_seed",
    "check_trials",
    "trial_keys",
    "shard_trials",
    "experiment_lock",
    "run_experiment",
    "reuse_results",
    "finalize",
    "read_results",
    "write_atomic",
    "metadata",
    "RESUME_FIELDS",
    "REUSE_FIELDS",
    "config_differences",
    "rows_where",
    "group_rows",
    "column",
    "pivot",
    "CompileStats",
    "compile_stats",
    "enable_compile_cache",
    "default_cache_dir",
    "assert_max_traces",
]
