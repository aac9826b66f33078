"""Example J.1 on the continuous log-linear class Π_{φ,B} of Definition J.3 (rows ``class = "loglinear_j3"`` of
``xpo_vs_sft_j1``), with exact ball-constrained solvers instead of projected Adam.

Why not the library's projected optax steps: π*_β = π_{(1+1/β)θ*} sits at ‖θ‖ = 1 + 1/β (33 to 180 here, 714 with
the finite arms' β), which projected Adam reaches only after ≈ 1000 steps per round. Three facts make exact
solves cheap (d ≤ 10):

* Eq. 8 is *exactly quadratic* in θ on a log-linear class: log π_θ(y|x) − log π_θ(y'|x) = ⟨φ(x,y) − φ(x,y'), θ⟩
  (the log-partition cancels inside a pair), so the residual is β⟨Δφ, θ⟩ − (1+β)Δr − Δnoise and the loss is
  θᵀ(β²A)θ − 2β²bᵀθ + const with A = Σ ΔφΔφᵀ, b = Σ s Δφ, s = ((1+β)Δr + Δnoise)/β.
* A convex quadratic over the ball ‖θ‖ ≤ B is a trust-region subproblem: one eigendecomposition and a 1-D search
  on the multiplier λ (:func:`ball_quadratic_min`). Flat directions of the quadratic that the linear term does
  not pull get 0: with exact rewards and fewer than d independent pairs the Eq. 8 minimiser is not unique, and
  the documented rule is the minimum-norm one (the implicit bias of gradient descent from θ = 0).
* XPO's optimism term α Σ log π_θ(ỹ|x) = α Σ ⟨φ(x,ỹ), θ⟩ − α Σ log Z_x(θ) is linear minus convex (concave), so
  majorisation–minimisation (the convex–concave procedure) replaces −log Z by its tangent at the current θ and
  solves the ball-constrained quadratic: every step lowers Algorithm 1's objective (for the flipped sign of the
  private test hook, +α log Z is majorised by its quadratic bound, Cov_θ(φ) ≼ I since ‖φ‖ ≤ 1). ``mm_steps``
  steps per round, warm-started from the previous round's θ (a stationary point, not a certified global argmin:
  the objective is not convex when α > 0).
* The SFT MLE (concave in θ) is maximised by safeguarded Newton steps in the same ball solver (each step takes the
  better of the Newton step and the majorising gradient step, so the likelihood never decreases).

Parameters (Theorem J.3's hypotheses, stated per d): φ(x, y) = y ∈ S^{d−1} (‖φ‖ = 1), π_zero uniform, θ* = y*
(‖θ*‖ = 1); γ_margin = the instance's own margin expm1(1 − max_{y≠y*}⟨y, y*⟩) (≥ expm1(1/32) by the packing);
β = γ_margin/(2 log(2|Y|/δ)) (the theorem's β); B = 1.5/β, the smallest B with ‖θ*‖ ≤ γ_margin B/(3 log(2|Y|/δ));
α(T) = :func:`bounds.loglinear_alpha` (Theorem J.3's recipe with c = 1, T clamped to ≥ 2). Responses are padded
to the finite arms' |Y| and the dimension to d_max (zero features, −∞ base weight on padded responses), and β, B
are traced, so every d shares one compile per arm.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

import bounds
from sharpsim import instances
from sharpsim.algorithms import XPOConfig, sft_sharpening_sweep, xpo_sharpening_sweep
from sharpsim.classes import _GradientFits
from sharpsim.metrics import SharpnessEvaluation
from sharpsim.policies import TabularPolicy

CLASS = "loglinear_j3"
ARMS = ("sft", "xpo", "xpo_alpha0", "offline_eq8")
SFT_PROMPTS = (1, 2, 4)
_BISECT = 40


def ball_quadratic_min(Q, l, B):
    """argmin_{‖θ‖₂ ≤ B} θᵀQθ + lᵀθ for symmetric PSD Q (trust-region subproblem, exact up to a 40-step bisection in
    log λ). Directions with Q ≈ 0 and no linear pull get 0 (the minimum-norm minimiser)."""
    q, V = jnp.linalg.eigh(Q)
    return _ball_solve(q, V, l, B)


def _ball_solve(q, V, l, B):
    dt = l.dtype
    lt = V.T @ l
    q = jnp.maximum(q, 0.0)
    lnorm = jnp.linalg.norm(l)
    flat = q <= 1e-10 * (1.0 + jnp.max(q))
    free = flat & (jnp.abs(lt) <= 1e-10 * (1.0 + lnorm))  # not identified and not pulled: 0

    def coords(lam):
        return jnp.where(free, 0.0, -lt / (2.0 * jnp.where(free, 1.0, q + lam)))

    th0 = jnp.where(flat, 0.0, -lt / (2.0 * jnp.where(flat, 1.0, q)))
    inside = ~jnp.any(flat & ~free) & (jnp.linalg.norm(th0) <= B)
    hi = jnp.log(jnp.maximum(lnorm / (2.0 * B), jnp.finfo(dt).tiny) * 2.0)  # ‖θ(e^hi)‖ ≤ B
    lo = hi - 60.0

    def bisect(_, lh):
        lo, hi = lh
        mid = 0.5 * (lo + hi)
        big = jnp.linalg.norm(coords(jnp.exp(mid))) > B
        return jnp.where(big, mid, lo), jnp.where(big, hi, mid)

    _, hi = jax.lax.fori_loop(0, _BISECT, bisect, (lo, hi))
    theta = V @ jnp.where(inside, th0, coords(jnp.exp(hi)))
    return theta * jnp.minimum(1.0, B / jnp.maximum(jnp.linalg.norm(theta), jnp.finfo(dt).tiny))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class BallLogLinear(_GradientFits):
    """Π_{φ,B} (Definition J.3) with exact ball-constrained fits: Eq. 8 in closed form (:meth:`fit_pairs`), the
    MLE by safeguarded Newton (:meth:`fit_counts`, so the one-draw SFT sweep applies), XPO rounds by MM
    (:meth:`xpo_rounds`). ``log_zero`` is log π_zero: a constant on real responses, −∞ on padding. ``norm_bound``
    is traced (one compile for every B)."""

    features: jax.Array  # [X, Y, d]
    log_zero: jax.Array  # [X, Y]
    norm_bound: jax.Array  # scalar
    mm_steps: int = dataclasses.field(default=12, metadata=dict(static=True))
    newton_steps: int = dataclasses.field(default=25, metadata=dict(static=True))

    exact_mle = True  # up to solver tolerance (Newton, monotone)
    closed_form_eq8 = True
    log_class_size = None

    def log_covering_number(self, eps: float) -> float:
        """Lemma J.4: log (6B/ε)^d (B concrete)."""
        return self.features.shape[2] * math.log(max(6.0 * float(self.norm_bound) / eps, 1.0))

    @property
    def num_prompts(self) -> int:
        return self.features.shape[0]

    @property
    def num_responses(self) -> int:
        return self.features.shape[1]

    def init_params(self):
        return jnp.zeros(self.features.shape[2], self.features.dtype)

    def table(self, theta):
        return jax.nn.log_softmax(self.features @ theta + self.log_zero, axis=-1)

    def log_prob(self, theta, x, y):
        return self.table(theta)[x, y]

    def project(self, theta):
        return theta * jnp.minimum(1.0, self.norm_bound / jnp.maximum(jnp.linalg.norm(theta), 1e-300))

    def member(self, theta) -> TabularPolicy:
        return TabularPolicy(log_probs=self.table(theta))

    def _mean_features(self, theta):  # E_{π_θ(·|x)} φ(x, ·), [X, d]
        return jnp.einsum("xy,xyd->xd", jnp.exp(self.table(theta)), self.features)

    # ---------------------------------------------------------------- Eq. 8 (closed form)
    def eq8_fit(self, x, y, yp, r_y, r_yp, beta, w):
        """Eq. 8's minimum-norm minimiser over the ball on the pairs with weight w (0/1 prefix masks)."""
        dphi = self.features[x, y] - self.features[x, yp]
        s = (1.0 + beta) * (r_y - r_yp) / beta
        A = jnp.einsum("i,id,ie->de", w, dphi, dphi)
        return ball_quadratic_min(beta**2 * A, -2.0 * beta**2 * (w * s) @ dphi, self.norm_bound)

    def fit_pairs(self, pair_loss, x, y, yp, *, tie_key=None, tie_break="first", fit=None, eq8=None):
        """Eq. 8 (``eq8 = (β, r_y, r_y')``, exact rewards) in closed form; otherwise projected optax steps."""
        if eq8 is None:
            return super().fit_pairs(pair_loss, x, y, yp, fit=fit)
        beta, r_y, r_yp = eq8
        theta = self.eq8_fit(x, y, yp, r_y, r_yp, beta, jnp.ones(jnp.shape(x), r_y.dtype))
        return self.member(theta), theta, {"nonfinite_step": jnp.asarray(-1, jnp.int32)}

    # ---------------------------------------------------------------- MLE (SFT)
    def fit_counts(self, counts):
        """argmax Σ c(x,y) log π_θ(y|x) over the ball: Newton steps safeguarded by the majorising gradient step."""
        c = counts.astype(self.features.dtype)
        nx = c.sum(axis=1)
        n = jnp.maximum(nx.sum(), 1e-300)
        cphi = jnp.einsum("xy,xyd->d", c, self.features)
        dim = self.features.shape[2]

        def nll(th):
            return -jnp.sum(c * jnp.where(c > 0, self.table(th), 0.0))

        def step(_, th):
            p = jnp.exp(self.table(th))
            m = jnp.einsum("xy,xyd->xd", p, self.features)
            g = nx @ m - cphi
            H = jnp.einsum("x,xy,xyd,xye->de", nx, p, self.features, self.features) - jnp.einsum("x,xd,xe->de", nx, m, m)
            H = H + 1e-8 * n * jnp.eye(dim, dtype=th.dtype)
            newton = ball_quadratic_min(0.5 * H, g - H @ th, self.norm_bound)
            grad = self.project(th - g / n)  # minimiser of the majoriser (Cov ≼ I) over the ball
            return jnp.where(nll(newton) <= nll(grad), newton, grad)

        theta = jax.lax.fori_loop(0, self.newton_steps, step, self.init_params())
        return self.member(theta), theta

    # ---------------------------------------------------------------- XPO rounds (MM)
    def xpo_rounds(self, objective, first, next_triple, round_keys, ts, *, T, tie_key=None, tie_break="first",
                   fit=None, steps=10):
        """Rounds 1..T of Algorithm 1 with the round objective minimised by ``mm_steps`` MM steps (warm start)."""
        del tie_key, tie_break, fit, steps
        hp = objective.hp
        beta, alpha, sign = hp["beta"], hp["alpha"], hp["sign"]
        F, dim, dt = self.features, self.features.shape[2], self.features.dtype

        def add(stats, trip):
            x, y, yt, r, rt, n, nt = trip
            dphi = F[x, y] - F[x, yt]
            s = ((1.0 + beta) * (r - rt) + (n - nt)) / beta
            A, b, ss, u, cx = stats
            return (A + jnp.outer(dphi, dphi), b + s * dphi, ss + s**2, u + F[x, yt], cx.at[x].add(1.0))

        def solve(stats, theta, t):
            A, b, ss, u, cx = stats
            p = jnp.maximum(-sign, 0.0) * alpha * t  # majorise +α log Z (flipped sign) by a quadratic
            q, V = jnp.linalg.eigh(beta**2 * A + 0.5 * p * jnp.eye(dim, dtype=dt))

            def mm(_, th):
                lin = -2.0 * beta**2 * b + sign * alpha * (u - cx @ self._mean_features(th)) - p * th
                return _ball_solve(q, V, lin, self.norm_bound)

            theta = jax.lax.fori_loop(0, self.mm_steps, mm, theta)
            logz = jax.nn.logsumexp(F @ theta + self.log_zero, axis=-1)
            sq = beta**2 * (theta @ A @ theta - 2.0 * b @ theta + ss)
            return theta, (sq + sign * alpha * (u @ theta - cx @ logz)) / t

        zero = (jnp.zeros((dim, dim), dt), jnp.zeros(dim, dt), jnp.zeros((), dt), jnp.zeros(dim, dt),
                jnp.zeros(self.num_prompts, dt))
        stats = add(zero, first)
        theta, obj1 = solve(stats, self.init_params(), 1.0)

        def round_(carry, inp):
            theta, stats = carry
            k, t = inp
            stats = add(stats, next_triple(k, theta))
            theta, obj = solve(stats, theta, t.astype(dt))
            return (theta, stats), (theta, obj)

        _, (hist, objs) = jax.lax.scan(round_, (theta, stats), (round_keys, ts))
        iterates = jnp.concatenate([theta[None], hist])
        extra = {"nonfinite_step": jnp.full((T,), -1, jnp.int32), "nonfinite_loss": jnp.zeros((T,), dt),
                 "nonfinite_grad_norm": jnp.zeros((T,), dt)}
        return iterates, jnp.concatenate([obj1[None], objs]), extra


# ==================================================================================== the instance
@functools.lru_cache(maxsize=None)
def constants(d: int, delta: float) -> dict:
    """Theorem J.3's parameters for Example J.1 at dimension d (see the module docstring)."""
    inst = instances.example_j1(jax.random.key(0), d, 2**d)
    F, th = np.asarray(inst.features, float), np.asarray(inst.theta_star, float)
    g = F @ th
    gamma = math.expm1(1.0 - np.sort(g)[-2])
    beta = gamma / (2 * math.log(2 * 2**d / delta))
    B = 1.5 / beta
    z = (1 + 1 / beta) * g
    star = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    assert 1.0 <= gamma * B / (3 * math.log(2 * 2**d / delta)) + 1e-9  # ‖θ*‖ = 1 within Theorem J.3's limit
    return dict(gamma_margin=gamma, beta=beta, B=B, pi_star_mass=float(star.max()), F=F)


def make_class(d: int, delta: float, y_pad: int, d_pad: int) -> BallLogLinear:
    c = constants(d, delta)
    F = np.zeros((1, y_pad, d_pad))
    F[0, :2**d, :d] = c["F"]
    lz = np.full((1, y_pad), -np.inf)
    lz[0, :2**d] = -d * math.log(2)
    dt = jnp.result_type(float)
    return BallLogLinear(features=jnp.asarray(F, dt), log_zero=jnp.asarray(lz, dt), norm_bound=jnp.asarray(c["B"], dt))


def alphas(d: int, delta: float, eps: float, rho: float, T_grid) -> np.ndarray:
    """α(T) of Theorem J.3 (bounds.loglinear_alpha, c = 1, T ≥ 2) per T of the grid, then 0 (xpo_alpha0)."""
    c = constants(d, delta)
    return np.array([float(bounds.loglinear_alpha(c["beta"], c["B"], 2**d, d, max(T, 2), eps, delta, rho))
                     for T in T_grid] + [0.0])


@functools.partial(jax.jit, static_argnames=("N_grid", "n_grid", "T_grid", "E"))
def errors(keys, oracle, cls, beta, alpha, delta, *, N_grid, n_grid, T_grid, E):
    """Sharpness errors per trial on the log-linear class: SFT [K, n, N], offline Eq. 8 [K, G], XPO [K, T, α]."""
    ev = SharpnessEvaluation.of(oracle.pi_base, oracle.mu, delta)
    xcfg = XPOConfig(T=max(T_grid), beta=1.0, alpha=0.0, eval_samples=E, eval_stride=max(T_grid))
    n_arr, n_max = jnp.asarray(n_grid), max(n_grid)

    def one(k):
        sft = sft_sharpening_sweep(jax.random.fold_in(k, 17), oracle, cls, SFT_PROMPTS, N_grid, evaluate=ev)
        b = oracle.sample_and_evaluate(jax.random.fold_in(k, 19), n_max, 2)  # n_max π_base pairs (2 queries each)
        x, y, yp, r = b.prompts, b.responses[:, 0], b.responses[:, 1], b.log_probs

        def off(n):
            w = (jnp.arange(n_max) < n).astype(r.dtype)
            return ev(cls.member(cls.eq8_fit(x, y, yp, r[:, 0], r[:, 1], beta, w)))[0]

        xpo = xpo_sharpening_sweep(jax.random.fold_in(k, 13), oracle, cls, xcfg, T_grid=T_grid,
                                   betas=jnp.full(alpha.shape, beta), alphas=alpha, evaluate=ev)
        return sft.sharpness_error, jax.vmap(off)(n_arr), xpo.sharpness_error

    return jax.vmap(one)(keys)
