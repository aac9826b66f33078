"""The experiment runner: one definition per paper claim, tidy result files, resume, devices, progress.

An :class:`Experiment` (defined in the top-level ``experiments/`` package, one module per claim) states
its claim, instance, sweep, algorithms, bounds and predicted exponent, and provides four functions:

* ``settings(mode) -> list[dict]`` — the sweep points (flat dicts of JSON scalars); ``mode`` is
  ``"quick"`` or ``"full"``;
* ``run_setting(keys, setting, mode) -> list[dict]`` — run every trial of one setting. ``keys`` is a
  ``[trials]`` array of PRNG keys, already spread over the local devices (trials are the batch axis: call
  ``jax.jit(jax.vmap(f))(keys)``). Each row is a dict with at least ``trial`` (int), ``queries`` (the
  sample-and-evaluate queries that produced it), ``metric`` (str) and ``value`` (float); extra columns
  (e.g. ``n``, ``N``) are kept. The runner adds ``experiment``, ``setting`` and the setting's fields;
* ``analyze(rows, mode) -> dict`` — from the rows of all settings: ``{"checks": [Check-as-dict, …], …}``
  where each check compares a predicted exponent (or inequality) with the measurement;
* ``plot(rows, summary, out_dir) -> list[Path]`` — figures (PNG and PDF), from the rows only.

Result files: ``<out>/<name>/results.csv`` (metadata as leading ``# key: value`` lines: root seed, git
commit, versions, device, x64, mode, trials), ``summary.json`` and the figures. A half-done run keeps its
completed settings in ``results.partial.csv`` (rewritten atomically after each setting) and resumes from
it; a finished result is never overwritten unless ``force=True``.

Studies whose unit is not a vmapped trial (e.g. a real language model through the bridge) set
``run_external(folder, mode, seed) -> dict`` instead: it writes its own tables and figures into the folder
and returns a flat summary; the runner records the summary's numbers as rows of ``results.csv`` (same
metadata and overwrite rules), so ``analyze`` and the report treat it like any other experiment.
``requires`` lists modules it needs (missing ones skip it with the install command), and
``in_quick=False`` keeps a slow study out of ``reproduce --quick`` (``--only NAME`` still runs it).

Keys: ``root = jax.random.key(seed)``; setting i uses ``fold_in(root, i)`` split into ``trials`` keys, so
results do not depend on the number of devices or on which settings ran before.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import importlib.util
import io
import json
import math
import os
import pathlib
import subprocess
import sys
import tempfile
from typing import Any, Callable, Optional

import jax
import numpy as np

__all__ = [
    "Experiment",
    "Check",
    "check_slope",
    "ResultExistsError",
    "ExperimentSkipped",
    "trial_keys",
    "shard_trials",
    "run_experiment",
    "read_results",
    "write_atomic",
    "metadata",
    "rows_where",
    "column",
]


class ResultExistsError(FileExistsError):
    """A finished result file exists and ``force`` was not given."""


class ExperimentSkipped(RuntimeError):
    """An experiment cannot run here (a missing optional dependency or model); the message says why."""


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One paper claim as a runnable experiment (see the module docstring for the four functions)."""

    name: str
    title: str
    claim: str
    paper_refs: tuple
    instance: str
    sweep: str
    algorithms: tuple
    bounds: tuple
    predicted: str
    how_to_read: str
    settings: Optional[Callable[[str], list]]
    run_setting: Optional[Callable[[Any, dict, str], list]]
    analyze: Callable[[list, str], dict]
    plot: Callable[[list, dict, pathlib.Path], list]
    trials: dict = dataclasses.field(default_factory=lambda: {"quick": 64, "full": 1000})
    run_external: Optional[Callable[[pathlib.Path, str, int], dict]] = None
    requires: tuple = ()
    in_quick: bool = True


#: The verdict vocabulary, strongest first. ``finding`` is a result about the paper, not a defect: a bound
#: that is loose on an instance, a factor the paper leaves open that the data settle. Its verdict string
#: begins with the lowercase word ``finding`` (``"finding: the 1/δ factor is not needed here"``) and the
#: check's note gives the evidence. ``inconsistent`` means the measurement contradicts what the paper
#: claims (or the experiment is broken); ``inconclusive`` means the data cannot decide.
VERDICTS = ("consistent", "finding", "inconclusive", "inconsistent")


def verdict_kind(verdict: str) -> str:
    """The vocabulary word a verdict string belongs to (``"finding: …"`` → ``"finding"``).

    Raises ``ValueError`` for a string outside :data:`VERDICTS`, so a typo cannot pass as a verdict.
    """
    word = str(verdict).split(":", 1)[0].strip()
    if word not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} is not one of {VERDICTS} (a finding's verdict begins with 'finding')")
    return word


def is_verdict(verdict: str) -> bool:
    """True when ``verdict`` belongs to the vocabulary :data:`VERDICTS`."""
    try:
        verdict_kind(verdict)
    except ValueError:
        return False
    return True


@dataclasses.dataclass(frozen=True)
class Check:
    """A predicted-vs-measured comparison for the report.

    ``verdict``: one of :data:`VERDICTS` (consistent / ``finding: …`` / inconclusive / inconsistent).
    """

    quantity: str
    predicted: float
    measured: float
    lower: float
    upper: float
    verdict: str
    note: str = ""

    def __post_init__(self):
        verdict_kind(self.verdict)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def check_slope(quantity: str, predicted: float, fit, *, tolerance: float = 0.0, note: str = "",
                log_factor_slopes=None, min_points: int = 5) -> dict:
    """Compare a predicted log-log slope with a fitted one (``fit``: :class:`sharpsim.complexity.SlopeFit`).

    Consistent when the predicted value lies in the fit's confidence interval widened by ``tolerance`` (a
    symmetric slack, kept for callers that need one). ``log_factor_slopes`` (optional): the along-sweep slopes
    of the bounds' own shapes, log factors included. They give a ONE-SIDED slack in the direction those log
    factors push along the sweep: the predicted exponent p becomes the band [min(p, s), max(p, s)] over the
    given slopes s, and the check is consistent when the interval meets the band — a fit steeper than p is
    excused only by log factors that steepen the bound, never one that is flatter. Inconclusive when the
    interval is not finite or the fit rests on fewer than ``min_points`` points (``fit.few_points`` or
    ``len(fit.x)``). The fit's lack-of-fit p-value, when it has one, is appended to the note.
    """
    lo, hi = float(fit.lower), float(fit.upper)
    p = float(predicted)
    band_lo, band_hi = p - tolerance, p + tolerance
    if log_factor_slopes is not None:
        ss = [float(v) for v in (log_factor_slopes.values() if isinstance(log_factor_slopes, dict)
                                 else log_factor_slopes)]
        band_lo = min([p] + ss) - tolerance
        band_hi = max([p] + ss) + tolerance
    n_pts = int(np.size(getattr(fit, "x", ()))) or None
    few = bool(getattr(fit, "few_points", False)) or (n_pts is not None and n_pts < min_points)
    extra = []
    lof_p = float(getattr(fit, "lof_pvalue", float("nan")))
    if math.isfinite(lof_p):
        extra.append(f"lack of fit ({getattr(fit, 'lof_method', '')}): p = {lof_p:.3g}")
    if log_factor_slopes is not None:
        extra.append(f"one-sided log-factor band [{band_lo:.3f}, {band_hi:.3f}]")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        verdict = "inconclusive"
    elif few:
        verdict = "inconclusive"
        extra.append(f"only {n_pts} points (< {min_points}): no verdict from a slope fit")
    elif hi >= band_lo and lo <= band_hi:
        verdict = "consistent"
    else:
        verdict = "inconsistent"
    full = "; ".join([x for x in [note] + extra if x])
    return Check(quantity, p, float(fit.slope), lo, hi, verdict, full).as_dict()


# ------------------------------------------------------------------------------------------ keys & devices
def trial_keys(seed: int, setting_index: int, trials: int):
    """``split(fold_in(key(seed), setting_index), trials)``: the same keys on any number of devices."""
    return jax.random.split(jax.random.fold_in(jax.random.key(seed), setting_index), trials)


def shard_trials(keys):
    """Spread a ``[trials]`` key array over all local devices (a 1-D ``Mesh`` over the trials axis).

    With one device, or a trial count that does not divide evenly, the keys are returned unchanged
    (the computation then runs on the default device); per-trial results are identical either way.
    """
    devices = jax.local_devices()
    if len(devices) <= 1 or keys.shape[0] % len(devices):
        return keys
    mesh = jax.sharding.Mesh(np.array(devices), ("trials",))
    return jax.device_put(keys, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("trials")))


# ------------------------------------------------------------------------------------------ result files
def _git_commit() -> str:
    try:
        here = pathlib.Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def metadata(experiment: Experiment, *, seed: int, mode: str, trials: int) -> dict:
    """What every result file records about how it was made (design.md §6)."""
    import sharpsim

    dev = jax.devices()[0]
    return {
        "experiment": experiment.name,
        "root_seed": seed,
        "mode": mode,
        "trials": trials,
        "git_commit": _git_commit(),
        "sharpsim_version": sharpsim.__version__,
        "jax_version": jax.__version__,
        "numpy_version": np.__version__,
        "python_version": sys.version.split()[0],
        "device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
        "num_devices": jax.device_count(),
        "x64": bool(jax.config.jax_enable_x64),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_atomic(path: pathlib.Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _to_csv(meta: dict, rows: list) -> str:
    buf = io.StringIO()
    for k, v in meta.items():
        buf.write(f"# {k}: {v}\n")
    columns: list = []
    for r in rows:
        for k in r:
            if k not in columns:
                columns.append(k)
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _parse(value: str):
    if value == "":
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def read_results(path) -> tuple[dict, list]:
    """Read a result CSV written by the runner: ``(metadata, rows)`` with numbers parsed back."""
    meta, body = {}, []
    with open(path, newline="") as f:
        for line in f:
            if line.startswith("# "):
                k, _, v = line[2:].rstrip("\n").partition(": ")
                meta[k] = _parse(v)
            else:
                body.append(line)
    rows = [{k: _parse(v) for k, v in r.items()} for r in csv.DictReader(body)]
    return meta, rows


def rows_where(rows: list, **conditions) -> list:
    """The rows whose fields equal the given values (e.g. ``rows_where(rows, metric="success")``)."""
    return [r for r in rows if all(r.get(k) == v for k, v in conditions.items())]


def column(rows: list, name: str) -> np.ndarray:
    """One field of every row as an array."""
    return np.asarray([r[name] for r in rows])


# ------------------------------------------------------------------------------------------ running
def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="setting", file=sys.stderr, leave=True)


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
    """Run (or resume) every setting of ``experiment``; write results, summary and figures. Returns its folder."""
    if mode not in ("quick", "full"):
        raise ValueError(f"mode must be 'quick' or 'full', got {mode!r}.")
    trials = int(trials or experiment.trials[mode])
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}.")
    folder = pathlib.Path(out_dir) / experiment.name
    final, partial = folder / "results.csv", folder / "results.partial.csv"
    meta = metadata(experiment, seed=seed, mode=mode, trials=trials)

    if final.exists() and not force:
        raise ResultExistsError(
            f"{final} exists; pass --force to overwrite it, or choose another --out folder."
        )
    done_rows: list = []
    done: set = set()
    if partial.exists() and not force:
        old_meta, done_rows = read_results(partial)
        same = all(old_meta.get(k) == meta[k] for k in ("root_seed", "mode", "trials"))
        if not same:
            raise ResultExistsError(
                f"{partial} holds a half-done run with other settings (seed/mode/trials "
                f"{old_meta.get('root_seed')}/{old_meta.get('mode')}/{old_meta.get('trials')}); pass --force to start over."
            )
        done = {int(r["setting"]) for r in done_rows}
        meta = {**meta, "resumed_from": old_meta.get("created")}
    elif force:
        for p in (final, partial):
            if p.exists():
                p.unlink()

    missing = [m for m in experiment.requires if importlib.util.find_spec(m) is None]
    if missing:
        raise ExperimentSkipped(f"{experiment.name} needs {', '.join(missing)}: pip install 'sharpsim[hf]'")
    if experiment.run_external is not None:
        return _run_external(experiment, folder, final, meta, mode=mode, seed=seed, plot=plot)

    settings = experiment.settings(mode)
    todo = [(i, s) for i, s in enumerate(settings) if i not in done]
    if done and progress:
        print(f"[{experiment.name}] resuming: {len(done)} of {len(settings)} settings already done", file=sys.stderr)
    rows = list(done_rows)
    for i, setting in _progress(todo, len(todo), experiment.name, progress):
        keys = shard_trials(trial_keys(seed, i, trials))
        new = experiment.run_setting(keys, dict(setting), mode)
        for r in new:
            rows.append({"experiment": experiment.name, "setting": i, **setting, **r})
        write_atomic(partial, _to_csv(meta, rows))

    write_atomic(final, _to_csv(meta, rows))
    if partial.exists():
        partial.unlink()
    finalize(experiment, folder, rows=rows, mode=mode, plot=plot)
    return folder


def _run_external(experiment: Experiment, folder, final, meta, *, mode: str, seed: int, plot: bool) -> pathlib.Path:
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
    finalize(experiment, folder, rows=rows, mode=mode, plot=plot)
    return folder


def _flatten(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def finalize(experiment: Experiment, folder, *, rows: Optional[list] = None, mode: Optional[str] = None,
             plot: bool = True) -> dict:
    """Analyse the rows of a finished run, write ``summary.json`` and (optionally) the figures."""
    folder = pathlib.Path(folder)
    if rows is None or mode is None:
        meta, rows = read_results(folder / "results.csv")
        mode = meta.get("mode", "quick")
    summary = dict(experiment.analyze(rows, mode))
    figures = [str(pathlib.Path(p).name) for p in experiment.plot(rows, summary, folder)] if plot else []
    summary.update({
        "experiment": experiment.name,
        "title": experiment.title,
        "claim": experiment.claim,
        "paper_refs": list(experiment.paper_refs),
        "predicted": experiment.predicted,
        "figures": figures or summary.get("figures", []),
    })
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
