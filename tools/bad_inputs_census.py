"""Census of bad inputs across the core API (issue 12's closing note): clear error / deep traceback / silent wrong.

Runs every bad value of every target in ``tests/_fuzz_targets.py`` (one argument slot of one public
constructor, config, metric or sampler, the others valid), plus a few CLI invocations by subprocess, and
classifies each outcome. A *class* of bad input is one (target, kind of bad value) pair; the counts are
per class and per individual value.

    PYTHONPATH=$PWD python tools/bad_inputs_census.py [--no-cli] [-v]
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from _fuzz_targets import TARGETS, classify, config_targets_elsewhere  # noqa: E402


def value_class(v) -> str:
    """A coarse name for the kind of bad value (NaN, inf, negative, huge, wrong dtype, wrong rank, ...)."""
    import math

    import numpy as np

    if v is None:
        return "None"
    if isinstance(v, str):
        return "string"
    if isinstance(v, complex):
        return "complex"
    if isinstance(v, list):
        return "list"
    try:
        a = np.asarray(v)
    except Exception:  # noqa: BLE001
        return type(v).__name__
    if a.dtype.kind not in "biuf":
        return f"dtype {a.dtype.kind}"
    if a.ndim > 0 and a.size != 1:
        with np.errstate(invalid="ignore"):
            if np.any(np.isnan(a.astype(float))):
                return f"array rank {a.ndim} with NaN"
            if np.any(np.isinf(a.astype(float))):
                return f"array rank {a.ndim} with inf"
            if np.any(a < 0):
                return f"array rank {a.ndim} negative"
        return f"array rank {a.ndim}"
    x = float(a.reshape(-1)[0]) if a.size else math.nan
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x < 0:
        return "huge negative" if x < -1e6 else "negative"
    if x > 1e6:
        return "huge"
    if a.dtype.kind == "f" and x != int(x):
        return "fractional"
    return "small number"


CLI_CASES = [
    ("cli run --trials 0", ["run", "bon_vs_n", "--quick", "--trials", "0"]),
    ("cli run --seed -1", ["run", "bon_vs_n", "--quick", "--seed", "-1"]),
    ("cli run --out ''", ["run", "bon_vs_n", "--quick", "--out", ""]),
    ("cli run nomod:EXP", ["run", "nomod:EXP", "--quick"]),
    ("cli run sharpsim_experiments.bon_vs_n:NOPE", ["run", "sharpsim_experiments.bon_vs_n:NOPE", "--quick"]),
    ("cli run --seed 2**64", ["run", "bon_vs_n", "--quick", "--seed", str(2**64)]),
]


def run_cli(args, out_dir):
    cmd = [sys.executable, "-m", "sharpsim.cli"] + list(args)
    if "--out" not in args:
        cmd += ["--out", out_dir]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=os.path.dirname(out_dir))
    except subprocess.TimeoutExpired:
        return "silent wrong", "still running after 60 s: the value was accepted and an experiment started"
    err = p.stderr.strip()
    if p.returncode == 0:
        return "silent wrong", "exit 0"
    if "Traceback (most recent call last)" in err:
        return "deep traceback", err.splitlines()[-1][:160]
    return "clear error", (err.splitlines() or ["(no message)"])[-1][:160]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-cli", action="store_true", help="skip the CLI subprocess cases")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every outcome")
    args = ap.parse_args()

    per_value = collections.Counter()
    per_class: dict[tuple[str, str], str] = {}
    order = {"silent wrong": 0, "deep traceback": 1, "clear error": 2, "accepted": 3}
    problems = []
    targets = TARGETS + config_targets_elsewhere()
    for name, kind, call, values in targets:
        for v in values:
            outcome, detail = classify(kind, call, v)
            per_value[outcome] += 1
            cls = (name, value_class(v))
            if cls not in per_class or order[outcome] < order[per_class[cls]]:
                per_class[cls] = outcome  # a class counts as its worst outcome
            if outcome in ("silent wrong", "deep traceback"):
                problems.append((name, repr(v)[:60], outcome, detail))
            if args.verbose:
                print(f"{outcome:15s} {name} <- {repr(v)[:50]}: {detail[:120]}")
    if not args.no_cli:
        with tempfile.TemporaryDirectory() as tmp:
            for name, cli_args in CLI_CASES:
                outcome, detail = run_cli(cli_args, os.path.join(tmp, "out"))
                per_value[outcome] += 1
                per_class[(name, "cli")] = outcome
                if outcome in ("silent wrong", "deep traceback"):
                    problems.append((name, "", outcome, detail))
                if args.verbose:
                    print(f"{outcome:15s} {name}: {detail[:120]}")

    per_target: dict[str, str] = {}
    for (name, _), outcome in per_class.items():
        if name not in per_target or order[outcome] < order[per_target[name]]:
            per_target[name] = outcome
    target_counts = collections.Counter(per_target.values())
    class_counts = collections.Counter(per_class.values())
    print(f"targets: {len(targets)} API slots" + ("" if args.no_cli else f" + {len(CLI_CASES)} CLI cases"))
    print(f"argument slots, counted by their worst outcome: {len(per_target)}")
    for k in ("clear error", "deep traceback", "silent wrong", "accepted"):
        print(f"  {k:15s} {target_counts.get(k, 0)}")
    print(f"classes of bad input (target x kind of value, counted by their worst outcome): {len(per_class)}")
    for k in ("clear error", "deep traceback", "silent wrong", "accepted"):
        print(f"  {k:15s} {class_counts.get(k, 0)}")
    print(f"individual bad values: {sum(per_value.values())}")
    for k in ("clear error", "deep traceback", "silent wrong", "accepted"):
        print(f"  {k:15s} {per_value.get(k, 0)}")
    if problems:
        print("\nproblems:")
        for name, v, outcome, detail in problems:
            print(f"  [{outcome}] {name} <- {v}: {detail[:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
