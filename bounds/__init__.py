"""The bounds of "Self-Improvement in Language Models: The Sharpening Mechanism" as sympy expressions.

One module per result; each defines :class:`~bounds._core.Bound` objects (expression, LaTeX, vectorised
numeric function, symbols, explicit constant or not, conditions, constant fit, predicted log-log exponents)
and the parameter recipes the algorithms need. Theorem numbers refer to the arXiv version (2412.01951).

>>> import bounds
>>> bounds.get("thm_3_1").exponent("epsilon")
-2
>>> float(bounds.LEMMA_F_1.numeric(log_class_size=0.0, rho=0.5, n=2.0))  # 2 log(2)/2
0.6931471805599453
"""

from bounds._core import Bound, Condition, ConstantFit
from bounds.lemma_F_1 import LEMMA_F_1
from bounds.lemma_I_1 import LEMMA_I_1_ERROR, LEMMA_I_1_STOP
from bounds.prop_C_1 import BON_EXACT_FAILURE, PROP_C_1, PROP_C_1_BUDGET, bon_budget
from bounds.thm_3_1 import (
    HARD_INSTANCE_C1, THM_3_1, THM_3_1_PRIME, THM_3_1_PRIME_ADAPTIVE, THM_D_2, hard_instance_parameters,
)
from bounds.thm_4_1 import (
    SFT_NUM_PROMPTS, SFT_NUM_RESPONSES, THEOREM_4_1_C, THM_4_1, THM_4_1_PRIME, sft_parameters, sft_responses_per_prompt,
)
from bounds.thm_4_2 import DPO_BETA, THM_4_2, THM_4_2_PRIME, dpo_beta
from bounds.thm_D_1 import (
    ADAPTIVE_NUM_PROMPTS, ADAPTIVE_STOP, THM_D_1, THM_D_1_ERROR, THM_D_1_QUERIES, adaptive_sft_parameters, adaptive_stop_parameter,
)
from bounds.thm_J_2 import THM_4_3, THM_J_2, XPO_ALPHA, XPO_ALPHA_THEOREM, XPO_BETA, xpo_alpha, xpo_beta, xpo_eps_disc, xpo_iterations
from bounds.thm_J_3 import (
    LOGLINEAR_R_MAX, THM_J_3, loglinear_alpha, loglinear_log_cover_size, loglinear_norm_limit, loglinear_R_max,
)

#: every bound, by name
REGISTRY: dict[str, Bound] = {
    b.name: b
    for b in (
        THM_3_1, THM_3_1_PRIME, THM_3_1_PRIME_ADAPTIVE, THM_D_2,
        THM_4_1, THM_4_1_PRIME, THM_D_1, THM_D_1_ERROR, THM_D_1_QUERIES,
        PROP_C_1, PROP_C_1_BUDGET, LEMMA_F_1, LEMMA_I_1_STOP, LEMMA_I_1_ERROR,
        THM_4_2, THM_4_2_PRIME, THM_J_2, THM_4_3, THM_J_3,
    )
}


def get(name: str) -> Bound:
    """The bound called ``name`` (see ``REGISTRY``); ``ValueError`` listing the names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown bound {name!r}; known: {sorted(REGISTRY)}.") from None


__all__ = [
    "Bound", "Condition", "ConstantFit", "REGISTRY", "get",
    *sorted(n.upper() for n in REGISTRY),
    "BON_EXACT_FAILURE", "SFT_NUM_PROMPTS", "SFT_NUM_RESPONSES", "ADAPTIVE_STOP", "ADAPTIVE_NUM_PROMPTS", "DPO_BETA", "XPO_BETA",
    "XPO_ALPHA", "XPO_ALPHA_THEOREM", "LOGLINEAR_R_MAX",
    "bon_budget", "hard_instance_parameters", "sft_parameters", "sft_responses_per_prompt", "THEOREM_4_1_C",
    "HARD_INSTANCE_C1", "adaptive_stop_parameter", "adaptive_sft_parameters",
    "dpo_beta", "xpo_beta", "xpo_alpha", "xpo_iterations", "xpo_eps_disc", "loglinear_R_max", "loglinear_norm_limit",
    "loglinear_log_cover_size", "loglinear_alpha",
]
