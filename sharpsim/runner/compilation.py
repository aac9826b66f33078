"""Compilation paid once: JAX's persistent compilation cache, compile statistics, and a trace-count guard.

* :func:`enable_compile_cache` turns on JAX's on-disk cache of compiled programs (the CLI calls it for every
  command unless ``--no-compile-cache`` or ``SHARPSIM_NO_COMPILE_CACHE=1``). The folder is
  ``$SHARPSIM_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/sharpsim/jax`` (``~/.cache/sharpsim/jax``). Every
  program is cached, however small or fast to compile (JAX's defaults skip programs compiled in under 1 s,
  which is most of ours: many small programs that run for milliseconds), and the folder is capped
  (least recently used entries evicted) at :data:`CACHE_MAX_BYTES`.
* :func:`compile_stats` counts what JAX compiled inside a ``with`` block, from ``jax.monitoring`` events:
  programs compiled (``/jax/core/compile/backend_compile_duration``, which also fires for a program loaded
  from the persistent cache), persistent-cache hits and misses, and seconds spent tracing, lowering and in
  the backend compiler (or loading from the cache). The runner records it per experiment.
* :func:`assert_max_traces` (chex-style) wraps a function so that tracing it more than ``n`` times raises:
  tests use it to guard against one recompilation per sweep point.

Caution (from JAX's documentation): the cache is trusted code; do not point it at a folder others can write.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import pathlib
import threading
from typing import Callable, Optional

import jax

__all__ = ["CACHE_ENV", "NO_CACHE_ENV", "CACHE_MAX_BYTES", "default_cache_dir", "compile_cache_disabled",
           "enable_compile_cache", "CompileStats", "compile_stats", "assert_max_traces", "TraceCountError"]

#: Environment variable naming the cache folder.
CACHE_ENV = "SHARPSIM_CACHE_DIR"
#: Environment variable that turns the cache off (any value but "", "0", "false", "no").
NO_CACHE_ENV = "SHARPSIM_NO_COMPILE_CACHE"
#: Size cap of the cache folder (LRU eviction by JAX).
CACHE_MAX_BYTES = 2 * 1024**3

_TRACE = "/jax/core/compile/jaxpr_trace_duration"
_LOWER = "/jax/core/compile/jaxpr_to_mlir_module_duration"
_BACKEND = "/jax/core/compile/backend_compile_duration"
_HIT = "/jax/compilation_cache/cache_hits"
_MISS = "/jax/compilation_cache/cache_misses"


def default_cache_dir() -> pathlib.Path:
    """``$SHARPSIM_CACHE_DIR``, else ``$XDG_CACHE_HOME/sharpsim/jax``, else ``~/.cache/sharpsim/jax``."""
    if os.environ.get(CACHE_ENV):
        return pathlib.Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "sharpsim" / "jax"


def compile_cache_disabled() -> bool:
    """Whether ``SHARPSIM_NO_COMPILE_CACHE`` asks for no persistent cache."""
    return os.environ.get(NO_CACHE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def enable_compile_cache(path=None) -> Optional[pathlib.Path]:
    """Turn on JAX's persistent compilation cache in ``path`` (default :func:`default_cache_dir`).

    Call before the first compilation of the process. Returns the folder, or ``None`` when
    ``SHARPSIM_NO_COMPILE_CACHE`` is set or the folder cannot be created (then nothing changes and
    compilation works as without a cache).
    """
    if compile_cache_disabled():
        return None
    folder = pathlib.Path(path).expanduser() if path is not None else default_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # cache every program, however small
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # ... and however fast to compile
    with contextlib.suppress(AttributeError, ValueError):
        jax.config.update("jax_compilation_cache_max_size", CACHE_MAX_BYTES)
    return folder


# ------------------------------------------------------------------------------------------ statistics
@dataclasses.dataclass
class CompileStats:
    """What JAX compiled while a :func:`compile_stats` block was open (all threads of the process)."""

    programs: int = 0  # backend compilations, including programs loaded from the persistent cache
    cache_hits: int = 0
    cache_misses: int = 0
    traces: int = 0
    trace_s: float = 0.0
    lower_s: float = 0.0
    backend_s: float = 0.0  # XLA compile time, or load time for a cache hit

    @property
    def total_s(self) -> float:
        """Seconds spent tracing, lowering and compiling (or loading)."""
        return self.trace_s + self.lower_s + self.backend_s

    def as_dict(self) -> dict:
        """JSON-ready summary (seconds rounded to ms)."""
        d = dataclasses.asdict(self)
        for k in ("trace_s", "lower_s", "backend_s"):
            d[k] = round(d[k], 3)
        d["total_s"] = round(self.total_s, 3)
        return d

    def line(self) -> str:
        """One line for progress output."""
        hits = f", {self.cache_hits} from the persistent cache" if self.cache_hits else ""
        return f"compiled {self.programs} programs{hits} in {self.total_s:.1f} s"


_lock = threading.Lock()
_active: list = []
_registered = False


def _on_duration(event: str, duration: float, **_kw) -> None:
    field = {_TRACE: "trace_s", _LOWER: "lower_s", _BACKEND: "backend_s"}.get(event)
    if field is None:
        return
    with _lock:
        for s in _active:
            setattr(s, field, getattr(s, field) + float(duration))
            if event == _BACKEND:
                s.programs += 1
            elif event == _TRACE:
                s.traces += 1


def _on_event(event: str, **_kw) -> None:
    field = {_HIT: "cache_hits", _MISS: "cache_misses"}.get(event)
    if field is None:
        return
    with _lock:
        for s in _active:
            setattr(s, field, getattr(s, field) + 1)


def _register() -> None:
    global _registered
    with _lock:
        if _registered:
            return
        jax.monitoring.register_event_duration_secs_listener(_on_duration)
        jax.monitoring.register_event_listener(_on_event)
        _registered = True


@contextlib.contextmanager
def compile_stats():
    """``with compile_stats() as s:`` — ``s`` (a :class:`CompileStats`) counts compilations inside the block.

    Blocks may nest; each counts everything compiled while it is open, in any thread.
    """
    _register()
    stats = CompileStats()
    with _lock:
        _active.append(stats)
    try:
        yield stats
    finally:
        with _lock:
            _active.remove(stats)


# ------------------------------------------------------------------------------------------ trace guard
class TraceCountError(AssertionError):
    """A function guarded by :func:`assert_max_traces` was traced more often than allowed."""


def assert_max_traces(fn: Optional[Callable] = None, *, n: int = 1):
    """Wrap ``fn`` so that tracing it (running its Python body) more than ``n`` times raises (chex-style).

    Apply it *inside* ``jax.jit``: ``jax.jit(assert_max_traces(f, n=1))``. Each call of the Python body is one
    trace; a jitted function called again with the same shapes, dtypes and static arguments does not re-run
    it. ``wrapped.num_traces`` holds the count so far.
    """
    if fn is None:
        return functools.partial(assert_max_traces, n=n)

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        wrapped.num_traces += 1
        if wrapped.num_traces > n:
            raise TraceCountError(f"{getattr(fn, '__name__', fn)} was traced {wrapped.num_traces} times "
                                  f"(at most {n} allowed): something recompiles on each call (a new shape, dtype, "
                                  "static argument or closed-over value).")
        return fn(*args, **kwargs)

    wrapped.num_traces = 0
    return wrapped
