"""sharpsim: a theory-first simulation toolkit for the sharpening mechanism of LM self-improvement.

Huang, Block, Foster, Rohatgi, Zhang, Simchowitz, Ash, Krishnamurthy, "Self-Improvement in Language
Models: The Sharpening Mechanism", ICLR 2025 (arXiv:2412.01951). Equation and theorem numbers in the
docstrings refer to the arXiv version.
"""

__version__ = "0.1.0"

# --- foundation -------------------------------------------------------------------------------------
from sharpsim.policies import TabularPolicy
from sharpsim._validation import checked
from sharpsim import instances, rewards
from sharpsim.oracle import (
    AdaptiveBatch,
    BudgetExceededError,
    OracleBatch,
    SampleEvaluateOracle,
    max_likelihood_stopping_rule,
)
from sharpsim.metrics import (
    argmax_set,
    concentrability,
    concentrability_beta,
    coverage,
    coverage_bar,
    is_sharpened,
    margin,
    mass_on,
    pass_at_n,
    sharpness_error,
)
from sharpsim.exact import bon_policy, bon_success_probability, kl_regularized_optimum
from sharpsim.algorithms import best_of_n

# --- autoregressive policies (issue: Autoregressive policies) ----------------------------------------
from sharpsim.policies import (
    AutoregressivePolicy,
    LinearSoftmaxPolicy,
    MarkovPolicy,
    TransformerPolicy,
    sequence_lengths,
)
from sharpsim.decoding import beam_search, exact_argmax, greedy, temperature_sample

# --- algorithms and classes (issue: Sharpening algorithms) -------------------------------------------
from sharpsim import classes, protocols
from sharpsim.protocols import Policy, PolicyClass
from sharpsim.classes import FiniteClass, LogLinearClass, ParametricClass, TabularClass
from sharpsim.algorithms import (
    AdaptiveSFTConfig,
    FitConfig,
    RLHFConfig,
    SFTConfig,
    SharpeningResult,
    XPOConfig,
    adaptive_sft_sharpening,
    rlhf_sharpening,
    run_trials,
    sft_sharpening,
    sft_sharpening_sweep,
    xpo_sharpening,
)

# --- power distributions π^α (issue 15: Beyond the paper, at inference time) ---------------------------
from sharpsim import power
from sharpsim.power import SequenceTablePolicy, power_mh_chain, power_mh_sample, power_policy, power_smc_sample

# --- inference-time alignment beyond best-of-N, and its metrics (issue 15, items 3-4) ----------------------
from sharpsim import inference_time
from sharpsim.inference_time import (bom_sample, bon_sample, bop_sample, chi2_optimum, pessimism_sample,
                                     soft_bon_sample)
from sharpsim.metrics import (coverage_profile, coverage_profile_from_samples, generation_verification_gap, max_at_k,
                              max_at_k_estimate)
# --- iterated self-sharpening and collapse (issue 16 items 1–2: Beyond the paper, at training time) -----
from sharpsim import iterated
# --- policy-gradient sharpening with self-rewards (issue 16) ------------------------------------------------
from sharpsim.algorithms import PGConfig, pg_reward, pg_sharpening
