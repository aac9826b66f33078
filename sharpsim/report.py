"""The reproduction report: every claim, its figure, predicted vs measured exponent, and a verdict."""

from __future__ import annotations

import json
import pathlib
from typing import Iterable

from sharpsim.runner import read_results, verdict_kind, write_atomic

__all__ = ["write_report", "overall_verdict"]

# Weakest first. A finding sits between consistent and inconsistent: it is a result about the paper
# (a loose bound, an open factor settled), not a defect, so it must not hide an inconsistency nor be
# reported as agreement.
_ORDER = {"inconsistent": 0, "inconclusive": 1, "finding": 2, "consistent": 3}


def _rank(verdict: str) -> int:
    try:
        return _ORDER[verdict_kind(verdict)]
    except ValueError:
        return _ORDER["inconclusive"]


def overall_verdict(checks: Iterable[dict]) -> str:
    """The weakest verdict among an experiment's checks ("not run" when it has none).

    Order, weakest first: inconsistent, inconclusive, finding, consistent.
    """
    verdicts = [c.get("verdict", "inconclusive") for c in checks]
    if not verdicts:
        return "not run"
    return min(verdicts, key=_rank)


def _kind(check: dict) -> str:
    try:
        return verdict_kind(check.get("verdict", "inconclusive"))
    except ValueError:
        return "inconclusive"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _interval(check: dict) -> str:
    """The check's 95% interval, or "exact" for an exactly computed quantity (``"exact": true``, no interval)."""
    if check.get("exact"):
        return "exact"
    return f"[{_fmt(check.get('lower'))}, {_fmt(check.get('upper'))}]"


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, (int, float)):
        return f"{v:.3g}"
    return str(v)


def write_report(out_dir, experiments, *, filename: str = "report.md") -> pathlib.Path:
    """Write ``<out_dir>/report.md`` from the ``summary.json`` of each experiment folder.

    Experiments without results are listed as "not run" with the command that runs them.
    """
    out_dir = pathlib.Path(out_dir)
    lines = ["# sharpsim reproduction report", ""]
    meta = None
    sections, table = [], []
    for exp in experiments:
        folder = out_dir / exp.name
        summary_path = folder / "summary.json"
        if not summary_path.exists():
            table.append(f"| [{exp.title}](#{exp.name}) | – | – | not run |")
            sections += [f"## {exp.title}", f'<a id="{exp.name}"></a>', "", f"**Claim.** {exp.claim}", "",
                         f"Not run yet: `sharpsim run {exp.name}`.", ""]
            continue
        summary = json.loads(summary_path.read_text())
        if meta is None and (folder / "results.csv").exists():
            meta, _ = read_results(folder / "results.csv")
        checks = summary.get("checks", [])
        verdict = overall_verdict(checks)
        head = checks[0] if checks else None
        headline = "–" if head is None else (
            f"{head['quantity']}: predicted {_fmt(head.get('predicted'))}, measured {_fmt(head.get('measured'))} "
            f"[{_fmt(head.get('lower'))}, {_fmt(head.get('upper'))}]"
        )
        counts = ", ".join(f"{sum(_kind(c) == v for c in checks)} {v}" for v in _ORDER
                           if any(_kind(c) == v for c in checks))
        table.append(f"| [{_cell(exp.title)}](#{exp.name}) | {_cell(headline)} | {counts} | **{verdict}** |")
        sec = [f"## {exp.title}", f'<a id="{exp.name}"></a>', "", f"**Claim.** {exp.claim}", "",
               f"**Instance.** {exp.instance}  ", f"**Sweep.** {exp.sweep}  ",
               f"**Algorithms.** {', '.join(exp.algorithms)}  ",
               f"**Bounds drawn.** {', '.join(exp.bounds) or '–'}  ", f"**Predicted.** {exp.predicted}", ""]
        for fig in summary.get("figures", []):
            if str(fig).endswith(".png"):
                sec.append(f"![{exp.name}]({exp.name}/{fig})")
        sec += ["", "| check | predicted | measured | 95% interval | verdict | note |", "|---|---|---|---|---|---|"]
        for c in checks:
            sec.append(
                f"| {_cell(c['quantity'])} | {_fmt(c.get('predicted'))} | {_fmt(c.get('measured'))} | "
                f"{_interval(c)} | {c.get('verdict')} | {_cell(c.get('note', ''))} |"
            )
        sec += ["", f"**How to read the figure.** {exp.how_to_read}", ""]
        if summary.get("notes"):
            sec += [f"**Notes.** {summary['notes']}", ""]
        sections += sec
    if meta:
        lines += [
            f"Mode `{meta.get('mode')}`, root seed {meta.get('root_seed')}, commit `{meta.get('git_commit')}`, "
            f"JAX {meta.get('jax_version')} on {meta.get('device')} ({meta.get('num_devices')} device(s)), "
            f"x64 {meta.get('x64')}.",
            "",
        ]
    lines += [
        "Verdicts: **consistent** — the prediction lies in the measurement's 95% interval (widened only by the",
        "stated slack for hidden log factors); **finding** — a result about the paper rather than a defect",
        "(a bound loose on this instance, a factor the paper leaves open settled by the data), with its evidence",
        "in the note; **inconsistent** — the measurement contradicts the claim; **inconclusive** — the data",
        "cannot decide (e.g. the interval is not finite, or the success threshold was not reached on the grid).",
        "Order, weakest first: inconsistent, inconclusive, finding, consistent.",
        "",
        "The verdict of an experiment is the weakest of its checks; each section below lists them all.",
        "",
        "| claim | headline check | all checks | verdict |",
        "|---|---|---|---|",
        *table,
        "",
        *sections,
    ]
    path = out_dir / filename
    write_atomic(path, "\n".join(lines) + "\n")
    return path
