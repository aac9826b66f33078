"""One experiment per paper claim, run by ``sharpsim run NAME`` / ``sharpsim reproduce``.

Each module defines ``EXPERIMENT`` (a :class:`sharpsim.runner.Experiment`). ``REGISTRY`` maps the CLI
name to the module; the order is the order of the report.
"""

import importlib

REGISTRY: dict[str, str] = {
    "bon_vs_n": "sharpsim_experiments.bon_vs_n",
    "sft_minimax": "sharpsim_experiments.sft_minimax",
    "adaptive_vs_fixed": "sharpsim_experiments.adaptive_vs_fixed",
    "sft_delta": "sharpsim_experiments.sft_delta",
    "sft_class_size": "sharpsim_experiments.sft_class_size",
    "sft_gamma": "sharpsim_experiments.sft_gamma",
    "realizability": "sharpsim_experiments.realizability",
    "dpo_margin_beta": "sharpsim_experiments.dpo_margin_beta",
    "xpo_vs_sft_j1": "sharpsim_experiments.xpo_vs_sft_j1",
    "xpo_exploration": "sharpsim_experiments.xpo_exploration",
    "greedy_vs_argmax": "sharpsim_experiments.greedy_vs_argmax",
    "maxcut_hardness": "sharpsim_experiments.maxcut_hardness",
    "bon_lift": "sharpsim_experiments.bon_lift",
    "power_sampling": "sharpsim_experiments.power_sampling",
    "reward_hacking": "sharpsim_experiments.reward_hacking",
    "iterated_sharpening": "sharpsim_experiments.iterated_sharpening",
    "self_training_collapse": "sharpsim_experiments.self_training_collapse",
    "passk_shrinkage": "sharpsim_experiments.passk_shrinkage",
    "bridge_tiny": "sharpsim_experiments.bridge_studies:TINY",
    "bridge_smollm2_bon": "sharpsim_experiments.bridge_studies:SMOLLM2_BON",
    "bridge_smollm2_sft": "sharpsim_experiments.bridge_studies:SMOLLM2_SFT",
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
