"""The symbols shared by the result modules (one sympy object per name, see :func:`bounds._core.symbol`), and the
sub-expression and hypotheses that several results share (one home each)."""

import sympy

from bounds._core import CONSTANT, Condition, symbol

c = symbol(CONSTANT)  # the absolute constant of a "≲" / O / Õ bound

epsilon = symbol("epsilon")  # ε: fraction of prompts allowed to be un-sharpened
delta = symbol("delta")  # δ: per-prompt mass allowed off y*(x)
rho = symbol("rho")  # ρ: failure probability of the learner
log_class_size = symbol("log_class_size")  # log|Π|
log_cover_size = symbol("log_cover_size")  # log N(Π, ε_disc)
C_cov = symbol("C_cov")  # coverage coefficient, Eq. (6) (or its class bound C in Theorem 3.1)
C_cov_gamma = symbol("C_cov_gamma")  # C_cov,γ of App. F.1
C_cov_bar = symbol("C_cov_bar")  # C̄_cov = E_x[1 / max_y π_base(y|x)], Theorem D.1
C_conc = symbol("C_conc")  # concentrability bound, Assumption 4.4
C_loss = symbol("C_loss")  # loss-range bound, Assumption 4.4
gamma_margin = symbol("gamma_margin")  # margin, Assumption 4.2
beta = symbol("beta")  # KL coefficient
Y_size = symbol("Y_size")  # |Y|
R_max = symbol("R_max")  # bound on log(1/π_base), Assumption 4.5
SEC = symbol("SEC")  # sequential extrapolation coefficient, Definition J.1
d = symbol("d")  # feature dimension (Def. J.3) / number of hard prompts (Thm 3.1)
B = symbol("B")  # norm bound (Def. J.3)
p = symbol("p")  # moment order of C_cov,γ,p (Theorem 3.1′)
n = symbol("n")  # number of prompts
N = symbol("N")  # responses per prompt
N_star = symbol("N_star")  # N* of Theorem 4.1′
mass = symbol("mass")  # π_base(y*_γ(x)|x), Proposition C.1
P_star = symbol("P_star")  # max_y P(y), Lemma I.1
n_argmax = symbol("n_argmax")  # |y*|, Lemma I.1
mu_stop = symbol("mu_stop")  # stopping parameter μ of Eq. (10)
gamma = symbol("gamma")  # approximate-maximiser slack γ of App. F.1
T = symbol("T")  # XPO iterations
eps_disc = symbol("eps_disc")  # discretisation scale ε_disc of Theorem J.2
c_beta = symbol("c_beta")  # constant of the condition β ≲ γ_margin δ ε (Theorem 4.2)

#: log(|Π| ρ^{-1}), the class-size term of Lemma F.1 and Theorems 4.1, D.1 and 4.3
log_class_over_rho = log_class_size + sympy.log(1 / rho)

EPSILON_IN_UNIT = Condition("ε ∈ (0, 1)", epsilon < 1)
DELTA_IN_UNIT = Condition("δ ∈ (0, 1)", delta < 1)
RHO_IN_UNIT = Condition("ρ ∈ (0, 1)", rho < 1)
