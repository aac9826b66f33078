"""Power distributions π^α: the exact law and two approximate samplers measured against it.

The paper's KL-regularised optimum π*_β ∝ π_base^{1+1/β} (Eq. 3 with Eq. 2, theory.md §9) is the power
distribution π^α at α = 1 + 1/β. Karan & Du (2025, "Reasoning with Sampling: Your Base Model is Smarter Than
You Think", arXiv:2510.14901) sample π^α at inference time with Metropolis–Hastings over suffixes; sequential
Monte Carlo is the other standard approximation. See ``docs/power.md``.

* :func:`power_policy` — the exact π^α(y|x) = π(y|x)^α / Σ_{y'} π(y'|x)^α: a :class:`TabularPolicy` for a
  tabular policy; for an autoregressive policy an autoregressive policy with the same sequence law, whose
  next-token laws come from the future-mass recursion

      Z_H(y_{1:H}) = 1,   Z_h(y_{<h}) = Σ_v π_h(v | y_{<h})^α · Z_{h+1}(y_{<h}·v),
      π^α_h(v | y_{<h}) = π_h(v | y_{<h})^α · Z_{h+1}(y_{<h}·v) / Z_h(y_{<h}).

  For a :class:`~sharpsim.MarkovPolicy`, Z_{h+1} depends on the prefix only through its last token, so the
  recursion is a backward dynamic programme over the previous token and the result is again a
  (position-dependent) :class:`~sharpsim.MarkovPolicy`. For any other autoregressive policy (transformer,
  linear-softmax) the sequences are enumerated (V^H ≤ ``max_size``) and the result is a
  :class:`SequenceTablePolicy`, an autoregressive policy that reads its next-token laws off a prefix tree
  of sequence masses.

* :func:`power_mh_sample` — Metropolis–Hastings over suffixes (Karan & Du 2025, Algorithm 1 at a fixed
  horizon): pick a position t uniformly, resample y_{t:} token by token at temperature 1/α, accept with
  min(1, π^α(y')·q(y_{t:} | y_{<t}) / (π^α(y)·q(y'_{t:} | y_{<t}))).
* :func:`power_smc_sample` — sequential Monte Carlo with the temperature-1/α proposal: the per-token weight
  π_h(v)^α / q_h(v) = Σ_u π_h(u)^α does not depend on the drawn token, so particles are resampled on it
  before each extension (a fully adapted particle filter).

Both count **model calls**: the number of next-token distributions π_h(· | prefix) computed (one per
position per sequence; a proposal from position t costs H − t, as with a cached prefix). Plain sampling
of one sequence, and so one best-of-N draw, costs H.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from sharpsim._validation import check_key, check_positive, check_positive_int, is_concrete
from sharpsim.policies import AutoregressivePolicy, MarkovPolicy, TabularPolicy
from sharpsim.policies._autoregressive import _check_eos
from sharpsim.policies._tabular import inverse_cdf_sample

__all__ = ["power_policy", "SequenceTablePolicy", "PowerSamples", "power_mh_sample", "power_mh_chain",
           "power_smc_sample",
           "MAX_POWER_ENUMERATION"]

#: Largest V^H for which :func:`power_policy` enumerates a non-Markov autoregressive policy by default.
MAX_POWER_ENUMERATION = 2**16


# ============================================================================ exact power policies
def _check_alpha(alpha):
    check_positive(alpha, "alpha")  # α > 0 and finite, ValueError naming alpha


def _tabular_power(lp: Float[Array, "X Y"], alpha) -> Float[Array, "X Y"]:
    """Normalised log π^α per row, in log space.

    Where α·max log π overflows (α near the dtype's maximum, e.g. α = 1 + 1/β for β ~ 1e-39 in float32) the
    row is rescaled from its maximum first, α·(log π − max log π), with the argmax entries kept at exactly 0
    (never 0·inf), so the result is the α → ∞ limit (uniform on the argmax set) instead of NaN.
    """
    scale = alpha
    if isinstance(scale, (float, int, np.floating, np.integer)):  # keep a Python scale representable
        scale = min(float(scale), float(jnp.finfo(lp.dtype).max))
    direct = jax.nn.log_softmax(scale * lp, axis=-1)
    shifted = lp - jnp.max(lp, axis=-1, keepdims=True)  # ≤ 0, exactly 0 on the argmax set
    stable = jax.nn.log_softmax(jnp.where(shifted == 0, 0.0, shifted * scale), axis=-1)
    row_ok = jnp.isfinite(jnp.max(scale * lp, axis=-1, keepdims=True))
    return jnp.where(row_ok, direct, stable)


@jax.jit
def _markov_power(lp: Float[Array, "X H Vp1 V"], alpha) -> Float[Array, "X H Vp1 V"]:
    """Backward DP: log Z_{h}(p) = logsumexp_v(α log π_h(v|p) + log Z_{h+1}(v)), log Z_H ≡ 0."""
    X, H, Vp1, V = lp.shape
    a = jnp.where(lp == -jnp.inf, -jnp.inf, alpha * lp)

    def step(log_z_next, a_h):  # a_h [X, V+1, V], log_z_next [X, V]
        s = a_h + log_z_next[:, None, :]
        log_z = jax.nn.logsumexp(s, axis=-1)  # [X, V+1]
        return log_z[:, :V], s - log_z[..., None]

    _, new = jax.lax.scan(step, jnp.zeros((X, V), lp.dtype), jnp.moveaxis(a, 1, 0), reverse=True)
    return jnp.moveaxis(new, 0, 1)


def _level_offsets(V: int, H: int) -> np.ndarray:
    """Start of each prefix level in the flat prefix tree: level h (prefixes of length h) has V^h nodes."""
    return np.concatenate([[0], np.cumsum([V**h for h in range(H + 1)])]).astype(np.int64)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SequenceTablePolicy(AutoregressivePolicy):
    """An autoregressive policy given by its sequence law: next-token laws read off a prefix tree.

    ``node_log_mass[x, offset_h + i]`` is log P(y_{1:h} = prefix i | x) for every prefix of length h = 0…H
    (row-major prefix index i, ``offset_h`` = Σ_{j<h} V^j), so

        π_h(v | prefix i) = P(prefix i · v) / P(prefix i)

    and ``to_tabular()`` recovers the sequence table (level H) up to rounding. A prefix of zero mass gets a
    uniform next-token law (it is never reached; its sequences keep log-probability −inf). The result of
    :func:`power_policy` for non-Markov autoregressive policies; build one with :meth:`from_sequence_log_probs`.
    """

    node_log_mass: Float[Array, "X N"]
    vocab_size: int = dataclasses.field(metadata=dict(static=True))
    horizon: int = dataclasses.field(metadata=dict(static=True))
    eos_id: int | None = dataclasses.field(default=None, metadata=dict(static=True))

    @classmethod
    def from_sequence_log_probs(cls, log_probs: Float[Array, "X Y"], vocab_size: int, horizon: int, *,
                                eos_id: int | None = None) -> "SequenceTablePolicy":
        """From a ``[X, V^H]`` table of log P(y|x) in row-major sequence order (rows normalised)."""
        V = check_positive_int(vocab_size, "vocab_size")
        H = check_positive_int(horizon, "horizon")
        lp = jnp.asarray(log_probs, dtype=jnp.result_type(float))
        if lp.ndim != 2 or lp.shape[1] != V**H:
            raise ValueError(f"log_probs must have shape [X, V^H] = [X, {V**H}], got {lp.shape}.")
        levels = [lp]
        for h in range(H, 0, -1):
            levels.append(jax.nn.logsumexp(levels[-1].reshape(lp.shape[0], V ** (h - 1), V), axis=-1))
        return cls(node_log_mass=jnp.concatenate(levels[::-1], axis=1), vocab_size=V, horizon=H,
                   eos_id=_check_eos(eos_id, V))

    @property
    def num_prompts(self) -> int:
        return self.node_log_mass.shape[0]

    def _logits_at(self, x, prefix, h):
        V, H = self.vocab_size, self.horizon
        idx = jnp.zeros((), jnp.int32)
        for j in range(H):  # row-major index of the first h tokens
            idx = jnp.where(j < h, idx * V + prefix[j], idx)
        offsets = jnp.asarray(_level_offsets(V, H), jnp.int32)
        children = self.node_log_mass[x, offsets[h + 1] + idx * V + jnp.arange(V)]
        return jnp.where(jnp.all(children == -jnp.inf), 0.0, children)

    def __repr__(self) -> str:
        return (f"SequenceTablePolicy(X={self.num_prompts}, V={self.vocab_size}, H={self.horizon}, "
                f"eos_id={self.eos_id})")



def power_policy(policy, alpha, *, max_size: int = MAX_POWER_ENUMERATION):
    """The exact power policy π^α(y|x) ∝ π(y|x)^α for α > 0 (α = 1 + 1/β: the KL optimum of Eq. 3).

    * :class:`TabularPolicy` (or a ``[X, Y]`` probability table) → :class:`TabularPolicy`, computed in log
      space; an α whose α·log π overflows gives the α → ∞ limit (uniform on the argmax set), not NaN.
    * :class:`~sharpsim.MarkovPolicy` → :class:`~sharpsim.MarkovPolicy` with the same ``eos_id`` whose
      transition table ``L'[x, h, p, v] = α L[x, h, p, v] + log Z_{h+1}(v) − log Z_h(p)`` is the future-mass
      recursion (module docstring) solved by backward dynamic programming over the previous token: O(X H V²),
      no enumeration. (A Markov table already depends on the position, so the power stays in the family.)
    * any other :class:`~sharpsim.AutoregressivePolicy` (transformer, linear-softmax) → a
      :class:`SequenceTablePolicy` by enumerating all V^H sequences; raises ``ValueError`` if V^H exceeds
      ``max_size`` (default :data:`MAX_POWER_ENUMERATION` = 2¹⁶).

    In every case ``power_policy(pi, α).to_tabular()`` equals ``power_policy(pi.to_tabular(), α)`` up to
    rounding. α < 1 flattens, α = 1 is the identity, α > 1 sharpens; per-token temperature T = 1/α is a
    different law (Karan & Du 2025, §3): it ignores the future mass Z_{h+1}.
    """
    _check_alpha(alpha)
    if isinstance(policy, MarkovPolicy):
        lp = policy.effective_log_probs()
        out = _markov_power(lp, jnp.asarray(alpha, lp.dtype))
        if is_concrete(out) and is_concrete(alpha) and bool(jnp.any(jnp.isnan(out))):
            raise ValueError(
                f"alpha={float(alpha):g} is too large for the Markov dynamic programme in {lp.dtype}: α·log π "
                "overflows to -inf on whole rows. Use a smaller alpha (or power_policy(pi.to_tabular(), alpha), "
                "whose log-space path gives the α → ∞ limit)."
            )
        return MarkovPolicy(log_probs=out, eos_id=policy.eos_id)
    if isinstance(policy, AutoregressivePolicy):
        size = policy.num_sequences
        if size > max_size:
            raise ValueError(
                f"power_policy enumerates the V^H = {policy.vocab_size}^{policy.horizon} = {size} sequences of a "
                f"{type(policy).__name__}, which exceeds max_size={max_size}; exact π^α needs enumeration "
                "here (only MarkovPolicy has a dynamic programme). Use power_mh_sample / power_smc_sample."
            )
        table = policy.to_tabular(max_size=max_size).log_probs
        return SequenceTablePolicy.from_sequence_log_probs(_tabular_power(table, alpha), policy.vocab_size,
                                                           policy.horizon, eos_id=policy.eos_id)
    from sharpsim.metrics import as_policy  # local import: metrics → policies only, no cycle

    pi = as_policy(policy, "policy")
    return TabularPolicy(log_probs=_tabular_power(pi.log_probs, alpha))


# ============================================================================ approximate samplers
class PowerSamples(NamedTuple):
    """Output of a power sampler: the samples, the model calls spent, and a sampler-specific statistic.

    ``samples``: ``[H]`` (MH: the chain's final state) or ``[N, H]`` (SMC: the equally weighted particles).
    ``model_calls``: next-token distributions computed (int32). ``stat``: MH — number of accepted proposals;
    SMC — log of the estimated normaliser Ẑ ≈ Σ_y π(y|x)^α (unbiased in Ẑ).
    """

    samples: Int[Array, "..."]
    model_calls: Int[Array, ""]
    stat: Array


def _check_sampler_args(policy, key, x, alpha):
    if not isinstance(policy, AutoregressivePolicy):
        raise ValueError(f"policy must be an AutoregressivePolicy (MarkovPolicy, TransformerPolicy, ...), "
                         f"got {type(policy).__name__}; for a TabularPolicy sample power_policy(pi, alpha) directly.")
    check_key(key)
    policy._check_prompt(x)
    _check_alpha(alpha)


def _step_log_probs(policy, x, prefix, h, cache, alpha):
    """log π_h(·|prefix) and the proposal log q_h = log softmax(α log π_h) (temperature 1/α), updated cache."""
    logits, cache = policy._cached_logits(x, prefix, h, cache)
    lp = policy._eos_mask(jax.nn.log_softmax(logits), policy._done(prefix, h))
    scaled = jnp.where(lp == -jnp.inf, -jnp.inf, alpha * (lp - jnp.max(lp)))
    return lp, jax.nn.log_softmax(scaled), cache


def _rollout_from(key, policy, x, alpha, y, t):
    """Keep y_{<t}, draw y_{t:} ~ q (temperature 1/α); per-token log π and log q of the result."""
    H = policy.horizon

    def step(carry, inp):
        buf, cache = carry
        h, k = inp
        lp, lq, cache = _step_log_probs(policy, x, buf, h, cache, alpha)
        tok = jnp.where(h < t, y[h], inverse_cdf_sample(k, lq, 1)[0])
        return (buf.at[h].set(tok), cache), (lp[tok], lq[tok])

    (buf, _), (lp_tok, lq_tok) = jax.lax.scan(step, (y, policy._init_cache(x)),
                                              (jnp.arange(H), jax.random.split(key, H)))
    return buf, lp_tok, lq_tok


def _mh_log_accept(alpha, lp_old, lq_old, lp_new, lq_new, suffix, proposal_correction=True):
    """log of the MH ratio for a suffix proposal: α Σ(log π' − log π) + Σ(log q − log q') over the suffix.

    ``proposal_correction=False`` drops the q terms (the ratio of a symmetric proposal): a deliberately
    wrong sampler, used by the tests to show that the TV test can fail.
    """
    target = alpha * jnp.sum(jnp.where(suffix, lp_new - lp_old, 0.0))
    corr = jnp.sum(jnp.where(suffix, lq_old - lq_new, 0.0))
    return target + corr if proposal_correction else target


def power_mh_sample(key: PRNGKeyArray, policy: AutoregressivePolicy, x, alpha, num_steps: int, *,
                    _proposal_correction: bool = True) -> PowerSamples:
    """One Metropolis–Hastings chain targeting π^α(·|x) (Karan & Du 2025, Algorithm 1, fixed horizon).

    Start from y ~ q (per-token temperature 1/α, H model calls). Each of ``num_steps`` steps picks
    t ~ Uniform{0, …, H−1}, proposes y' = y_{<t} · y'_{t:} with y'_{t:} ~ q(·|y_{<t}) token by token
    (H − t model calls), and accepts with probability

        min(1, π(y')^α q(y_{t:}|y_{<t}) / (π(y)^α q(y'_{t:}|y_{<t}))),

    which leaves π^α invariant (the position choice is symmetric). Returns the final state ``[H]``, the
    model calls and the number of accepted proposals. One chain per call: ``vmap`` over keys for many.
    ``num_steps = 0`` returns the temperature-1/α sample. Jit-able (``num_steps`` static).
    """
    _check_sampler_args(policy, key, x, alpha)
    num_steps = int(num_steps)
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}.")
    return _mh_jit(policy, key, jnp.asarray(x, jnp.int32), jnp.asarray(alpha, jnp.result_type(float)),
                   num_steps, bool(_proposal_correction))


def _mh_impl(policy, key, x, alpha, num_steps, proposal_correction, trajectory=False):
    H = policy.horizon
    k0, k_steps = jax.random.split(key)
    y, lp_tok, lq_tok = _rollout_from(k0, policy, x, alpha, jnp.zeros(H, jnp.int32), 0)

    def step(state, k):
        y, lp_tok, lq_tok, calls, acc = state
        kt, kp, ku = jax.random.split(k, 3)
        t = jax.random.randint(kt, (), 0, H)
        y2, lp2, lq2 = _rollout_from(kp, policy, x, alpha, y, t)
        suffix = jnp.arange(H) >= t
        log_a = _mh_log_accept(alpha, lp_tok, lq_tok, lp2, lq2, suffix, proposal_correction)
        ok = jnp.log(jax.random.uniform(ku, dtype=lp_tok.dtype)) < log_a
        pick = lambda a, b: jnp.where(ok, a, b)  # noqa: E731
        new = (pick(y2, y), pick(lp2, lp_tok), pick(lq2, lq_tok), calls + (H - t), acc + ok)
        return new, ((new[0], new[3], new[4]) if trajectory else None)

    init = (y, lp_tok, lq_tok, jnp.int32(H), jnp.int32(0))
    (y, _, _, calls, acc), traj = jax.lax.scan(step, init, jax.random.split(k_steps, num_steps))
    if trajectory:  # states after 0, 1, …, num_steps steps
        cat = lambda a, b: jnp.concatenate([a[None], b], axis=0)  # noqa: E731
        return PowerSamples(cat(init[0], traj[0]), cat(init[3], traj[1]), cat(init[4], traj[2]))
    return PowerSamples(y, calls, acc)


def power_mh_chain(key: PRNGKeyArray, policy: AutoregressivePolicy, x, alpha, num_steps: int) -> PowerSamples:
    """:func:`power_mh_sample` with the whole trajectory: states ``[num_steps + 1, H]`` after 0, 1, … steps,
    cumulative model calls ``[num_steps + 1]`` and cumulative acceptances ``[num_steps + 1]``.

    Row s has exactly the law of ``power_mh_sample(key, …, s)``'s output for the same chain, so one run gives
    the law-vs-compute curve (the ``power_sampling`` experiment).
    """
    _check_sampler_args(policy, key, x, alpha)
    num_steps = int(num_steps)
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}.")
    return _mh_traj_jit(policy, key, jnp.asarray(x, jnp.int32), jnp.asarray(alpha, jnp.result_type(float)),
                        num_steps, True, True)


_mh_traj_jit = jax.jit(_mh_impl, static_argnums=(4, 5, 6))
_mh_jit = jax.jit(_mh_impl, static_argnums=(4, 5))


def power_smc_sample(key: PRNGKeyArray, policy: AutoregressivePolicy, x, alpha, num_particles: int) -> PowerSamples:
    """Sequential Monte Carlo for π^α(·|x) with the temperature-1/α proposal, ``num_particles`` particles.

    At each position h every particle computes π_h(·|prefix) (one model call), its incremental weight
    w = π_h(v)^α / q_h(v) = Σ_u π_h(u)^α (the same for every token v, so the target π^α over prefixes is
    matched exactly by weighting before drawing), the particles are resampled multinomially by w, and each
    draws its next token from q_h. Returns the ``[N, H]`` equally weighted particles, N·H model calls, and
    log Ẑ = Σ_h log mean(w) (E[Ẑ] = Σ_y π(y|x)^α). Consistent as N → ∞; a single particle's law is off by
    O(1/N) at finite N (the Ẑ-weighted pooling of independent runs is unbiased). ``vmap`` over keys for runs.
    """
    _check_sampler_args(policy, key, x, alpha)
    N = check_positive_int(num_particles, "num_particles")
    return _smc_jit(policy, key, jnp.asarray(x, jnp.int32), jnp.asarray(alpha, jnp.result_type(float)), N)


def _smc_impl(policy, key, x, alpha, N):
    H = policy.horizon
    cache0 = jax.tree_util.tree_map(lambda c: jnp.broadcast_to(c, (N,) + jnp.shape(c)), policy._init_cache(x))

    def step(carry, inp):
        bufs, cache, log_z = carry
        h, k = inp
        k_res, k_tok = jax.random.split(k)
        lp, lq, cache = jax.vmap(lambda b, c: _step_log_probs(policy, x, b, h, c, alpha))(bufs, cache)
        log_w = jax.nn.logsumexp(jnp.where(lp == -jnp.inf, -jnp.inf, alpha * lp), axis=-1)  # [N]
        log_z = log_z + jax.nn.logsumexp(log_w) - math.log(N)
        idx = inverse_cdf_sample(k_res, log_w - jnp.max(log_w), N)
        bufs, lq = bufs[idx], lq[idx]
        cache = jax.tree_util.tree_map(lambda c: c[idx], cache)
        toks = jax.vmap(lambda kk, row: inverse_cdf_sample(kk, row, 1)[0])(jax.random.split(k_tok, N), lq)
        return (bufs.at[:, h].set(toks), cache, log_z), None

    init = (jnp.zeros((N, H), jnp.int32), cache0, jnp.zeros((), jnp.result_type(float)))
    (bufs, _, log_z), _ = jax.lax.scan(step, init, (jnp.arange(H), jax.random.split(key, H)))
    return PowerSamples(bufs, jnp.int32(N * H), log_z)


_smc_jit = jax.jit(_smc_impl, static_argnums=(4,))
