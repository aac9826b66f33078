"""The run loop: seeds and keys, devices, the folder lock, run / resume / reuse, and :func:`finalize`.

Keys: ``root = jax.random.key(seed)`` (seed in [0, 2³² − 1]); setting i uses ``fold_in(root, i)`` split into
``trials`` keys. With several local devices, whole settings run on different devices at once, each on one
device with its full batch of trials, so results do not depend on the number of devices (nor on which settings
ran before). Run safety (lock naming the holder, stale takeover, resume only under the same configuration,
checksummed results, staged ``--force``) is described in :func:`run_experiment`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import importlib.util
import json
import os
import pathlib
import queue
import shutil
import socket
import sys
from typing import Optional

import jax
import numpy as np

from sharpsim.runner.results import (REUSE_FIELDS, RESUME_FIELDS, ResultFileError, _to_csv, config_differences,
                                     metadata, read_results, write_atomic)
from sharpsim.runner.compilation import compile_stats
from sharpsim.runner.spec import Experiment, as_check_dict

try:
    import fcntl
except ImportError:  # Windows: the lock falls back to the pid recorded in the lock file
    fcntl = None

__all__ = ["ResultExistsError", "ResultMismatchError", "RunLockedError", "ExperimentSkipped", "MIN_TRIALS",
           "MAX_SEED", "check_seed", "check_trials", "trial_keys", "shard_trials", "experiment_lock",
           "run_experiment", "reuse_results", "finalize"]


class ResultExistsError(FileExistsError):
    """A finished result file exists and ``force`` was not given."""


class ExperimentSkipped(RuntimeError):
    """An experiment cannot run here (a missing optional dependency or model); the message says why."""


# ------------------------------------------------------------------------------------------ errors
class ResultMismatchError(ResultExistsError):
    """Results on disk were made under another configuration (seed, trials, mode, x64, versions, commit)."""


class RunLockedError(RuntimeError):
    """Another run holds the experiment folder; the message names it (pid, host, start time)."""


# ------------------------------------------------------------------------------------------ keys & devices
#: The fewest trials per setting the runner accepts: one trial gives zero-width intervals, so every check
#: would compare a prediction with a point and read "inconsistent" for no reason.
MIN_TRIALS = 2
#: Root seeds are 32-bit: in the default float32 mode ``jax.random.key`` keeps only the low 32 bits, so a
#: larger (or negative) seed would silently alias another one (−1 ≡ 2³² − 1).
MAX_SEED = 2**32 - 1


def check_seed(seed) -> int:
    """``seed`` as an int in [0, 2³² − 1]; ``ValueError`` naming ``seed`` otherwise (no silent aliasing)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer in [0, {MAX_SEED}], got {seed!r}.")
    if not 0 <= int(seed) <= MAX_SEED:
        raise ValueError(f"seed must lie in [0, {MAX_SEED}] (JAX keys keep 32 bits, so other values would alias "
                         f"a seed in that range), got {seed}.")
    return int(seed)


def check_trials(trials) -> int:
    """``trials`` as an int ≥ :data:`MIN_TRIALS`; ``ValueError`` naming ``trials`` otherwise."""
    if isinstance(trials, bool) or not isinstance(trials, (int, np.integer)):
        raise ValueError(f"trials must be an integer >= {MIN_TRIALS}, got {trials!r}.")
    if int(trials) < MIN_TRIALS:
        raise ValueError(f"trials must be >= {MIN_TRIALS} (one trial per setting gives zero-width intervals, "
                         f"so no check could be decided), got {trials}.")
    return int(trials)


def trial_keys(seed: int, setting_index: int, trials: int):
    """``split(fold_in(key(seed), setting_index), trials)``: the same keys on any number of devices."""
    return jax.random.split(jax.random.fold_in(jax.random.key(seed), setting_index), trials)


def shard_trials(keys):
    """Spread a ``[trials]`` key array over all local devices (a 1-D ``Mesh`` over the trials axis).

    With one device, or a trial count that does not divide evenly, the keys are returned unchanged.
    The runner itself no longer shards trials (see :func:`run_experiment`): XLA picks kernels by shape, so a
    per-device batch of T/D trials can round differently from a batch of T (e.g. the CPU backend hands
    large reductions to a library that sums in another order), and rows would depend on the device count.
    This helper stays for users who want trial-parallelism within one call and accept that.
    """
    devices = jax.local_devices()
    if len(devices) <= 1 or keys.shape[0] % len(devices):
        return keys
    mesh = jax.sharding.Mesh(np.array(devices), ("trials",))
    return jax.device_put(keys, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("trials")))


# ------------------------------------------------------------------------------------------ locking
def _holder_text(info: dict) -> str:
    return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, started {info.get('started', '?')}"
            + (f": {info['command']}" if info.get("command") else ""))


def _read_holder(fd) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 65536).decode("utf-8", "replace")
        return json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}


def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return True
    return True


@contextlib.contextmanager
def experiment_lock(out_dir, name: str):
    """Hold ``<out_dir>/.<name>.lock`` for the duration: one run per experiment folder at a time.

    The lock is an ``flock`` on that file (the kernel drops it when the holder dies, however it dies); the
    file records the holder (pid, host, start time, command). A second run raises :class:`RunLockedError`
    naming the holder. A lock file left by a run that died (its pid no longer running, or the flock free)
    is stale: it is taken over, and the takeover is reported on stderr.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f".{name}.lock"
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
          "command": " ".join(sys.argv)[:300]}
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:  # no flock (Windows): the pid in the file decides
                info = _read_holder(fd)
                alive = info.get("host") == me["host"] and _pid_alive(info.get("pid"))
                if info and info.get("pid") != os.getpid() and alive:
                    raise BlockingIOError
        except BlockingIOError:
            info = _read_holder(fd)
            os.close(fd)
            raise RunLockedError(
                f"{out_dir / name} is in use by another run ({_holder_text(info)}); wait for it to finish, "
                "or choose another --out folder.") from None
        try:  # the holder before us may have unlinked the file after we opened it: lock the live file only
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    stale = _read_holder(fd)
    if stale:
        state = "no longer running" if not _pid_alive(stale.get("pid")) or stale.get("host") != me["host"] else "gone"
        print(f"[{name}] taking over a stale lock ({_holder_text(stale)}; {state}): that run ended without "
              "releasing it", file=sys.stderr)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(me).encode("utf-8"))
    try:
        yield path
    finally:
        try:
            os.unlink(path)
        finally:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _clean_leftovers(out_dir: pathlib.Path, name: str) -> None:
    """Under the lock: remove staging folders of forced runs that died; restore a folder whose swap was cut."""
    folder = out_dir / name
    replaced = sorted(out_dir.glob(f".{name}.replaced-*"))
    if not folder.exists() and replaced:  # killed between the two renames of a swap: keep the old results
        os.rename(replaced.pop(), folder)
    for p in [*out_dir.glob(f".{name}.staging-*"), *replaced]:
        shutil.rmtree(p, ignore_errors=True)


def _swap_in(out_dir: pathlib.Path, name: str, staging: pathlib.Path) -> None:
    """Replace ``out_dir/name`` by the finished ``staging`` folder: two renames, the old one deleted last."""
    folder = out_dir / name
    if folder.exists():
        old = out_dir / f".{name}.replaced-{os.getpid()}"
        os.rename(folder, old)
        os.rename(staging, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, folder)


# ------------------------------------------------------------------------------------------ running
def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="setting", file=sys.stderr, leave=True)


def _run_one_setting(experiment: Experiment, i: int, setting: dict, *, seed: int, trials: int, mode: str,
                     device=None) -> list:
    """Every trial of setting ``i`` on one device (the default one when ``device`` is None)."""
    if device is None:
        keys = trial_keys(seed, i, trials)
        new = experiment.run_setting(keys, dict(setting), mode)
    else:
        with jax.default_device(device):
            keys = jax.device_put(trial_keys(seed, i, trials), device)
            new = experiment.run_setting(keys, dict(setting), mode)
    return [{"experiment": experiment.name, "setting": i, **setting, **r} for r in new]


def _run_settings(experiment: Experiment, todo: list, *, seed: int, trials: int, mode: str, progress: bool):
    """Yield ``(i, rows)`` for each setting of ``todo`` as it completes.

    Devices run different *settings* at once, each setting whole on one device, so every trial is computed
    by the same program on the same shapes whatever the device count: rows are bit-identical on 1 and on
    D devices. (Splitting one setting's trials over D devices changes the per-device batch shape, and XLA
    may round a batch of T/D differently from a batch of T.)
    """
    devices = jax.local_devices()
    if len(devices) <= 1 or len(todo) <= 1:
        for i, setting in _progress(todo, len(todo), experiment.name, progress):
            yield i, _run_one_setting(experiment, i, setting, seed=seed, trials=trials, mode=mode)
        return
    free: queue.Queue = queue.Queue()
    for d in devices:
        free.put(d)

    def job(i, setting):
        device = free.get()
        try:
            return i, _run_one_setting(experiment, i, setting, seed=seed, trials=trials, mode=mode, device=device)
        finally:
            free.put(device)

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(devices), thread_name_prefix="sharpsim-setting")
    try:
        futures = [pool.submit(job, i, s) for i, s in todo]
        for fut in _progress(concurrent.futures.as_completed(futures), len(todo), experiment.name, progress):
            yield fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _resolve_trials(experiment: Experiment, mode: str, trials) -> int:
    if mode not in ("quick", "full"):
        raise ValueError(f"mode must be 'quick' or 'full', got {mode!r}.")
    return check_trials(experiment.trials[mode] if trials is None else trials)


def run_experiment(
    experiment: Experiment,
    out_dir,
    *,
    mode: str = "quick",
    trials: Optional[int] = None,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
    plot: bool = True,
) -> pathlib.Path:
    """Run (or resume) every setting of ``experiment``; write results, summary and figures. Returns its folder.

    Run safety (docs/experiments.md, "Run safety"):

    * the folder is locked for the whole run (:func:`experiment_lock`); a second run on it raises
      :class:`RunLockedError` naming the holder;
    * a finished ``results.csv`` is never overwritten without ``force``; a half-done run resumes only when
      everything in :data:`RESUME_FIELDS` matches (else :class:`ResultMismatchError` names the field), and
      only after its row counts and checksum verify (else :class:`ResultFileError` names the file);
    * with ``force`` the new run is built in a staging folder beside the old one and swapped in only when
      it is complete, so a run killed half-way leaves the old results whole;
    * devices run whole settings (see :func:`_run_settings`), so rows do not depend on the device count.
    """
    trials = _resolve_trials(experiment, mode, trials)
    seed = check_seed(seed)
    missing = [m for m in experiment.requires if importlib.util.find_spec(m) is None]
    if missing:
        raise ExperimentSkipped(f"{experiment.name} needs {', '.join(missing)}: pip install 'sharpsim[hf]'")
    out_dir = pathlib.Path(out_dir)
    meta = metadata(experiment, seed=seed, mode=mode, trials=trials)
    with experiment_lock(out_dir, experiment.name):
        _clean_leftovers(out_dir, experiment.name)
        folder = out_dir / experiment.name
        if force and folder.exists():
            work = out_dir / f".{experiment.name}.staging-{os.getpid()}"
            work.mkdir()
        else:
            work = folder
        final, partial = work / "results.csv", work / "results.partial.csv"
        if (folder / "results.csv").exists() and not force:
            raise ResultExistsError(
                f"{folder / 'results.csv'} exists; pass --force to overwrite it, or choose another --out folder."
            )
        done_rows: list = []
        if partial.exists():  # only when not forced: a forced run starts in an empty staging folder
            old_meta, done_rows = read_results(partial)
            if "body_sha256" not in old_meta:
                raise ResultFileError(f"{partial} has no row counts or checksum (written by an older sharpsim), so "
                                      "it cannot be verified; pass --force to start over.")
            diff = config_differences(old_meta, meta)
            if diff:
                raise ResultMismatchError(
                    f"{partial} holds a half-done run with other settings ({'; '.join(diff)}); "
                    "resuming would mix its rows with new ones. Rerun with the recorded values, pass --force to "
                    "start over, or choose another --out folder.")
            meta = {**meta, "resumed_from": old_meta.get("created")}

        with compile_stats() as stats:
            _run_all(experiment, work, final, partial, meta, done_rows, mode=mode, seed=seed, trials=trials,
                     progress=progress, plot=plot, stats=stats)
        if work != folder:
            _swap_in(out_dir, experiment.name, work)
    return folder


def _run_all(experiment, work, final, partial, meta, done_rows, *, mode, seed, trials, progress, plot, stats):
    """The body of :func:`run_experiment` under the lock: run what is left, write results and summary.

    ``stats`` (a :class:`~sharpsim.runner.compilation.CompileStats` open for the whole run) is reported on stderr
    and stored in ``summary.json`` under ``"compile"``.
    """
    if experiment.run_external is not None:
        _run_external(experiment, work, final, meta, mode=mode, seed=seed, plot=plot, stats=stats)
    else:
        settings = experiment.settings(mode)
        by_setting: dict = {}
        for r in done_rows:
            by_setting.setdefault(int(r["setting"]), []).append(r)
        todo = [(i, s) for i, s in enumerate(settings) if i not in by_setting]
        if by_setting and progress:
            print(f"[{experiment.name}] resuming: {len(by_setting)} of {len(settings)} settings already done",
                  file=sys.stderr)

        def ordered():
            return [r for i in sorted(by_setting) for r in by_setting[i]]

        csv_cache: dict = {}  # each setting's rows rendered once (the partial file is rewritten after every setting)
        for i, new in _run_settings(experiment, todo, seed=seed, trials=trials, mode=mode, progress=progress):
            by_setting[i] = new
            parts = [by_setting[j] for j in sorted(by_setting)]
            write_atomic(partial, _to_csv(meta, ordered(), parts=parts, cache=csv_cache))
        rows = ordered()
        write_atomic(final, _to_csv(meta, rows, parts=[by_setting[j] for j in sorted(by_setting)], cache=csv_cache))
        if partial.exists():
            partial.unlink()
        finalize(experiment, work, rows=rows, mode=mode, plot=plot,
                 compilation=_report_compile(experiment, stats, progress))


def reuse_results(experiment: Experiment, out_dir, *, mode: str = "quick", trials: Optional[int] = None,
                  seed: int = 0, plot: bool = True) -> pathlib.Path:
    """Re-analyse a finished result (``reproduce`` without ``--force``) after checking it is the one asked for.

    Raises :class:`ResultMismatchError` naming the field when seed, trials, mode or x64 differ from the
    request (:data:`REUSE_FIELDS`); other differences (versions, commit) are reported on stderr.
    """
    trials = _resolve_trials(experiment, mode, trials)
    seed = check_seed(seed)
    out_dir = pathlib.Path(out_dir)
    folder = out_dir / experiment.name
    with experiment_lock(out_dir, experiment.name):
        recorded, rows = read_results(folder / "results.csv")
        if experiment.run_external is None:
            wanted = metadata(experiment, seed=seed, mode=mode, trials=trials)
            diff = config_differences(recorded, wanted, REUSE_FIELDS)
        else:  # an external study has no trials axis
            wanted = metadata(experiment, seed=seed, mode=mode, trials=recorded.get("trials"))
            diff = config_differences(recorded, wanted, [f for f in REUSE_FIELDS if f != "trials"])
        if diff:
            raise ResultMismatchError(
                f"{folder / 'results.csv'} was made under another configuration ({'; '.join(diff)}); pass --force "
                "to rerun it, or choose another --out folder.")
        other = config_differences(recorded, wanted, [f for f in RESUME_FIELDS if f not in REUSE_FIELDS])
        if other:
            print(f"[{experiment.name}] note: reusing results made with {'; '.join(other)}", file=sys.stderr)
        finalize(experiment, folder, rows=rows, mode=recorded.get("mode", mode), plot=plot)
    return folder


def _report_compile(experiment: Experiment, stats, progress: bool) -> dict:
    """The run's compile statistics as a dict, printed on stderr when ``progress``."""
    if progress:
        print(f"[{experiment.name}] {stats.line()}", file=sys.stderr)
    return stats.as_dict()


def _run_external(experiment: Experiment, folder, final, meta, *, mode: str, seed: int, plot: bool,
                  stats=None) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    out = experiment.run_external(folder, mode, seed)
    if out.get("skipped"):
        raise ExperimentSkipped(str(out.get("reason", f"{experiment.name} was skipped")))
    rows = []
    for key, value in _flatten(out):
        if isinstance(value, (bool, int, float, np.integer, np.floating)) and not isinstance(value, bool):
            rows.append({"experiment": experiment.name, "setting": 0, "trial": 0,
                         "queries": out.get("queries", ""), "metric": key, "value": float(value)})
    write_atomic(final, _to_csv(meta, rows))
    finalize(experiment, folder, rows=rows, mode=mode, plot=plot,
             compilation=None if stats is None else _report_compile(experiment, stats, True))
    return folder


def _flatten(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def finalize(experiment: Experiment, folder, *, rows: Optional[list] = None, mode: Optional[str] = None,
             plot: bool = True, compilation: Optional[dict] = None) -> dict:
    """Analyse the rows of a finished run, write ``summary.json`` and (optionally) the figures.

    ``compilation``: the run's compile statistics (:class:`~sharpsim.runner.compilation.CompileStats`), stored
    under ``"compile"``; when None (re-analysis of finished results), those of the existing summary are kept.
    """
    folder = pathlib.Path(folder)
    if compilation is None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            compilation = json.loads((folder / "summary.json").read_text()).get("compile")
    if rows is None or mode is None:
        meta, rows = read_results(folder / "results.csv")
        mode = meta.get("mode", "quick")
    summary = dict(experiment.analyze(rows, mode))
    if "checks" in summary:  # one check form: every check passes Check's validation before it is stored
        summary["checks"] = [as_check_dict(c) for c in summary["checks"]]
    figures = [str(pathlib.Path(p).name) for p in experiment.plot(rows, summary, folder)] if plot else []
    summary.update({
        "experiment": experiment.name,
        "title": experiment.title,
        "claim": experiment.claim,
        "paper_refs": list(experiment.paper_refs),
        "predicted": experiment.predicted,
        "figures": figures or summary.get("figures", []),
    })
    if compilation is not None:
        summary["compile"] = compilation
    write_atomic(folder / "summary.json", json.dumps(summary, indent=2, default=_json_default))
    return summary


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
