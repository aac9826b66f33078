"""Results I/O: what a result file records (:func:`metadata`), atomic writes, reading back, and the one pivot.

``results.csv``: metadata as leading ``# key: value`` lines (root seed, git commit, versions, device, x64, mode,
trials, then the row count of every setting and a SHA-256 of the rows, verified whenever the file is read), then
the rows as CSV. Files are written through a temporary file and an atomic rename (:func:`write_atomic`).
:func:`rows_where`, :func:`column` and :func:`pivot` are the row helpers every ``analyze`` uses.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading

import jax
import numpy as np

__all__ = ["ResultFileError", "metadata", "RESUME_FIELDS", "REUSE_FIELDS", "config_differences", "write_atomic",
           "read_results", "rows_where", "group_rows", "column", "pivot"]


class ResultFileError(ValueError):
    """A result file is damaged (rows missing, checksum mismatch) or cannot be decoded; names the file."""


# ------------------------------------------------------------------------------------------ result files
def _git_commit() -> str:
    try:
        here = pathlib.Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def metadata(experiment, *, seed: int, mode: str, trials: int) -> dict:
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


#: What must match for a half-done run to be resumed: rows made under anything else would be mixed in.
RESUME_FIELDS = ("experiment", "root_seed", "trials", "mode", "x64", "device", "sharpsim_version",
                 "jax_version", "numpy_version", "git_commit")
#: What must match for ``reproduce`` to reuse a finished result instead of running it (versions and commit
#: that differ are reported, not refused: the rows are still the ones that run made).
REUSE_FIELDS = ("experiment", "root_seed", "trials", "mode", "x64")


def config_differences(recorded: dict, current: dict, fields=RESUME_FIELDS) -> list:
    """``["root_seed: 0 in the file, 5 now", …]`` for each of ``fields`` whose recorded value differs."""
    out = []
    for k in fields:
        old, new = recorded.get(k), current.get(k)
        if str(old) != str(new):
            out.append(f"{k}: {old} in the file, {new} now")
    return out


_UMASK_LOCK = threading.Lock()


def _file_mode() -> int:
    """0666 minus the process umask: what ``open()`` would give a new file (mkstemp alone gives 0600)."""
    with _UMASK_LOCK:
        mask = os.umask(0)
        os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path: pathlib.Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and an atomic rename.

    The file gets the permissions a plain ``open()`` would give it (0666 minus the umask).
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, _file_mode())
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _rows_per_setting(rows: list) -> dict:
    counts: dict = {}
    for r in rows:
        counts[str(r.get("setting"))] = counts.get(str(r.get("setting")), 0) + 1
    return counts


def _to_csv(meta: dict, rows: list, *, parts: list | None = None, cache: dict | None = None) -> str:
    """Metadata lines, then the CSV. The last metadata lines record the row count of every setting and a
    SHA-256 of the CSV body, so a truncated or edited file is caught when it is read back.

    ``parts`` (optional): ``rows`` as consecutive lists (one per setting); with a ``cache`` dict kept across calls,
    each part is rendered once per column list (the runner rewrites its partial file after every setting, so a
    run costs O(rows), not O(rows × settings)). The text is the same with or without them: columns in order of
    first appearance, a missing field written as "" (as ``csv.DictWriter`` does)."""
    entries = []
    for part in [rows] if parts is None else parts:
        e = cache.get(id(part)) if cache is not None else None
        if e is None or e[0] is not part:
            keys = dict.fromkeys(k for ks in dict.fromkeys(tuple(r) for r in part) for k in ks)
            e = (part, list(keys), {})
            if cache is not None:
                cache[id(part)] = e
        entries.append(e)
    columns = list(dict.fromkeys(k for e in entries for k in e[1]))
    full = tuple(columns)

    def render(e):
        if full not in e[2]:
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerows(
                r.values() if tuple(r) == full else [r.get(c, "") for c in columns] for r in e[0])
            e[2].clear()
            e[2][full] = buf.getvalue()
        return e[2][full]

    head_buf = io.StringIO()
    csv.writer(head_buf, lineterminator="\n").writerow(columns)
    body = head_buf.getvalue() + "".join(render(e) for e in entries)
    meta = {k: v for k, v in meta.items() if k not in ("rows_per_setting", "body_sha256")}
    meta["rows_per_setting"] = json.dumps(_rows_per_setting(rows), separators=(",", ":"))
    meta["body_sha256"] = hashlib.sha256(body.encode("utf-8")).hexdigest()
    head = "".join(f"# {k}: {v}\n" for k, v in meta.items())
    return head + body


def _parse(value: str):
    if value == "":
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def read_results(path, *, verify: bool = True) -> tuple[dict, list]:
    """Read a result CSV written by the runner: ``(metadata, rows)`` with numbers parsed back.

    With ``verify`` (the default) the rows are checked against the per-setting row counts and the checksum
    recorded in the file's header (files written before these were recorded are read unchecked). A damaged
    or undecodable file raises :class:`ResultFileError` naming the file.
    """
    path = pathlib.Path(path)
    meta, body = {}, []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for line in f:
                if line.startswith("# ") and not body:
                    k, _, v = line[2:].rstrip("\n").partition(": ")
                    meta[k] = _parse(v)
                else:
                    body.append(line)
        reader = csv.DictReader(body)
        rows = []
        for r in reader:
            if None in r or any(v is None for v in r.values()):  # a short or long line
                raise ValueError(f"line {reader.line_num} has {len(reader.fieldnames or [])} fields expected")
            rows.append({k: _parse(v) for k, v in r.items()})
    except (UnicodeDecodeError, csv.Error, ValueError) as e:
        raise ResultFileError(f"{path} cannot be read as a sharpsim result file ({e}); delete it or pass --force "
                              "to start over.") from None
    if verify and "body_sha256" in meta:
        counts = _rows_per_setting(rows)
        try:
            recorded = json.loads(str(meta.get("rows_per_setting")))
        except json.JSONDecodeError:
            recorded = None
        if recorded != counts:
            raise ResultFileError(
                f"{path} is damaged: its header records rows per setting {recorded}, the file holds {counts}; "
                "delete it or pass --force to start over.")
        if hashlib.sha256("".join(body).encode("utf-8")).hexdigest() != meta["body_sha256"]:
            raise ResultFileError(f"{path} is damaged: its rows do not match the checksum in its header; "
                                  "delete it or pass --force to start over.")
    return meta, rows


def rows_where(rows: list, **conditions) -> list:
    """The rows whose fields equal the given values (e.g. ``rows_where(rows, metric="success")``)."""
    return [r for r in rows if all(r.get(k) == v for k, v in conditions.items())]


def group_rows(rows: list, field: str = "setting") -> dict:
    """The rows grouped by one field, in sorted order of its values: ``{value: [rows with that value]}``."""
    groups: dict = {}
    for r in rows:
        groups.setdefault(r[field], []).append(r)
    return {k: groups[k] for k in sorted(groups)}


def column(rows: list, name: str) -> np.ndarray:
    """One field of every row as an array."""
    return np.asarray([r[name] for r in rows])



def _key(v):
    """A row or grid value as a hashable Python scalar (NumPy and JAX scalars included)."""
    return v.item() if hasattr(v, "item") else v


def pivot(rows: list, index: str, columns: str, *, values: str = "value", index_values=None, column_values=None,
          fill: float = np.nan) -> np.ndarray:
    """Rows to a matrix: ``M[i, j]`` = ``r[values]`` of the row with ``r[index] == index_values[i]`` and
    ``r[columns] == column_values[j]``; ``fill`` where no row has that pair.

    ``index_values`` / ``column_values`` default to the sorted distinct values found in ``rows`` (e.g. the
    trials); pass the sweep grid to fix the order and size. A row whose value is not on a given grid raises
    ``ValueError`` naming the field (a grid that does not match the rows is a bug, not a gap). With several
    rows for one cell, the last one wins (filter with :func:`rows_where` first).
    """
    def axis(name, given):
        vals = sorted({_key(r[name]) for r in rows}) if given is None else [_key(v) for v in given]
        return {v: i for i, v in enumerate(vals)}

    pos_i, pos_j = axis(index, index_values), axis(columns, column_values)
    out = np.full((len(pos_i), len(pos_j)), fill, dtype=float)
    for r in rows:
        i, j = _key(r[index]), _key(r[columns])
        if i not in pos_i or j not in pos_j:
            bad = (index, i) if i not in pos_i else (columns, j)
            raise ValueError(f"pivot: a row has {bad[0]} = {bad[1]!r}, which is not on the given {bad[0]} grid.")
        out[pos_i[i], pos_j[j]] = float(r[values])
    return out
