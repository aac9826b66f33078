"""The ``sharpsim`` command line: info, bench, and the experiment runner (list, run, reproduce, plot, report)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Sequence

__all__ = ["main"]


def _cmd_info(args) -> int:
    import jax
    import numpy as np

    import sharpsim

    print(f"sharpsim     {sharpsim.__version__}")
    print(f"python       {sys.version.split()[0]}")
    print(f"jax          {jax.__version__}  (x64: {bool(jax.config.jax_enable_x64)})")
    print(f"numpy        {np.__version__}")
    for mod in ["optax", "sympy", "scipy", "matplotlib", "torch", "transformers"]:
        try:
            m = importlib.import_module(mod)
            print(f"{mod:<13}{getattr(m, '__version__', '?')}")
        except ImportError:
            extra = "  (optional: pip install 'sharpsim[hf]')" if mod in ("torch", "transformers") else ""
            print(f"{mod:<13}not installed{extra}")
    print("devices:")
    for d in jax.devices():
        print(f"  {d.id}: {d.platform} {getattr(d, 'device_kind', '')}")
    return 0


def _format_rate(v: float) -> str:
    for unit, scale in [("G", 1e9), ("M", 1e6), ("k", 1e3)]:
        if v >= scale:
            return f"{v / scale:.2f}{unit}"
    return f"{v:.2f}"


def _cmd_bench(args) -> int:
    from sharpsim.benchmarks import REGISTRY

    names = args.names or list(REGISTRY)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {sorted(REGISTRY)}", file=sys.stderr)
        return 2
    rows = []
    for name in names:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            module = importlib.import_module(REGISTRY[name])
        except ImportError as e:  # e.g. the bridge without the [hf] extra
            print(f"[bench] {name}: skipped ({e})", file=sys.stderr)
            continue
        for row in module.run(quick=not args.full):
            rows.append({"suite": name, **row})
            _print_row(rows[-1])
    if rows:
        r0 = rows[0]
        print(f"\ndevice {r0.get('device')} ({r0.get('platform')}), jax {r0.get('jax_version')}, x64 {r0.get('x64')}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2, default=str)
        print(f"wrote {args.json}")
    return 0


def _print_row(r: dict) -> None:
    unit = r.get("unit", "items")
    jax_rate = r.get("jax_per_s")
    np_rate = r.get("numpy_per_s")
    parts = [f"{r.get('suite', '')}: {r.get('benchmark', '')} [{r.get('shape', '')}, {r.get('dtype', '')}]"]
    if jax_rate is not None:
        parts.append(f"jax {_format_rate(jax_rate)} {unit}/s")
    if np_rate is not None:
        parts.append(f"numpy {_format_rate(np_rate)} {unit}/s")
    if r.get("ratio") is not None:
        parts.append(f"ratio {r['ratio']:.2f}x")
    if r.get("compile_s") is not None:
        parts.append(f"compile {r['compile_s']:.2f}s")
    print("  ".join(parts), flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sharpsim",
        description="Simulate the sharpening mechanism of LM self-improvement (Huang et al., ICLR 2025).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="versions, devices and the x64 flag")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("bench", help="benchmarks against vectorised NumPy (ratios printed)")
    p.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    p.add_argument("--full", action="store_true", help="more repetitions and larger shapes")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.set_defaults(func=_cmd_bench)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
