"""How the bridge runs torch: a deliberate thread count per phase, and float32 forward passes whatever autocast
the caller (or a TRL / accelerate wrapper) left on.

**Threads.** torch's default intra-op thread count is the number of physical cores. For the bridge's tiny in-code
models every op is so small that intra-op parallelism cannot pay for its synchronisation, and on shared cores the
spinning threads contend with other processes: training the tiny answer model took 125 s with the default and
3.9 s with ``torch.set_num_threads(1)`` on 2 cores under load (issue 12). So each bridge phase (``"generation"``,
``"scoring"``, ``"training"``) runs under :func:`bridge_threads`, which picks

1. the count of the innermost :func:`torch_threads` block the caller opened, if any (the caller's choice wins);
2. else ``$SHARPSIM_TORCH_THREADS`` if set (a positive integer);
3. else 1 thread for a model on the CPU with fewer than :data:`SMALL_MODEL_PARAMS` parameters;
4. else torch's current count, capped at the CPUs this process may run on (``os.sched_getaffinity``); a model on
   an accelerator keeps torch's setting (the CPU threads only feed the device).

and restores the caller's count when the phase ends, so the bridge never leaves a changed global setting behind.

**Precision.** Scores are documented as float32 teacher-forced log-probs. ``torch.autocast`` (and accelerate's
mixed-precision wrapper, which a TRL trainer installs on ``model.forward`` and which leaks into every later forward
pass) would silently run the matmuls in bf16 (1.5e-3 nats off on a tiny GPT-2). :func:`float32_forward` turns
autocast off for the block and bypasses accelerate's wrapper (``model._original_forward``) while it is active.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import time

from sharpsim._validation import check_count
from sharpsim.bridge._deps import require_torch

torch = require_torch()

__all__ = ["SMALL_MODEL_PARAMS", "THREADS_ENV", "bridge_threads", "choose_threads", "float32_forward",
           "torch_threads"]

SMALL_MODEL_PARAMS = 20_000_000
THREADS_ENV = "SHARPSIM_TORCH_THREADS"
PHASES = ("generation", "scoring", "training")

_explicit: contextvars.ContextVar[int | None] = contextvars.ContextVar("sharpsim_torch_threads", default=None)


def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def idle_cpus(interval: float = 0.3) -> int | None:
    """How many of this process's CPUs sat idle over the next ``interval`` seconds (``None`` where unknown).

    Read from ``/proc/stat`` (idle + iowait ticks over all ticks, times the machine's CPU count), so unlike the
    1-minute load average it neither remembers a job that just ended nor counts a run's own earlier work.
    """
    def ticks():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return values[3] + values[4], sum(values)  # (idle + iowait, all)

    try:
        idle0, all0 = ticks()
        time.sleep(interval)
        idle1, all1 = ticks()
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        return None
    if all1 <= all0:
        return None
    share = (idle1 - idle0) / (all1 - all0)
    return max(0, min(_available_cpus(), int(share * (os.cpu_count() or 1) + 0.5)))


def _num_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _device_type(model) -> str:
    try:
        return next(model.parameters()).device.type
    except StopIteration:  # pragma: no cover
        return "cpu"


@contextlib.contextmanager
def torch_threads(num_threads: int):
    """Run the block with ``torch.set_num_threads(num_threads)`` and restore the caller's count afterwards.

    Inside the block every bridge phase uses ``num_threads`` (it overrides the bridge's own choice)::

        with torch_threads(4):
            best_of_n(model, tok, prompts, 16)
    """
    n = check_count("num_threads", num_threads)
    before = torch.get_num_threads()
    token = _explicit.set(n)
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        _explicit.reset(token)
        torch.set_num_threads(before)


def env_threads() -> int | None:
    """``$SHARPSIM_TORCH_THREADS`` as a positive count, or ``None`` when it is unset or empty."""
    env = os.environ.get(THREADS_ENV)
    if env in (None, ""):
        return None
    try:
        return check_count(f"${THREADS_ENV}", int(env))
    except ValueError as err:
        raise ValueError(f"${THREADS_ENV} must be a positive integer, got {env!r}") from err


def choose_threads(model, phase: str) -> int | None:
    """The thread count the bridge uses for ``phase`` on ``model`` (``None``: leave torch's setting alone).

    See the module docstring for the rule.
    """
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    explicit = _explicit.get()
    if explicit is not None:
        return explicit
    env = env_threads()
    if env is not None:
        return env
    if _device_type(model) != "cpu":
        return None
    if _num_params(model) < SMALL_MODEL_PARAMS:
        return 1
    return max(1, min(torch.get_num_threads(), _available_cpus()))


@contextlib.contextmanager
def bridge_threads(model, phase: str):
    """Run one bridge phase with :func:`choose_threads`'s count; the caller's count is restored afterwards."""
    n = choose_threads(model, phase)
    before = torch.get_num_threads()
    if n is None or n == before:
        yield before
        return
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def float32_forward(model):
    """Forward passes of ``model`` inside the block run with autocast off (float32 for float32 weights), even when
    accelerate wrapped ``model.forward`` in a mixed-precision autocast (as a TRL trainer does): the wrapper is
    bypassed for the block (``model._original_forward``) and put back afterwards."""
    dev = _device_type(model)
    original = model.__dict__.get("_original_forward")
    wrapped = model.__dict__.get("forward")
    swap = original is not None and wrapped is not None and wrapped is not original
    ctx = (torch.autocast(device_type=dev, enabled=False) if torch.amp.is_autocast_available(dev)
           else contextlib.nullcontext())
    with ctx:
        if swap:
            model.forward = original
        try:
            yield
        finally:
            if swap:
                model.forward = wrapped
