"""Sharpening algorithms: inference-time best-of-N and the amortised SFT / RLHF / XPO sharpening.

Every amortised algorithm is ``algorithm(key, oracle, cls, config) -> SharpeningResult`` (pure; ``vmap``
over keys for trials, :func:`run_trials` / :func:`map_trials` do ``jit(vmap(...))`` with one compile). See docs/algorithms.md.
"""

from sharpsim.algorithms._best_of_n import BestOfN, best_of_n, select_best
from sharpsim.algorithms._common import FitConfig, NonFiniteLossError, SharpeningResult, map_trials, run_trials
from sharpsim.algorithms._adaptive_sft import (
    AdaptiveSFTConfig,
    AdaptiveSFTSweep,
    adaptive_sft_sharpening,
    adaptive_sft_sharpening_sweep,
)
from sharpsim.algorithms._rlhf import RLHFConfig, RLHFSweep, rlhf_sharpening, rlhf_sharpening_sweep, tabular_eq8_minimizer
from sharpsim.algorithms._xpo import XPOConfig, XPOSweep, xpo_sharpening, xpo_sharpening_sweep
from sharpsim.algorithms._pg import (
    KL_MODES,
    PG_LOSSES,
    PGConfig,
    PGResult,
    group_advantages,
    pg_expected_trajectory,
    pg_expected_update,
    pg_reward,
    pg_sharpening,
)
from sharpsim.algorithms._sft import (
    THEOREM_4_1_C,
    SFTConfig,
    SFTSweep,
    fit_mle,
    sft_parameters,
    sft_sharpening,
    sft_sharpening_sweep,
)

from sharpsim.algorithms._best_of_n import BestOfNSweep, best_of_n_sweep  # one-draw sweep over N

__all__ = [
    "BestOfN",
    "best_of_n",
    "select_best",
    "best_of_n_sweep",
    "BestOfNSweep",
    "FitConfig",
    "NonFiniteLossError",
    "SharpeningResult",
    "run_trials",
    "map_trials",
    "THEOREM_4_1_C",
    "SFTConfig",
    "SFTSweep",
    "fit_mle",
    "sft_parameters",
    "sft_sharpening",
    "sft_sharpening_sweep",
    "AdaptiveSFTConfig",
    "adaptive_sft_sharpening",
    "AdaptiveSFTSweep",
    "adaptive_sft_sharpening_sweep",
    "RLHFConfig",
    "rlhf_sharpening",
    "RLHFSweep",
    "rlhf_sharpening_sweep",
    "tabular_eq8_minimizer",
    "XPOConfig",
    "xpo_sharpening",
    "XPOSweep",
    "xpo_sharpening_sweep",
    # policy-gradient sharpening with self-rewards (issue 16)
    "PG_LOSSES",
    "KL_MODES",
    "PGConfig",
    "PGResult",
    "group_advantages",
    "pg_reward",
    "pg_sharpening",
    "pg_expected_update",
    "pg_expected_trajectory",
]
