"""One experiment per paper claim, run by ``sharpsim run NAME`` / ``sharpsim reproduce``.

Each module defines ``EXPERIMENT`` (a :class:`sharpsim.runner.Experiment`). ``REGISTRY`` maps the CLI
name to the module; the order is the order of the report.
"""

import importlib

REGISTRY: dict[str, str] = {
    "bon_vs_n": "experiments.bon_vs_n",
    "sft_minimax": "experiments.sft_minimax",
    "adaptive_vs_fixed": "experiments.adaptive_vs_fixed",
    "sft_delta": "experiments.sft_delta",
    "sft_class_size": "experiments.sft_class_size",
    "sft_gamma": "experiments.sft_gamma",
    "realizability": "experiments.realizability",
    "dpo_margin_beta": "experiments.dpo_margin_beta",
    "xpo_vs_sft_j1": "experiments.xpo_vs_sft_j1",
    "xpo_exploration": "experiments.xpo_exploration",
    "greedy_vs_argmax": "experiments.greedy_vs_argmax",
    "maxcut_hardness": "experiments.maxcut_hardness",
    "bon_lift": "experiments.bon_lift",
    "power_sampling": "experiments.power_sampling",
    "reward_hacking": "experiments.reward_hacking",
    "iterated_sharpening": "experiments.iterated_sharpening",
    "self_training_collapse": "experiments.self_training_collapse",
    "passk_shrinkage": "experiments.passk_shrinkage",
    "bridge_tiny": "experiments.bridge_studies:TINY",
    "bridge_smollm2_bon": "experiments.bridge_studies:SMOLLM2_BON",
    "bridge_smollm2_sft": "experiments.bridge_studies:SMOLLM2_SFT",
}


def get(name: str):
    """The :class:`~sharpsim.runner.Experiment` called ``name``, or ``"package.module:ATTRIBUTE"`` of your own."""
    if ":" in name:
        module, _, attr = name.partition(":")
        return getattr(importlib.import_module(module), attr)
    if name not in REGISTRY:
        raise ValueError(f"unknown experiment {name!r}; `sharpsim list` shows the choices: {sorted(REGISTRY)}")
    module, _, attr = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attr or "EXPERIMENT")


def all_experiments():
    """Every registered experiment, in report order."""
    return [get(name) for name in REGISTRY]
