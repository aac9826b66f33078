"""Compare the result rows of two runs of the same experiments (issue 13: refactors must not change rows).

    python tools/compare_rows.py BEFORE_DIR AFTER_DIR [NAME ...]

For every experiment NAME (default: every folder of BEFORE_DIR) reads ``NAME/results.csv`` from both folders and
reports "identical" when the data rows (everything below the ``# `` header) are byte-identical — the header's
``body_sha256`` — and otherwise the first differing row. It also lists the summary checks whose verdict changed
(``summary.json``). Exit status 1 when any experiment's rows differ.
"""

from __future__ import annotations

import json
import pathlib
import sys


def _body(path: pathlib.Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("# ")]


def _verdicts(path: pathlib.Path) -> dict:
    if not path.exists():
        return {}
    summary = json.loads(path.read_text(encoding="utf-8"))
    return {c.get("quantity"): c.get("verdict") for c in summary.get("checks", [])}


def compare(before: pathlib.Path, after: pathlib.Path, name: str) -> bool:
    a, b = before / name / "results.csv", after / name / "results.csv"
    if not b.exists():
        print(f"{name}: MISSING {b}")
        return False
    ra, rb = _body(a), _body(b)
    same = ra == rb
    if same:
        print(f"{name}: identical ({len(ra) - 1} rows)")
    else:
        i = next((k for k, (x, y) in enumerate(zip(ra, rb)) if x != y), min(len(ra), len(rb)))
        print(f"{name}: DIFFERENT ({len(ra) - 1} vs {len(rb) - 1} rows); first difference at line {i}:\n"
              f"  before: {ra[i] if i < len(ra) else '<end>'}\n  after:  {rb[i] if i < len(rb) else '<end>'}")
    va, vb = _verdicts(before / name / "summary.json"), _verdicts(after / name / "summary.json")
    for q in sorted(set(va) | set(vb), key=str):
        if va.get(q) != vb.get(q):
            print(f"  verdict changed: {q!r}: {va.get(q)!r} -> {vb.get(q)!r}")
    return same


def main(argv: list[str]) -> int:
    before, after = pathlib.Path(argv[0]), pathlib.Path(argv[1])
    names = argv[2:] or sorted(p.name for p in before.iterdir() if (p / "results.csv").exists())
    ok = [compare(before, after, n) for n in names]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
