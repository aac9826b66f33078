"""The paper's autoregressive instances: Proposition 3.1 (greedy decoding), E.1 (MAX-CUT) and E.2 (non-closure).

Token conventions: the paper's V = {−1, +1} of Proposition E.1 is token ids {0, 1} (value 2t − 1); the
paper's V = [n] of Proposition E.2 is token ids {0, …, n−1} (paper token i ↔ id i − 1), so the paper's
argmax (2, 1) is the id sequence (1, 0). Positions are 0-indexed in code (paper's y_h is ``y[h-1]``).
"""

from __future__ import annotations

import itertools
import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from sharpsim._fit import projected_fit
from sharpsim._validation import check_positive, check_positive_int
from sharpsim.policies._linear_softmax import LinearSoftmaxPolicy, project_to_norm_ball
from sharpsim.policies._markov import MarkovPolicy

__all__ = [
    "random_markov_policy",
    "planted_argmax_markov",
    "greedy_counterexample",
    "maxcut_features",
    "maxcut_instance",
    "maxcut_log_prob_formula",
    "cut_value",
    "brute_force_maxcut",
    "sequence_to_assignment",
    "random_graph",
    "nonclosure_features",
    "nonclosure_instance",
    "nonclosure_class_sup",
    "nonclosure_best_in_class",
    "nonclosure_fit",
    "reasoning_task",
    "reasoning_task_responses",
    "reasoning_task_table",
    "ReasoningTable",
    "extract_answer",
]


# ==================================================================================================
# Proposition 3.1: greedy decoding succeeds when π(y*|x) > 1/2, and only then in general
# ==================================================================================================
def random_markov_policy(
    key: PRNGKeyArray, *, num_prompts: int, vocab_size: int, horizon: int, scale: float = 1.0,
    eos_id: int | None = None,
) -> MarkovPolicy:
    """A Markov policy with logits ``scale · N(0, 1)`` (larger ``scale``: sharper conditionals)."""
    shape = (check_positive_int(num_prompts, "num_prompts"), check_positive_int(horizon, "horizon"),
             check_positive_int(vocab_size, "vocab_size") + 1, vocab_size)
    return MarkovPolicy.from_logits(scale * jax.random.normal(key, shape), eos_id=eos_id)


def planted_argmax_markov(
    key: PRNGKeyArray, *, num_prompts: int, vocab_size: int, horizon: int, target_mass: float,
    logit_scale: float = 1.0,
) -> tuple[MarkovPolicy, Int[Array, "X H"]]:
    """A random Markov policy whose sequence y*(x) (drawn uniformly) has mass exactly ``target_mass``.

    Along the path of y*(x) each conditional is π_h(y*_h | y*_{h-1}, x) = target_mass^{1/H}; all other
    mass of those rows, and all other rows, are softmax(``logit_scale`` · N(0, 1)) draws. Since the path of y*(x)
    is unique, π(y*(x)|x) = target_mass exactly; when target_mass > 1/2 every other sequence has mass
    ≤ 1 − target_mass < 1/2, so y*(x) is the unique argmax — the hypothesis of Proposition 3.1.
    Returns the policy and y* as an ``[X, H]`` array.
    """
    X = check_positive_int(num_prompts, "num_prompts")
    V = check_positive_int(vocab_size, "vocab_size")
    H = check_positive_int(horizon, "horizon")
    if not 0.0 < target_mass <= 1.0:
        raise ValueError(f"target_mass must lie in (0, 1], got {target_mass}.")
    check_positive(logit_scale, "logit_scale")
    return _planted(key, jnp.asarray(float(target_mass)), jnp.asarray(float(logit_scale)), X, V, H)


@partial(jax.jit, static_argnums=(3, 4, 5))
def _planted(key, target_mass, logit_scale, X, V, H):
    k_star, k_rows, k_rest = jax.random.split(key, 3)
    y_star = jax.random.randint(k_star, (X, H), 0, V, dtype=jnp.int32)
    # softmax of Gaussian logits (Dirichlet draws would compile a slow gamma sampler)
    P = jax.nn.softmax(logit_scale * jax.random.normal(k_rows, (X, H, V + 1, V)), axis=-1)
    rest = jax.nn.softmax(logit_scale * jax.random.normal(k_rest, (X, H, V - 1)), axis=-1)
    q = target_mass ** (1.0 / H)
    prev = jnp.concatenate([jnp.full((X, 1), V, jnp.int32), y_star[:, :-1]], axis=1)  # [X, H]

    def planted_row(star, r):  # q on the planted token, (1 − q)·r spread over the others
        others = jnp.arange(V - 1) + (jnp.arange(V - 1) >= star)
        return jnp.zeros(V).at[star].set(q).at[others].set((1.0 - q) * r)

    rows = jax.vmap(jax.vmap(planted_row))(y_star, rest)  # [X, H, V]
    xi, hi = jnp.meshgrid(jnp.arange(X), jnp.arange(H), indexing="ij")
    P = P.at[xi, hi, prev].set(rows)
    return MarkovPolicy(log_probs=jnp.log(P).astype(jnp.result_type(float))), y_star


def greedy_counterexample(target_mass: float, *, vocab_size: int = 2, horizon: int = 2) -> tuple[MarkovPolicy, np.ndarray]:
    """Tightness of Proposition 3.1: a unique argmax y* with π(y*) = p ≤ 1/2 that greedy decoding misses.

    Tokens a = 1, b = 0. The first token is a with probability p and b with 1 − p ≥ 1/2 (greedy takes b;
    at p = 1/2 by the lowest-id tie rule). After a the policy repeats a surely, so y* = (a, …, a) has mass
    p; after b it is uniform (and absorbed into a once it emits a), so every sequence starting with b has
    mass ≤ (1 − p)/V < p. Needs 1/(V + 1) < p ≤ 1/2 and H ≥ 2. Returns the policy and y*.
    """
    V = check_positive_int(vocab_size, "vocab_size")
    H = check_positive_int(horizon, "horizon")
    p = float(target_mass)
    if V < 2 or H < 2:
        raise ValueError(f"a greedy counterexample needs vocab_size >= 2 and horizon >= 2, got V={V}, H={H}.")
    if not 1.0 / (V + 1) < p <= 0.5:
        raise ValueError(f"target_mass must lie in (1/(V+1), 1/2] = ({1 / (V + 1):.4g}, 0.5], got {p}.")
    a, b = 1, 0
    P = np.full((1, H, V + 1, V), 1.0 / V)
    P[0, 0, V] = 0.0
    P[0, 0, V, a], P[0, 0, V, b] = p, 1.0 - p
    P[0, 1:, a] = np.eye(V)[a]
    return MarkovPolicy.from_probs(P), np.full(H, a, np.int32)


# ==================================================================================================
# Proposition E.1: NP-hardness of the sequence argmax via MAX-CUT
# ==================================================================================================
def _pm1(y, h, H):
    """Token ids {0, 1} → spins {−1, +1} for positions ≤ h, 0 for the padding after h."""
    return jnp.where(jnp.arange(H) <= h, 2.0 * y - 1.0, 0.0)


def maxcut_features(horizon: int):
    """φ_h(⊥, y_{1:h}) = (y_i)_i ⊕ (y_i y_j)_{i,j} ⊕ (y_i y_j y_k)_{i,j,k} ∈ ℝ^{H + H² + H³} (Prop. E.1).

    Spins of positions after h are 0. Coordinate order: i, then (i, j) row-major, then (i, j, k) row-major.
    """
    H = check_positive_int(horizon, "horizon")

    def features(x, y, h):
        s = _pm1(y, h, H)
        return jnp.concatenate([s, jnp.outer(s, s).ravel(), jnp.einsum("i,j,k->ijk", s, s, s).ravel()])

    return features


def maxcut_instance(
    adjacency, *, norm_bound: float | None = None, coupling_scale: float = 1.0
) -> LinearSoftmaxPolicy:
    """The Proposition E.1 reduction: a linear-softmax policy whose sequence argmax encodes a maximum cut.

    For a graph G on n nodes: H = n + 2, X = {⊥}, V = {−1, +1}, θ_1 = … = θ_{H−2} = 0 (uniform spins),
    θ_{H−1} = Σ_{i,j ≤ H−2} J_ij e_{(i,j,H−1)} with J = −A(G), θ_H = (B/2)(e_{(H−1,H)} + e_H), B = H by
    default. With s(y) = Σ_ij J_ij y_i y_j = 4·cut(y) − 2|E| and y_{H−1} = y_H = +1,
    2^{H−2} π_θ(y) = σ(2s)·σ(2B); every other y has 2^{H−2} π_θ(y) ≤ 1/2. When |E| is odd (so s > 0 at
    a max cut), the argmax has y_{H−1} = y_H = +1 and its first H − 2 spins form a maximum cut.
    ‖θ_h‖ ≤ max(√(2|E|), B/√2) ≤ B(H) = H, so the instance lies in Π_{φ,H,H}.

    **Floating point.** Cuts differ in log π by log σ(2s) − log σ(2s') ≈ e^{−2s'}, which vanishes against
    the (H−2) log 2 of the uniform prefix once s ≳ 8 (float32) or s ≳ 17 (float64): the paper's θ then
    makes many cuts tie *numerically*. ``coupling_scale`` c multiplies J (θ_{H−1} = c Σ J_ij e_{(i,j,H−1)}).
    The reduction survives any c > 0 with σ(2c·s_max)σ(2B) > 1/2 (true for c ≥ 1/|E| when B = H ≥ 4,
    since s_max ≥ 2): the other branches stay ≤ 1/2 and the main branch is still increasing in the cut.
    c = 1/|E| keeps every gap ≥ ~1/|E| and is what the tests use in float32; c = 1 is the paper's θ.
    """
    A = np.asarray(adjacency, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"adjacency must be a square [n, n] matrix, got shape {A.shape}.")
    if not np.array_equal(A, A.T) or np.any(np.diag(A) != 0) or not np.all(np.isin(A, (0.0, 1.0))):
        raise ValueError("adjacency must be a symmetric 0/1 matrix with a zero diagonal (a simple graph).")
    n = A.shape[0]
    H = n + 2
    B = float(H if norm_bound is None else norm_bound)
    d = H + H**2 + H**3
    theta = np.zeros((H, d))
    J = -A
    cube = np.zeros((H, H, H))
    check_positive(coupling_scale, "coupling_scale")
    cube[:n, :n, H - 2] = float(coupling_scale) * J
    theta[H - 2, H + H**2:] = cube.ravel()
    pair = np.zeros((H, H))
    pair[H - 2, H - 1] = 1.0
    theta[H - 1, H:H + H**2] = (B / 2) * pair.ravel()
    theta[H - 1, H - 1] += B / 2
    bound = max(B, float(np.sqrt(np.sum(A))))
    return LinearSoftmaxPolicy.create(jnp.asarray(theta, dtype=jnp.result_type(float)), maxcut_features(H),
                                      num_prompts=1, vocab_size=2, norm_bound=bound)


def maxcut_log_prob_formula(
    adjacency, spins, norm_bound: float | None = None, coupling_scale: float = 1.0
) -> float:
    """log π_θ(y) from the closed form of Prop. E.1 for y = (spins, +1, +1): log(σ(2cs)σ(2B)) − (H−2) log 2."""
    A = np.asarray(adjacency, dtype=np.float64)
    s_vec = np.asarray(spins, dtype=np.float64)
    H = A.shape[0] + 2
    B = float(H if norm_bound is None else norm_bound)
    s = -float(coupling_scale) * (s_vec @ A @ s_vec)
    log_sig = lambda z: -np.logaddexp(0.0, -z)  # noqa: E731
    return float(log_sig(2 * s) + log_sig(2 * B) - (H - 2) * math.log(2.0))


def cut_value(adjacency, spins) -> int:
    """Number of edges between the two sides of a ±1 assignment."""
    A = np.asarray(adjacency)
    s = np.asarray(spins)
    return int(np.sum(np.triu(A, 1) * (s[:, None] != s[None, :])))


def brute_force_maxcut(adjacency) -> tuple[int, np.ndarray]:
    """Maximum cut by enumerating all 2^n assignments; returns (value, a maximising ±1 assignment)."""
    A = np.asarray(adjacency)
    n = A.shape[0]
    spins = np.array(list(itertools.product((-1, 1), repeat=n)))
    cuts = np.einsum("ij,bi,bj->b", np.triu(A, 1), spins, -spins)  # Σ_{i<j} A_ij (−s_i s_j)
    cut = (cuts + np.sum(np.triu(A, 1))) / 2
    i = int(np.argmax(cut))
    return int(cut[i]), spins[i]


def sequence_to_assignment(y) -> np.ndarray:
    """The first H − 2 tokens of a Prop. E.1 sequence as ±1 spins."""
    y = np.asarray(y)
    return 2 * y[:-2].astype(int) - 1


def random_graph(seed: int, num_nodes: int, edge_prob: float = 0.5, *, odd_edges: bool = True) -> np.ndarray:
    """An Erdős–Rényi adjacency matrix; with ``odd_edges`` an edge is toggled to make |E| odd (Prop. E.1)."""
    rng = np.random.default_rng(seed)
    n = check_positive_int(num_nodes, "num_nodes")
    if odd_edges and n < 2:
        raise ValueError("a graph with an odd number of edges needs at least 2 nodes.")
    upper = np.triu(rng.random((n, n)) < edge_prob, 1)
    if odd_edges and upper.sum() % 2 == 0:
        i, j = sorted(rng.choice(n, 2, replace=False))
        upper[i, j] = ~upper[i, j]
    A = (upper | upper.T).astype(np.int64)
    return A


# ==================================================================================================
# Proposition E.2: the linear-softmax class is not closed under sharpening
# ==================================================================================================
def nonclosure_features(x, y, h):
    """φ_1(i) = e_1 if i ∈ {1, 2} else e_2;  φ_2(i, j) = e_1 if (i, j) = (2, 1), e_2 if i = 2, j ≠ 1, 0 if i ≠ 2.

    Paper token i is id i − 1 (so i ∈ {1, 2} ↔ id ≤ 1, i = 2 ↔ id 1, j = 1 ↔ id 0).
    """
    e1, e2 = jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0])
    first = jnp.where(y[0] <= 1, e1, e2)
    second = jnp.where(y[0] == 1, jnp.where(y[1] == 0, e1, e2), jnp.zeros(2))
    return jnp.where(h == 0, first, second)


def nonclosure_instance(n: int, norm_bound: float | None = None) -> LinearSoftmaxPolicy:
    """π_base = π_{θ*} of Proposition E.2: V = [n], H = d = 2, θ*_1 = θ*_2 = B e_1 with B = log n by default.

    π_base(2, 1) = [1/(2 + (n−2)e^{−B})]·[1/(1 + (n−1)e^{−B})] is the unique sequence argmax (paper ids
    (2, 1) = code ids (1, 0)), yet every π_θ in the class has π_θ(2, 1) ≤ π_θ(2) ≤ 1/2 because
    φ_1(1) = φ_1(2) (see :func:`nonclosure_class_sup`). Greedy decoding ties at the first token between
    paper tokens 1 and 2 and, by the lowest-id rule, takes 1 — missing the argmax; temperature → 0 picks
    the argmax with probability only → 1/2.
    """
    n = check_positive_int(n, "n")
    if n < 3:
        raise ValueError(f"Proposition E.2 needs n >= 3 tokens, got {n}.")
    B = float(math.log(n) if norm_bound is None else norm_bound)
    check_positive(B, "norm_bound")
    theta = jnp.array([[B, 0.0], [B, 0.0]], dtype=jnp.result_type(float))
    return LinearSoftmaxPolicy.create(theta, nonclosure_features, num_prompts=1, vocab_size=n, norm_bound=B)


def nonclosure_class_sup(n: int, norm_bound: float) -> float:
    """sup_{‖θ_h‖ ≤ B'} π_θ(2, 1) in the Prop. E.2 class, in closed form [DERIVED].

    π_θ(2) = 1/(2 + (n−2)e^{a_2 − a_1}) and π_θ(1|2) = 1/(1 + (n−1)e^{b_2 − b_1}) separate; each is maximised
    on its ball by a_1 = −a_2 = B'/√2, giving [1/(2 + (n−2)e^{−√2B'})]·[1/(1 + (n−1)e^{−√2B'})] < 1/2.
    """
    t = math.exp(-math.sqrt(2.0) * float(norm_bound))
    return 1.0 / (2.0 + (n - 2) * t) / (1.0 + (n - 1) * t)


def nonclosure_fit(theta0, norm_bound, *, n: int, steps: int = 300, learning_rate: float = 0.1):
    """Projected Adam on −log π_θ(2, 1) over the Prop. E.2 class {‖θ_h‖ ≤ ``norm_bound``}, started at ``theta0``.

    Pure and jit-able (``n``, ``steps`` and ``learning_rate`` static; ``theta0`` and ``norm_bound`` traced, so
    random starts vmap). Adam with b2 = 0.9 (short memory: the gradient decays fast near the sup), through the
    one fit loop :func:`sharpsim._fit.projected_fit`. Returns (π_θ(2, 1) at the fitted θ, θ).
    """
    base = nonclosure_instance(n)
    target = jnp.array([1, 0], jnp.int32)  # the paper's (2, 1)

    def loss(theta):
        return -base.with_theta(theta).log_prob(0, target)

    theta, _, _ = projected_fit(loss, theta0, lambda t: project_to_norm_ball(t, norm_bound),
                                optax.adam(learning_rate, b2=0.9), steps)
    return jnp.exp(-loss(theta)), theta


def nonclosure_best_in_class(
    n: int, norm_bound: float, *, steps: int = 300, learning_rate: float = 0.1
) -> tuple[float, Float[Array, "2 2"]]:
    """Numerically maximise π_θ(2, 1) over the class with ‖θ_h‖ ≤ ``norm_bound`` (projected Adam from θ = 0).

    Returns (the best probability found, θ). Independent of the closed form in :func:`nonclosure_class_sup`:
    it only uses the policy's own teacher-forced ``log_prob`` (:func:`nonclosure_fit`).
    """
    steps = check_positive_int(steps, "steps")
    theta0 = jnp.zeros((2, 2), jnp.result_type(float))
    prob, theta = jax.jit(partial(nonclosure_fit, n=n, steps=steps, learning_rate=learning_rate))(theta0, norm_bound)
    return float(prob), theta


@partial(jax.jit, static_argnames=("n", "steps", "learning_rate"))
def nonclosure_restarts(keys, norm_bound, *, n: int, steps: int, learning_rate: float = 0.1):
    """:func:`nonclosure_fit` from one random start per key (θ ~ N(0, I) projected to the ball): the numerical sup
    of π_θ(2, 1) over {‖θ_h‖ ≤ B′} is the max over restarts. Returns (π_θ(2, 1) [K], max_h ‖θ_h‖ [K]); one compile
    per (n, steps), the norm bound traced."""

    def restart(key):
        theta0 = project_to_norm_ball(jax.random.normal(key, (2, 2)), norm_bound)
        prob, theta = nonclosure_fit(theta0, norm_bound, n=n, steps=steps, learning_rate=learning_rate)
        return prob, jnp.linalg.norm(theta, axis=-1).max()

    return jax.vmap(restart)(keys)


def nonclosure_base_facts(n: int) -> dict:
    """Proposition E.2's base policy π_base = π_{θ*} (B = log n) checked by enumeration: π_base(2, 1), the largest
    mass of any other pair, whether (2, 1) is the argmax, and whether greedy decoding and beam search (W = 2)
    return it."""
    from sharpsim.decoding import beam_search, greedy
    from sharpsim.policies import sequences_to_index

    base = nonclosure_instance(n)
    table = np.asarray(base.to_tabular().log_probs[0], np.float64)
    i21 = n * 1 + 0  # row-major index of ids (1, 0) = paper's (2, 1)
    y_greedy, _ = greedy(base, 0)
    beam, _ = beam_search(base, 0, 2)
    return {"base_pi21": float(np.exp(table[i21])), "base_max_other": float(np.exp(np.delete(table, i21).max())),
            "base_argmax_is_21": float(int(np.argmax(table)) == i21),
            "base_greedy_hit": float(int(sequences_to_index(y_greedy, n)) == i21),
            "base_beam2_hit": float(int(sequences_to_index(beam[0], n)) == i21)}


@partial(jax.jit, static_argnames=("vocab_size", "horizon"))
def random_markov_tables(keys, scale, *, vocab_size: int, horizon: int):
    """The log-prob tables of :func:`random_markov_policy` (X = 1, logits scale·N(0, 1)) for a batch of keys,
    ``[K, 1, H, V + 1, V]``; the scale is traced (no re-compile per value)."""
    return jax.vmap(lambda k: random_markov_policy(k, num_prompts=1, vocab_size=vocab_size, horizon=horizon,
                                                   scale=scale).log_probs)(keys)
# ==================================================================================================
# Figure 1 analogue (App. A): a task where confident reasoning is both likely and right, with optional
# short wrong answers that are likelier still (experiment bon_lift)
# ==================================================================================================
#: The end-of-sequence token of :func:`reasoning_task` (answer tokens are 1..m, reasoning tokens m+1..m+k).
REASONING_EOS = 0


def reasoning_task(key: PRNGKeyArray, params: dict, *, num_prompts: int, answers: int, reasoning: int, horizon: int):
    """A random task: ``(MarkovPolicy over X prompts, a* [X] answer token ids)``.

    Vocabulary: EOS = 0, answers 1..m, reasoning tokens m+1..m+k; a response is up to H−2 reasoning tokens,
    one answer token, then EOS, correct iff its answer is the prompt's hidden a*(x). Per prompt: each reasoning
    token r has a confidence κ_r ~ U(0, ``kappa_max``); its rows are softmax(κ_r · noise) for the next reasoning
    token and softmax(κ_r·``bonus``·e_{a*} + noise) for the answer (unit Gaussian noise), so a confident token
    answers a* with a peaked, likely row; after each reasoning step the answer comes with probability
    ~ U(``stop_lo``, ``stop_hi``). The first token is a strategy ~ Dirichlet(1) independent of κ (greedy is
    myopic), or with probability s ~ U(``shortcut_lo``, ``shortcut_hi``) an answer right away (a guess
    ~ softmax(``guess_kappa`` · noise)) then EOS: short, likely and rarely correct. ``params`` holds those
    eight (traced) values.

    All randomness comes from ONE uniform draw, transformed (normal by the inverse CDF, Dirichlet(1) by
    normalised exponentials): every ``jax.random`` call inlines its own counter-based hash, and on CPU
    compiling nine of them under ``vmap`` costs far more than an experiment with it.
    """
    X, m, k, H = num_prompts, answers, reasoning, horizon
    V, EOS = 1 + m + k, REASONING_EOS
    sizes = dict(a_star=(X,), kappa=(X, k), strategy=(X, k), s=(X,), guess=(X, m), stop=(X, H, k),
                 z_ans=(X, H, k, m), z_cont=(X, H, k, k))
    total = sum(math.prod(v) for v in sizes.values())
    tiny = jnp.finfo(jnp.result_type(float)).tiny
    u = jnp.clip(jax.random.uniform(key, (total,)), tiny, 1.0 - 1e-7)
    parts, offset = {}, 0
    for name, shape in sizes.items():
        n = math.prod(shape)
        parts[name] = u[offset:offset + n].reshape(shape)
        offset += n
    normal = jax.scipy.special.ndtri
    a_star = 1 + jnp.minimum((parts["a_star"] * m).astype(jnp.int32), m - 1)
    kappa = params["kappa_max"] * parts["kappa"]
    e = -jnp.log(parts["strategy"])
    strategy = e / jnp.sum(e, axis=-1, keepdims=True)  # Dirichlet(1, …, 1)
    s = params["shortcut_lo"] + (params["shortcut_hi"] - params["shortcut_lo"]) * parts["s"]
    guess = jax.nn.softmax(params["guess_kappa"] * normal(parts["guess"]), axis=-1)
    stop = params["stop_lo"] + (params["stop_hi"] - params["stop_lo"]) * parts["stop"]
    z_ans, z_cont = normal(parts["z_ans"]), normal(parts["z_cont"])
    target = jax.nn.one_hot(a_star - 1, m)[:, None, None, :]
    # Confidence decides correctness: the bonus for a* grows with κ_r over unit noise, so a confused token
    # (κ ≈ 0) answers at random and a confident one answers a* with a peaked, high-likelihood row.
    ans = jax.nn.softmax(kappa[:, None, :, None] * params["bonus"] * target + z_ans, axis=-1)  # [X, H, k, m]
    cont = jax.nn.softmax(kappa[:, None, :, None] * z_cont, axis=-1)  # [X, H, k, k]
    h = jnp.arange(H)[None, :, None]
    stop = jnp.where(h <= H - 3, stop, 1.0)  # the last answer slot is H−2 (EOS must fit at H−1)
    reason_rows = jnp.concatenate([jnp.zeros((X, H, k, 1)), stop[..., None] * ans, (1 - stop[..., None]) * cont], -1)
    reason_rows = reason_rows.at[:, H - 1].set(jax.nn.one_hot(EOS, V))  # unreachable; kept a valid row
    start = jnp.concatenate([jnp.zeros((X, 1)), s[:, None] * guess, (1 - s[:, None]) * strategy], -1)  # [X, V]
    P = jnp.zeros((X, H, V + 1, V))
    P = P.at[:, :, : 1 + m, :].set(jax.nn.one_hot(EOS, V))  # after EOS or an answer: EOS
    P = P.at[:, :, 1 + m: V, :].set(reason_rows)
    P = P.at[:, :, V, :].set(start[:, None, :])
    return MarkovPolicy(log_probs=jnp.log(P).astype(jnp.result_type(float)), eos_id=EOS), a_star


def reasoning_task_responses(answers: int, reasoning: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Every response of :func:`reasoning_task` with positive probability: L ≤ H−2 reasoning tokens, an answer,
    EOS padding. Returns ``(responses [R, H] int32, answer token [R])``; R = m·Σ_L k^L, far fewer than V^H."""
    m, k, H = answers, reasoning, horizon
    seqs, ans = [], []
    for L in range(H - 1):
        for steps in itertools.product(range(1 + m, 1 + m + k), repeat=L):
            for a in range(1, m + 1):
                seqs.append(list(steps) + [a] + [REASONING_EOS] * (H - L - 1))
                ans.append(a)
    return np.asarray(seqs, np.int32), np.asarray(ans, np.int32)


class ReasoningTable(NamedTuple):
    """A :func:`reasoning_task` enumerated over its responses of positive probability (see
    :func:`reasoning_task_table`)."""

    pi: MarkovPolicy
    a_star: Int[Array, " X"]
    responses: Int[Array, "R H"]
    answers: Int[Array, " R"]
    log_probs: Float[Array, "X R"]
    correct: Array  # bool [X, R]


def reasoning_task_table(key: PRNGKeyArray, params: dict, *, num_prompts: int, answers: int, reasoning: int,
                         horizon: int) -> ReasoningTable:
    """:func:`reasoning_task` and its table over the responses of :func:`reasoning_task_responses` (they carry
    all of π's mass): ``log_probs [X, R]`` = log π(y|x) and ``correct [X, R]`` = whether y answers a*(x). A
    :class:`sharpsim.TabularPolicy` of ``log_probs`` is π itself, over R responses instead of V^H sequences."""
    seqs, seq_ans = map(jnp.asarray, reasoning_task_responses(answers, reasoning, horizon))
    pi, a_star = reasoning_task(key, params, num_prompts=num_prompts, answers=answers, reasoning=reasoning,
                                horizon=horizon)
    lp = pi.log_prob(jnp.arange(num_prompts)[:, None], seqs[None, :, :])
    return ReasoningTable(pi, a_star, seqs, seq_ans, lp, seq_ans[None, :] == a_star[:, None])


def extract_answer(responses: Int[Array, "... H"], answers: int) -> Int[Array, "..."]:
    """The first answer token (ids 1..m) of each response ``[..., H]`` of :func:`reasoning_task`; −1 when none."""
    is_ans = (responses >= 1) & (responses <= answers)
    first = jnp.argmax(is_ans, axis=-1)
    tok = jnp.take_along_axis(responses, first[..., None], axis=-1)[..., 0]
    return jnp.where(jnp.any(is_ans, axis=-1), tok, -1)
