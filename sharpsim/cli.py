"""The ``sharpsim`` command line: info, bench, and the experiment runner (list, run, reproduce, plot, report)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pathlib
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
    if args.json is not None:  # refuse before the benchmarks run, not after
        if not args.json:
            raise ValueError("--json needs a file name, got ''.")
        target = pathlib.Path(args.json)
        if target.exists() and not args.force:
            print(f"error: {target} exists; pass --force to overwrite it, or choose another --json file.",
                  file=sys.stderr)
            return 1
        if target.is_dir():
            raise ValueError(f"--json {target} is a folder; give a file name.")
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
        from sharpsim.runner import write_atomic

        write_atomic(pathlib.Path(args.json), json.dumps(rows, indent=2, default=str))
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
    for peer in ("torch", "torch_cuda"):
        if r.get(f"{peer}_per_s") is not None:
            parts.append(f"{peer.replace('_', ' ')} {_format_rate(r[f'{peer}_per_s'])} {unit}/s")
    if r.get("ratio") is not None:
        vs = f" (vs {r['peer'].replace('_', ' ')})" if r.get("peer") else ""
        parts.append(f"ratio {r['ratio']:.2f}x{vs}")
    if r.get("agree") is not None:
        parts.append("outputs agree" if r["agree"] else "OUTPUTS DISAGREE")
    if r.get("compile_s") is not None:
        parts.append(f"compile {r['compile_s']:.2f}s")
    if isinstance(r.get("prepare_s"), dict):
        parts.append("prepare " + ", ".join(f"{k} {v:.3f}s" for k, v in r["prepare_s"].items()))
    print("  ".join(parts), flush=True)


def _get(name: str):
    """``sharpsim_experiments.get`` with one-line errors for a module or attribute that is not there."""
    import sharpsim_experiments
    from sharpsim.runner import Experiment

    if ":" in name:
        module, _, attr = name.partition(":")
        if not module or not attr:
            raise ValueError(f"experiment {name!r}: use a registered name (`sharpsim list`) or module:ATTRIBUTE.")
        try:
            exp = sharpsim_experiments.get(name)
        except ModuleNotFoundError as e:
            raise ValueError(f"experiment {name!r}: cannot import module {module!r} ({e}).") from None
        except AttributeError:
            raise ValueError(f"experiment {name!r}: module {module!r} has no attribute {attr!r}.") from None
        if not isinstance(exp, Experiment):
            raise ValueError(f"experiment {name!r} is a {type(exp).__name__}, not a sharpsim.runner.Experiment.")
        return exp
    return sharpsim_experiments.get(name)


def _resolve(names):
    import sharpsim_experiments

    return [_get(n) for n in names] if names else sharpsim_experiments.all_experiments()


def _mode(args) -> str:
    return "full" if getattr(args, "full", False) else "quick"


def _out(args) -> pathlib.Path:
    return pathlib.Path(args.out) if args.out is not None else pathlib.Path("results") / _mode(args)


def _seed_arg(text: str) -> int:
    from sharpsim.runner import MAX_SEED

    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= seed <= MAX_SEED:
        raise argparse.ArgumentTypeError(
            f"{seed} is outside [0, {MAX_SEED}] (JAX keys keep 32 bits; other values would alias a seed in range)")
    return seed


def _trials_arg(text: str) -> int:
    from sharpsim.runner import MIN_TRIALS

    try:
        trials = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if trials < MIN_TRIALS:
        raise argparse.ArgumentTypeError(
            f"{trials} is too few: at least {MIN_TRIALS} trials per setting are needed for a confidence interval")
    return trials


def _out_arg(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the results folder must not be empty (omit --out for results/quick)")
    return text


def _cmd_list(args) -> int:
    for exp in _resolve(None):
        print(f"{exp.name:<20} {exp.title}  [{', '.join(exp.paper_refs)}]")
        print(f"{'':<20} {exp.claim}")
    return 0


def _cmd_run(args) -> int:
    from sharpsim.runner import ExperimentSkipped, ResultExistsError, RunLockedError, run_experiment

    exp = _resolve([args.name])[0]
    try:
        folder = run_experiment(exp, _out(args), mode=_mode(args), trials=args.trials, seed=args.seed, force=args.force)
    except (ResultExistsError, RunLockedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ExperimentSkipped as e:
        print(f"skipped: {e}", file=sys.stderr)
        return 0
    _print_summary(folder)
    return 0


def _print_summary(folder) -> None:
    summary = json.loads((folder / "summary.json").read_text())
    for c in summary.get("checks", []):
        print(f"  {c['quantity']}: predicted {c.get('predicted')}, measured {c.get('measured'):.3g} "
              f"[{c.get('lower'):.3g}, {c.get('upper'):.3g}] -> {c.get('verdict')}")
    print(f"  results in {folder}")


def _compile_of(folder) -> dict:
    """The ``"compile"`` entry of a finished experiment's summary ({} when absent)."""
    try:
        return json.loads((folder / "summary.json").read_text()).get("compile") or {}
    except (OSError, ValueError):
        return {}


def _cmd_reproduce(args) -> int:
    import time

    from sharpsim.report import write_report
    from sharpsim.runner import (ExperimentSkipped, ResultExistsError, ResultFileError, RunLockedError,
                                 reuse_results, run_experiment)

    out, mode = _out(args), _mode(args)
    exps = _resolve(args.only)
    if not args.only and mode == "quick":
        slow = [e.name for e in exps if not e.in_quick]
        exps = [e for e in exps if e.in_quick]
        if slow:
            print(f"[reproduce] not in --quick (minutes each on CPU; run with --only or --full): {', '.join(slow)}",
                  file=sys.stderr)
    t0 = time.perf_counter()
    failed = []
    totals = {"programs": 0, "cache_hits": 0, "total_s": 0.0}
    for exp in exps:
        folder = out / exp.name
        try:  # one experiment's conflict is reported and the others still run
            if (folder / "results.csv").exists() and not args.force:
                print(f"[reproduce] {exp.name}: finished results found, reusing them (--force to rerun)",
                      file=sys.stderr)
                folder = reuse_results(exp, out, mode=mode, trials=args.trials, seed=args.seed)
                ran = False
            else:
                ran = True
                print(f"[reproduce] {exp.name}: {exp.title}", file=sys.stderr)
                folder = run_experiment(exp, out, mode=mode, trials=args.trials, seed=args.seed, force=args.force)
        except ExperimentSkipped as e:
            print(f"[reproduce] {exp.name}: skipped: {e}", file=sys.stderr)
            continue
        except (ResultExistsError, RunLockedError, ResultFileError) as e:
            print(f"[reproduce] {exp.name}: error: {e}", file=sys.stderr)
            failed.append(exp.name)
            continue
        _print_summary(folder)
        comp = _compile_of(folder) if ran else {}  # reused results were compiled by an earlier run
        for k in totals:
            totals[k] += comp.get(k, 0) or 0
    report = write_report(out, _resolve(None))
    print(f"report: {report}  ({time.perf_counter() - t0:.0f} s; compiled {totals['programs']} programs, "
          f"{totals['cache_hits']} from the persistent cache, in {totals['total_s']:.0f} s)")
    if failed:
        print(f"error: {len(failed)} experiment(s) not run: {', '.join(failed)} (see the messages above)",
              file=sys.stderr)
        return 1
    return 0


def _cmd_plot(args) -> int:
    from sharpsim.runner import experiment_lock, finalize

    out = _out(args)
    for exp in _resolve(args.names):
        if (out / exp.name / "results.csv").exists():
            with experiment_lock(out, exp.name):  # not while a run is writing the folder
                summary = finalize(exp, out / exp.name)
            print(f"{exp.name}: {', '.join(summary['figures'])}")
        else:
            print(f"{exp.name}: no results in {out / exp.name} (run `sharpsim run {exp.name}` first)")
    return 0


def _cmd_report(args) -> int:
    from sharpsim.report import write_report

    print(write_report(_out(args), _resolve(None)))
    return 0


def _add_run_options(p, *, trials=True):
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="small sweeps, CPU-friendly (default)")
    g.add_argument("--full", action="store_true", help="publication-grade sweeps (GPU)")
    p.add_argument("--out", type=_out_arg, help="results folder (default: results/quick or results/full)")
    if trials:
        p.add_argument("--trials", type=_trials_arg,
                       help="trials per setting, at least 2 (default: the experiment's own)")
        p.add_argument("--seed", type=_seed_arg, default=0, help="root seed in [0, 2**32 - 1] (default 0)")
        p.add_argument("--force", action="store_true",
                       help="rerun and replace finished or mismatched results (the old folder is replaced only "
                            "when the new run is complete)")
        _add_cache_option(p)


def _add_cache_option(p):
    p.add_argument("--no-compile-cache", action="store_true",
                   help="do not use JAX's persistent compilation cache (default: on, in $SHARPSIM_CACHE_DIR or "
                        "~/.cache/sharpsim/jax; SHARPSIM_NO_COMPILE_CACHE=1 also turns it off)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sharpsim",
        description="Simulate the sharpening mechanism of LM self-improvement (Huang et al., ICLR 2025).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="versions, devices and the x64 flag")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("bench",
                       help="benchmarks against vectorised NumPy and PyTorch (ratio to the faster peer printed)")
    p.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    p.add_argument("--full", action="store_true",
                   help="research sizes (d = M = 64, up to 1e6 queries per trial, XPO with T = 1000) and more "
                        "repetitions; minutes to hours on CPU")
    p.add_argument("--json", help="also write the rows to this JSON file (refuses an existing file)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    _add_cache_option(p)
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("list", help="the experiments, one per paper claim")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("run", help="run one experiment (resumes a half-done run)")
    p.add_argument("name", help="experiment name (see `sharpsim list`) or module:attribute of your own")
    _add_run_options(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("reproduce", help="run every experiment and write the report (the main job)")
    p.add_argument("--only", nargs="*", help="run only these experiments")
    _add_run_options(p)
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser("plot", help="regenerate figures from result files")
    p.add_argument("names", nargs="*")
    _add_run_options(p, trials=False)
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser("report", help="write report.md from the summaries")
    _add_run_options(p, trials=False)
    p.set_defaults(func=_cmd_report)
    return parser


def _setup_compile_cache(args) -> None:
    """JAX's persistent compilation cache, on unless ``--no-compile-cache`` or ``SHARPSIM_NO_COMPILE_CACHE=1``."""
    if args.command not in ("bench", "run", "reproduce") or getattr(args, "no_compile_cache", False):
        return
    from sharpsim.runner.compilation import enable_compile_cache

    folder = enable_compile_cache()
    if folder is not None and args.command == "reproduce":
        print(f"[reproduce] compilation cache: {folder} (--no-compile-cache to turn it off)", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; bad input and unusable folders end in one ``error:`` line (``SHARPSIM_DEBUG=1``
    shows the traceback): exit 2 for bad values, 1 for a folder that cannot be used or a refused run."""
    from sharpsim.runner import ResultExistsError, RunLockedError

    args = build_parser().parse_args(argv)
    _setup_compile_cache(args)
    try:
        return int(args.func(args) or 0)
    except ValueError as e:  # bad input: say what and how to fix it, without a traceback
        if os.environ.get("SHARPSIM_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ResultExistsError, RunLockedError) as e:
        if os.environ.get("SHARPSIM_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # --out a file, read-only, not creatable, disk full: name the path, no traceback
        if os.environ.get("SHARPSIM_DEBUG"):
            raise
        what = f"{e.filename}: {e.strerror}" if getattr(e, "filename", None) and e.strerror else str(e)
        print(f"error: cannot write or read {what}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
