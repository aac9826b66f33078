"""Example J.1: exponential separation between exploratory RLHF (XPO) and SFT-sharpening.

Example J.1 (theory.md §10.1): one prompt, Y ⊂ S^{d−1} a 1/4-packing with |Y| = exp(Θ(d)), π_base(y) ∝
exp⟨y, θ*⟩ with θ* = y* ∈ Y. The margin is Ω(1) (π_base(y*)/π_base(y) = exp(|y − y*|²/2) ≥ e^{1/32}) but
C_cov = 1/π_base(y*) ≥ |Y|/e² = exp(Ω(d)). SFT-sharpening's MLE target π^BoN_N is not sharp unless
N ≳ C_cov, so it needs exp(Ω(d)) queries; XPO (Algorithm 1) needs poly(d, 1/ε, 1/δ) (Theorem J.3).

Instance: :func:`sharpsim.instances.example_j1` with |Y| = 2^d packing points (instance seed 0), d ∈ {4, 6,
8, 10} (quick) / {3, …, 12} (full). ε = 1/2 (one prompt: the sharpness error is 0 or 1), δ = ρ = 0.1.

Class (the same for both algorithms; exact, finite): a stack of whole policies

    Π = {π*_β = π_{(1+1/β)θ*}} ∪ {π_{(1+1/β)y_j} : y_j one of the 3 packing points nearest y*}
        ∪ {π_base} ∪ {π^BoN_N : N ∈ N-grid},

i.e. log-linear candidates π_{(1+1/β)θ} for θ ∈ {θ*, y_1, y_2, y_3} (the nearest neighbours of y* are the
hardest distractors: sharp policies on a near-argmax), plus the base policy and its exact best-of-N laws,
so both algorithms are realizable: π*_β ∈ Π (Assumption 4.3 for XPO) and π^BoN_N ∈ Π for every N SFT uses
(Assumption 4.1). Both fits are exact (per-candidate sufficient statistics).

Parameters, shared across d so that one compiled XPO (per T) and one compiled SFT sweep serve every d (the
response axis is padded with zero-mass responses to |Y| = 2^{d_max}):

* β = γ_pack / (2 log(2·2^12/δ)) with γ_pack = e^{1/32} − 1, the margin every 1/4-packing guarantees: it
  satisfies Theorem J.2's condition β^{-1} ≥ 2 γ_margin^{-1} log(2|Y|/δ) at every d ≤ 12 (the condition is
  an upper bound on β; π*_β(y*) ≥ 1 − δ/2 is checked per d).
* α(T) = Theorem J.2's recipe in the proof's normalisation, β(R_max+V_max)·sqrt(log(2N(Π)T/ρ)/(SEC·T))
  (:func:`bounds.xpo_alpha`, V_max = βR_max) with
  log N(Π) = log|Π|, R_max = 3 + log 2^12 ≥ 1 + max log(1/π_base) and the log-linear surrogate
  SEC ≈ d log(T+1) (Lemma J.5) at d = 12.
* XPO: T rounds, Ĵ_β on E = T held-out queries for π^(1) and π^(T+1) (eval_stride = T): m = 2T + 2T = 4T.
* SFT: one draw of 4 × N_max per trial (:func:`sft_sharpening_sweep`), every split (n, N) with n ∈ {1, 2, 4}
  and N a power of 2. At each budget m = n·N the best split on the grid is used (chosen on the same trials —
  this favours SFT, so the separation is conservative).

Arms (summary key ``arms``): sft, xpo, offline_eq8 (Eq. 8 on n pairs from π_base, m = 2n: the control that
asks whether reward regression alone already suffices). Every trial permutes the class's candidates at random
(and XPO/Eq. 8 break ties at random), so no tie favours the target.

Measured: m̂(ρ) for all arms vs d (bootstrap CIs); slope of log m̂_SFT per unit d (compared with that of
log C_cov, and log-log against C_cov with Theorem 4.1's exponent 1), log-log slope of m̂_XPO vs d
(compared with Theorem J.3's polynomial), and the success rates of both at the common budget m = 4·T_max.
"""

from __future__ import annotations

import functools
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

import bounds
from sharpsim import SampleEvaluateOracle, exact, instances, metrics
from sharpsim.algorithms import RLHFConfig, XPOConfig, rlhf_sharpening_sweep, sft_sharpening_sweep, xpo_sharpening
from sharpsim.classes import FiniteClass
from sharpsim.complexity import empirical_sample_complexity, fit_loglog_slope, proportion_interval
from sharpsim.plotting import BoundCurve, new_figure, save_figure
from sharpsim.policies import TabularPolicy
from sharpsim.runner import Check, Experiment, check_slope

NAME = "xpo_vs_sft_j1"
EPSILON, DELTA, RHO = 0.5, 0.1, 0.1
INSTANCE_SEED = 0
PACKING_DISTANCE = 0.25
#: the margin every 1/4-packing guarantees in Example J.1: exp(|y − y*|²/2) − 1 ≥ e^{1/32} − 1
GAMMA_PACK = math.expm1(PACKING_DISTANCE**2 / 2)
#: reference sizes for the shared β and α (the largest d of the full sweep)
D_REF = 12
Y_REF = 2**D_REF
BETA = GAMMA_PACK / (2 * math.log(2 * Y_REF / DELTA))
R_MAX = 3.0 + math.log(Y_REF)  # ≥ 1 + max_y log(1/π_base(y)) since π_base(y) ≥ e^{-2}/|Y|
SFT_PROMPTS = (1, 2, 4)
NUM_NEIGHBOURS = 3
FLOAT_SLACK = 1e-6
_MODE = {
    "quick": dict(ds=(4, 6, 8, 10), N_max=2048, Ts=(1, 2, 4)),
    "full": dict(ds=tuple(range(3, 13)), N_max=8192, Ts=(1, 2, 4, 8, 16, 32)),
}


def N_grid(N_max: int) -> tuple:
    return tuple(2**k for k in range(int(math.log2(N_max)) + 1))


def num_candidates(N_max: int) -> int:
    return 1 + NUM_NEIGHBOURS + 1 + len(N_grid(N_max))


ARMS = ("sft", "xpo", "offline_eq8")


def _permute(key, cls):
    """The class with its candidates in a uniformly random order (per trial): no tie favours the target."""
    perm = jax.random.permutation(key, cls.num_candidates)
    return FiniteClass(log_probs=cls.log_probs[:, perm], valid=cls.valid[:, perm], product=cls.product)


# ------------------------------------------------------------------------------------------ settings
def settings(mode: str) -> list:
    m = _MODE[mode]
    y_pad = 2 ** max(m["ds"])
    return [dict(d=d, num_responses=2**d, y_pad=y_pad, epsilon=EPSILON, delta=DELTA, rho=RHO, beta=BETA,
                 N_max=m["N_max"], T_max=max(m["Ts"]), num_T=len(m["Ts"])) for d in m["ds"]]


def _T_grid(setting) -> tuple:
    return tuple(2**k for k in range(int(setting["num_T"])))


# ------------------------------------------------------------------------------------------ instance & class
def _pad(lp, y_pad):
    lp = jnp.asarray(lp)
    return jnp.concatenate([lp, jnp.full(lp.shape[:-1] + (y_pad - lp.shape[-1],), -jnp.inf, lp.dtype)], axis=-1)


@functools.lru_cache(maxsize=None)
def problem(d: int, y_pad: int, N_max: int):
    """(instance, padded π_base, class, constants) for dimension d; responses padded to ``y_pad``."""
    inst = instances.example_j1(jax.random.key(INSTANCE_SEED), d, 2**d, min_distance=PACKING_DISTANCE)
    feats = inst.features
    scale = 1.0 + 1.0 / BETA
    sims = np.asarray(feats @ feats[0])
    near = np.argsort(-sims)[1: 1 + NUM_NEIGHBOURS]  # y* = feats[0] (θ* = y*)
    loglin = [jax.nn.log_softmax(scale * (feats @ theta))[None] for theta in [feats[0]] + [feats[j] for j in near]]
    base = _pad(inst.pi_base.log_probs, y_pad)
    pi_base = TabularPolicy(log_probs=base)
    bon = [exact.bon_policy(pi_base, N).log_probs for N in N_grid(N_max)]  # eager: no compile per N
    cands = [_pad(c, y_pad) for c in loglin] + [base] + bon
    cls = FiniteClass.stack(jnp.stack(cands))
    star = TabularPolicy(log_probs=cands[0])
    consts = dict(
        C_cov=float(metrics.coverage(pi_base, inst.mu)),
        margin=float(metrics.margin(pi_base, inst.mu)),
        pi_star_mass=float(jnp.max(star.probs[0])),
        packing=float(dict(inst.params)["packing_distance"]),
        B=float(dict(inst.params)["B"]),
        log_class_size=cls.log_class_size,
    )
    if int(jnp.argmax(star.log_probs[0])) != int(jnp.argmax(base[0])):
        raise AssertionError("π*_β must be sharp on y*")  # θ* = y* by construction
    return inst, pi_base, cls, consts


# ------------------------------------------------------------------------------------------ runners
@functools.partial(jax.jit, static_argnames=("N_max", "delta"))
def _sft_grid(keys, oracle, cls, *, N_max: int, delta: float):
    """sharpness_error [K, n, N] of SFT at every split, one draw of 4 × N_max per trial (class order randomised)."""
    f = lambda k: sft_sharpening_sweep(jax.random.fold_in(k, 7), oracle, _permute(k, cls), SFT_PROMPTS, N_grid(N_max),  # noqa: E731
                                       delta=delta).sharpness_error
    return jax.vmap(f)(keys)


@functools.partial(jax.jit, static_argnames=("n_grid", "delta"))
def _offline_grid(keys, oracle, cls, *, n_grid, delta: float):
    """Offline Eq. 8 on n pairs from π_base (no exploration), n over a grid: sharpness_error [K, G]."""
    cfg = RLHFConfig(n=1, beta=BETA, tie_break="random")
    f = lambda k: rlhf_sharpening_sweep(jax.random.fold_in(k, 9), oracle, _permute(k, cls), cfg, n_grid=n_grid,  # noqa: E731
                                        delta=delta).sharpness_error[:, 0]
    return jax.vmap(f)(keys)


@functools.lru_cache(maxsize=None)
def _xpo_runner(T: int, alpha: float, delta: float):
    """jit(vmap) of XPO at T rounds over trial keys; oracle and class are arguments (one compile per T)."""
    cfg = XPOConfig(T=T, beta=BETA, alpha=alpha, eval_samples=T, eval_stride=T, tie_break="random")

    def run(keys, oracle, cls):
        res = jax.vmap(lambda k: xpo_sharpening(jax.random.fold_in(k, 3), oracle, _permute(k, cls), cfg))(keys)
        err = jax.vmap(lambda lp: _error(lp, oracle, delta))(res.policy.log_probs)
        return err, res.diagnostics["selected_round"], res.num_queries

    return jax.jit(run), cfg


def _error(lp, oracle, delta):
    return metrics.sharpness_error(TabularPolicy(log_probs=lp), oracle.pi_base, oracle.mu, delta)


def run_setting(keys, setting: dict, mode: str) -> list:
    d, y_pad, N_max = int(setting["d"]), int(setting["y_pad"]), int(setting["N_max"])
    delta = float(setting["delta"])
    inst, pi_base, cls, consts = problem(d, y_pad, N_max)
    oracle = SampleEvaluateOracle(pi_base, inst.mu)
    rows = [dict(trial=-1, queries=0, algorithm="exact", n=0, N=0, T=0, metric=k, value=float(v))
            for k, v in consts.items()]
    err = np.asarray(_sft_grid(keys, oracle, cls, N_max=N_max, delta=delta))  # [K, G, H]
    Ns = N_grid(N_max)
    for t in range(err.shape[0]):
        for g, n in enumerate(SFT_PROMPTS):
            for h, N in enumerate(Ns):
                rows.append(dict(trial=t, queries=n * N, algorithm="sft", n=n, N=N, T=0, metric="sharpness_error",
                                 value=float(err[t, g, h])))
    ns = tuple(2**k for k in range(0, int(math.log2(N_max)) + 1))
    off = np.asarray(_offline_grid(keys, oracle, cls, n_grid=ns, delta=delta))
    rows += [dict(trial=t, queries=2 * n, algorithm="offline_eq8", n=n, N=2, T=0, metric="sharpness_error",
                  value=float(off[t, g])) for t in range(off.shape[0]) for g, n in enumerate(ns)]
    for T in _T_grid(setting):
        # Theorem J.2's α in the proof's normalisation (bounds.xpo_alpha; SEC ≈ D_REF log(T+1), Lemma J.5)
        alpha = float(bounds.xpo_alpha(BETA, R_MAX, math.log(num_candidates(N_max)), T, D_REF * math.log(T + 1), RHO))
        fn, cfg = _xpo_runner(T, alpha, delta)
        e, sel, q = (np.asarray(a) for a in fn(keys, oracle, cls))
        if not np.all(q == cfg.num_queries):
            raise AssertionError(f"XPO query count {q[0]} != {cfg.num_queries}")
        rows.append(dict(trial=-1, queries=0, algorithm="xpo", n=0, N=0, T=T, metric="alpha", value=alpha))
        for t in range(e.shape[0]):
            rows.append(dict(trial=t, queries=int(q[t]), algorithm="xpo", n=0, N=0, T=T, metric="sharpness_error",
                             value=float(e[t])))
            rows.append(dict(trial=t, queries=int(q[t]), algorithm="xpo", n=0, N=0, T=T, metric="selected_round",
                             value=float(sel[t])))
    return rows


# ------------------------------------------------------------------------------------------ analysis
def _success(rows, eps):
    """{(n, N, T): {trial: success}} from the per-trial sharpness-error rows."""
    out: dict = {}
    for r in rows:
        if r["metric"] == "sharpness_error":
            out.setdefault((r["algorithm"], int(r["n"]), int(r["N"]), int(r["T"]), int(r["queries"])), {})[
                int(r["trial"])] = r["value"] <= eps + FLOAT_SLACK
    return out


def _sft_best_split(succ: dict) -> tuple[np.ndarray, np.ndarray, list]:
    """Budgets b = n·N and successes [B, K] of the best split per budget (highest success rate)."""
    by_budget: dict = {}
    for (alg, n, N, T, q), s in succ.items():
        if alg == "sft":
            by_budget.setdefault(q, []).append(((n, N), s))
    budgets = np.array(sorted(by_budget), float)
    mats, splits = [], []
    for b in budgets:
        best = max(by_budget[int(b)], key=lambda c: (np.mean(list(c[1].values())), -c[0][0]))
        trials = sorted(best[1])
        mats.append([best[1][t] for t in trials])
        splits.append(best[0])
    return budgets, np.array(mats, bool), splits


def _xpo_matrix(succ: dict, arm: str = "xpo") -> tuple[np.ndarray, np.ndarray]:
    items = sorted(((q, s) for (alg, n, N, T, q), s in succ.items() if alg == arm), key=lambda c: c[0])
    budgets = np.array([q for q, _ in items], float)
    return budgets, np.array([[s[t] for t in sorted(s)] for _, s in items], bool)


def _mhat(budgets, s, rho, paired, seed):
    m = empirical_sample_complexity(budgets, s, rho, paired=paired, seed=seed)
    return dict(m_hat=m.estimate, lower=m.lower, upper=m.upper, reached=m.reached, below_grid=m.below_grid)


def _fit(x, per, key):
    pts = [(xi, p[key]) for xi, p in zip(x, per) if p[key]["reached"] and math.isfinite(p[key]["upper"])]
    if len(pts) < 3:
        return None, len(pts)
    xs = np.array([a for a, _ in pts], float)
    y = np.array([b["m_hat"] for _, b in pts])
    lo = np.minimum(np.array([max(b["lower"], 1e-12) for _, b in pts]), y)
    hi = np.maximum(np.array([b["upper"] for _, b in pts]), y)
    return fit_loglog_slope(xs, y, y_lower=lo, y_upper=hi), len(pts)


def _fit_dict(fit):
    return None if fit is None else dict(slope=fit.slope, intercept=fit.intercept, lower=fit.lower, upper=fit.upper)


def _j3_degree(ds, B, Ysz) -> float:
    """Local log-log slope in d of Theorem J.3's (derived) polynomial bound along the sweep (|Y| = 2^d, B = d log d)."""
    vals = bounds.THM_J_3.numeric(constant=1.0, B=np.asarray(B), Y_size=np.asarray(Ysz, float), d=np.asarray(ds, float),
                                  rho=RHO, delta=DELTA, epsilon=EPSILON, gamma_margin=GAMMA_PACK)
    return float(np.polyfit(np.log(ds), np.log(vals), 1)[0])


def analyze(rows: list, mode: str) -> dict:
    groups: dict = {}
    for r in rows:
        groups.setdefault(int(r["setting"]), []).append(r)
    per = []
    for i, srows in sorted(groups.items()):
        s0 = srows[0]
        eps, rho = float(s0["epsilon"]), float(s0["rho"])
        consts = {r["metric"]: float(r["value"]) for r in srows if r["algorithm"] == "exact"}
        succ = _success(srows, eps)
        b_sft, s_sft, splits = _sft_best_split(succ)
        b_xpo, s_xpo = _xpo_matrix(succ)
        b_off, s_off = _xpo_matrix(succ, "offline_eq8")
        sel = [float(r["value"]) for r in srows if r["metric"] == "selected_round"]
        T_max = int(s0["T_max"])
        common = 4 * T_max
        sft_common = s_sft[list(b_sft).index(common)] if common in b_sft else np.zeros(0, bool)
        per.append(dict(
            setting=i, d=int(s0["d"]), num_responses=int(s0["num_responses"]), **consts,
            bon_N_needed=math.log(rho) / math.log1p(-1.0 / consts["C_cov"]),
            sft=_mhat(b_sft, s_sft, rho, True, i), xpo=_mhat(b_xpo, s_xpo, rho, False, 1000 + i),
            offline_eq8=_mhat(b_off, s_off, rho, True, 2000 + i), offline_budgets=b_off.tolist(),
            offline_rate=s_off.mean(axis=1).tolist(),
            sft_budgets=b_sft.tolist(), sft_rate=s_sft.mean(axis=1).tolist(), sft_splits=[list(s) for s in splits],
            xpo_budgets=b_xpo.tolist(), xpo_rate=s_xpo.mean(axis=1).tolist(),
            common_budget=common, sft_common=[int(sft_common.sum()), int(sft_common.size)],
            xpo_common=[int(s_xpo[-1].sum()), int(s_xpo.shape[1])],
            xpo_selected_round_mean=float(np.mean(sel)) if sel else float("nan"),
        ))
    ds = np.array([p["d"] for p in per], float)
    ccov = np.array([p["C_cov"] for p in per])
    ccov_rate = float(np.polyfit(ds, np.log(ccov), 1)[0])
    checks = []
    sft_semi, k1 = _fit(np.exp(ds), per, "sft")
    sft_vs_c, _ = _fit(ccov, per, "sft")
    xpo_semi, k2 = _fit(np.exp(ds), per, "xpo")
    xpo_ll, _ = _fit(ds, per, "xpo")
    if sft_vs_c is not None:
        checks.append(check_slope(
            "log-log slope of m̂_SFT vs C_cov(d) (Theorem 4.1's exponent of C_cov)",
            float(bounds.THM_4_1.exponent("C_cov")), sft_vs_c,
            note="m̂_SFT ≈ C_cov·log(1/ρ): BoN must draw y* at least once, and π^BoN_N is sharp only for N ≳ C_cov"))
    if sft_semi is not None:
        checks.append(check_slope(
            "growth rate of log m̂_SFT per unit d (= that of log C_cov(d): exponential in d)", ccov_rate, sft_semi,
            note=f"log C_cov(d) grows by {ccov_rate:.3f} per unit d on this sweep (|Y| = 2^d: log 2 = 0.693)"))
    else:
        checks.append(Check("growth rate of log m̂_SFT per unit d", ccov_rate, float("nan"), float("nan"),
                            float("nan"), "inconclusive", f"only {k1} values of d with a finite m̂_SFT").as_dict())
    if xpo_ll is not None:
        deg = _j3_degree(ds, [p["B"] for p in per], [p["num_responses"] for p in per])
        checks.append(Check(
            "log-log slope of m̂_XPO vs d ≤ the polynomial degree of Theorem J.3's bound along the sweep",
            deg, xpo_ll.slope, xpo_ll.lower, xpo_ll.upper, "consistent" if xpo_ll.lower <= deg else "inconsistent",
            ("Theorem J.3 states m = poly(d, …); the degree is the local log-log slope of the derived expression "
             "with |Y| = 2^d and B = d log d. "
             + ("Some m̂_XPO are at the smallest budget XPO can spend (m = 4: T = 1, one held-out query each), so "
                "they are upper estimates." if any(p["xpo"]["below_grid"] for p in per) else "")),
        ).as_dict())
    else:
        checks.append(Check("log-log slope of m̂_XPO vs d", float("nan"), float("nan"), float("nan"), float("nan"),
                            "inconclusive", f"only {k2} values of d with a finite m̂_XPO").as_dict())
    if sft_semi is not None and xpo_semi is not None:
        sep = xpo_semi.upper < sft_semi.lower
        checks.append(Check(
            "separation: growth rate of log m̂_XPO per unit d < that of log m̂_SFT", sft_semi.slope, xpo_semi.slope,
            xpo_semi.lower, xpo_semi.upper,
            "consistent" if sep else ("inconsistent" if xpo_semi.lower > sft_semi.upper else "inconclusive"),
            f"SFT's rate {sft_semi.slope:.3f} [{sft_semi.lower:.3f}, {sft_semi.upper:.3f}]; consistent when the "
            "intervals are disjoint with XPO's below",
        ).as_dict())
    off_m = [p["offline_eq8"]["m_hat"] for p in per]
    xpo_m = [p["xpo"]["m_hat"] for p in per]
    reg = all(math.isfinite(o) for o in off_m) and all(o <= 4 * max(x, 4) for o, x in zip(off_m, xpo_m) if math.isfinite(x))
    gap = any(math.isfinite(x) and not o <= 4 * x for o, x in zip(off_m, xpo_m))
    checks.append(Check(
        "offline Eq. 8 (pairs from π_base, no exploration) needs ≫ XPO's queries on Example J.1's finite class",
        float(max(xpo_m)), float(max(off_m)), float(min(off_m)), float(max(off_m)),
        "finding: reward regression alone reaches poly(d) here; the XPO/SFT gap on this class is not due to exploration"
        if reg else ("consistent" if gap else "inconclusive"),
        "m̂ per d: offline " + str(np.round(off_m, 1).tolist()) + ", XPO " + str(np.round(xpo_m, 1).tolist())
        + ". With exact rewards one informative pair identifies π*_β among a handful of candidates; see "
        "xpo_exploration for an instance where exploration is necessary.").as_dict())
    last = per[-1]
    k_s, n_s = last["sft_common"]
    k_x, n_x = last["xpo_common"]
    if n_s and n_x:
        lo_x, hi_x = proportion_interval(k_x, n_x)
        lo_s, hi_s = proportion_interval(k_s, n_s)
        verdict = ("consistent" if lo_x > hi_s else ("inconsistent" if hi_x < lo_s else "inconclusive"))
        checks.append(Check(
            f"at the common budget m = {last['common_budget']} and d = {last['d']}: XPO's success rate > SFT's",
            k_s / n_s, k_x / n_x, float(lo_x), float(hi_x), verdict,
            f"predicted column = SFT's rate (best split), Wilson CI [{float(lo_s):.3f}, {float(hi_s):.3f}]",
        ).as_dict())
    return dict(arms=list(ARMS), checks=checks, per_d=per, C_cov_rate_per_d=ccov_rate, beta=BETA, gamma_pack=GAMMA_PACK,
                sft_semilog_fit=_fit_dict(sft_semi), sft_vs_C_cov_fit=_fit_dict(sft_vs_c),
                xpo_semilog_fit=_fit_dict(xpo_semi), xpo_loglog_fit=_fit_dict(xpo_ll))


# ------------------------------------------------------------------------------------------ figure
def plot(rows: list, summary: dict, out_dir) -> list:
    per = summary["per_d"]
    ds = np.array([p["d"] for p in per], float)
    fig, (ax, ax2) = new_figure(2, width=5.8, height=4.4)
    for key, color, marker, label in (("sft", "C0", "o", "SFT-sharpening (best split n·N)"),
                                      ("xpo", "C1", "s", "XPO (Algorithm 1), m = 4T")):
        y = np.array([p[key]["m_hat"] for p in per])
        lo = np.array([p[key]["lower"] for p in per])
        hi = np.array([p[key]["upper"] for p in per])
        ok = np.isfinite(y)
        ax.plot(ds[ok], y[ok], marker + "-", color=color, label=label, zorder=3)
        band = ok & np.isfinite(hi) & (lo > 0)
        ax.fill_between(ds[band], lo[band], hi[band], color=color, alpha=0.25)
        below = ok & np.array([p[key]["below_grid"] for p in per])
        if below.any():
            ax.plot(ds[below], y[below], "v", color=color, ms=9, mfc="none", label=f"{key.upper()}: at grid floor (≤)")
    ax.plot(ds, [p["C_cov"] for p in per], "k--", lw=1, label=r"$C_{\rm cov}(d)$")
    ax.plot(ds, [p["bon_N_needed"] for p in per], "k:", lw=1.2,
            label=r"$N$ with $1-(1-1/C_{\rm cov})^N = 1-\rho$ (BoN finds $y^*$)")
    fits = [("sft_semilog_fit", "C0", "SFT"), ("xpo_semilog_fit", "C1", "XPO")]
    xs = np.linspace(ds.min(), ds.max(), 50)
    for k, color, name in fits:
        f = summary.get(k)
        if f:
            ax.plot(xs, np.exp(f["intercept"] + f["slope"] * xs), ":", color=color, lw=1,
                    label=f"{name}: log m̂ slope {f['slope']:.2f} [{f['lower']:.2f}, {f['upper']:.2f}] per unit d")
    # Theorem J.3's polynomial shape (constant fitted to the XPO measurements) for comparison
    y_x = np.array([p["xpo"]["m_hat"] for p in per])
    bc = BoundCurve(bounds.THM_J_3, dict(B=np.array([p["B"] for p in per]), Y_size=np.array([p["num_responses"] for p in per], float),
                                         d=ds, rho=RHO, delta=DELTA, epsilon=EPSILON, gamma_margin=GAMMA_PACK))
    try:
        yb, c = bc.evaluate(y_x)
        ax.plot(ds, yb, "--", color="C1", lw=0.8, alpha=0.7, label="Theorem J.3 poly(d) shape (fitted constant)")
    except ValueError:
        pass
    ax.set_yscale("log")
    ax.set_xlabel("d  (|Y| = 2^d packing points)")
    ax.set_ylabel(r"$\hat m(\rho)$ (queries)")
    ax.set_title("Example J.1: m̂ vs d on semilog axes (straight = exponential)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6.5, loc="upper left")
    for key, color, marker, label in (("sft_common", "C0", "o", "SFT (best split)"), ("xpo_common", "C1", "s", "XPO")):
        k = np.array([p[key][0] for p in per])
        n = np.array([p[key][1] for p in per])
        ok = n > 0
        lo, hi = proportion_interval(k[ok], n[ok])
        ax2.plot(ds[ok], k[ok] / n[ok], marker + "-", color=color, label=label)
        ax2.fill_between(ds[ok], lo, hi, color=color, alpha=0.25)
    ax2.axhline(1 - RHO, ls="--", color="k", lw=1, label="1 − ρ")
    ax2.set_ylim(-0.03, 1.03)
    ax2.set_xlabel("d")
    ax2.set_ylabel("P[π̂ is (ε, δ)-sharpened]")
    ax2.set_title(f"success at the common budget m = {per[-1]['common_budget']} (95% Wilson)", fontsize=10)
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, pathlib.Path(out_dir) / "xpo_vs_sft_j1")


EXPERIMENT = Experiment(
    name=NAME,
    title="Example J.1: XPO vs SFT-sharpening, exponential separation in d",
    claim=("On Example J.1's log-linear instance with |Y| = exp(Θ(d)), SFT-sharpening needs exp(Ω(d)) ≍ C_cov "
           "queries while XPO needs poly(d)."),
    paper_refs=("Example J.1", "Theorem J.3", "Theorem J.2 / 4.3", "Theorem 4.1", "Algorithm 1"),
    instance=("example_j1: one prompt, |Y| = 2^d points of a 1/4-packing of S^{d-1}, π_base ∝ exp⟨y, y*⟩; finite "
              "realizable stack class {π_{(1+1/β)θ} : θ ∈ {θ*, 3 nearest packing points}} ∪ {π_base} ∪ {π^BoN_N}"),
    sweep="d (quick 4, 6, 8, 10; full 3..12); SFT budgets n·N (n ∈ {1,2,4}, N = 2^k); XPO T = 2^k, m = 4T",
    algorithms=("sft_sharpening_sweep (best split per budget)", "xpo_sharpening (Algorithm 1)"),
    bounds=("thm_4_1", "thm_J_3", "thm_4_3"),
    predicted=("log m̂_SFT grows linearly in d at the rate of log C_cov (m̂_SFT ∝ C_cov, slope 1 against C_cov); "
               "m̂_XPO grows at most polynomially in d (log-log slope ≤ Theorem J.3's degree), so its semilog "
               "slope is below SFT's"),
    how_to_read=("Left: the empirical sample complexity m̂(ρ) — the smallest query budget at which ≥ 1 − ρ of "
                 "trials end (ε, δ)-sharpened — against d on a log-y axis, with bootstrap bands. A straight rising "
                 "line is exponential growth: SFT (blue) should run parallel to C_cov(d) (dashed black) and to the "
                 "number of draws best-of-N needs to see y* once (dotted black); XPO (orange) should stay flat or "
                 "bend down (polynomial). Open triangles mark m̂ at the smallest budget of the grid (an upper "
                 "estimate). Dotted coloured lines are the semilog fits with their per-unit-d slopes. Right: the "
                 "success rate of both algorithms at one common budget, against d: SFT's collapses once C_cov "
                 "exceeds the budget, XPO's stays above 1 − ρ."),
    settings=settings,
    run_setting=run_setting,
    analyze=analyze,
    plot=plot,
    trials={"quick": 128, "full": 1000},
)
