"""The docstring examples run and print what they say (a doc example that drifts from the code fails here).

Catches, e.g., the FiniteClass example that compared a float32 ``log_class_size`` with a float64 ``log 2`` by
``==`` and printed ``False``. Every module of the library and ``bounds`` that holds a ``>>>`` example is collected
automatically, so a new example is tested without editing this file.
"""

import doctest
import importlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _modules_with_examples():
    for folder in ("sharpsim", "bounds"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "bridge" in path.parts or ">>> " not in path.read_text(encoding="utf-8"):
                continue  # the bridge's examples need torch models; its tests cover them
            parts = path.relative_to(ROOT).with_suffix("").parts
            yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("name", list(_modules_with_examples()))
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has a '>>> ' line but doctest collected no example from it"
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} fail (run `python -m doctest -v`)"
