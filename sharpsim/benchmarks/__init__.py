"""Benchmarks run by ``sharpsim bench [NAME ...]``.

Each entry maps a name to a module exposing ``run(quick: bool) -> list[dict]`` (one row per measured
configuration, printed as a table by the CLI). Every benchmark times a vectorised NumPy implementation
of the same computation in the same run and reports the ratio; compile time is reported apart.
"""

REGISTRY: dict[str, str] = {
    "algorithms": "sharpsim.benchmarks.algorithms",
    "tabular": "sharpsim.benchmarks.tabular",
    "autoregressive": "sharpsim.benchmarks.autoregressive",
    "bridge": "sharpsim.benchmarks.bridge",
}
