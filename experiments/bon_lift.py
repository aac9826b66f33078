"""Inference-time best-of-N lift over greedy decoding vs N: the analogue of the paper's Figure 1 (and Figs. 2–4, 6).

The paper (App. A; theory.md §12) samples N ≤ 50 responses at temperature 1, keeps the one with the highest
self-reward, and reports the % lift in accuracy over greedy decoding, (acc_BoN − acc_greedy)/acc_greedy. Its
findings: log-prob BoN beats greedy for many (model, task) pairs and saturates around N ≈ 10–20; it degrades
with N when likelihood is a poor signal, e.g. when BoN prefers short high-likelihood answers without chain of
thought (gpt-3.5 on GSM8k); length-normalised log-prob and majority vote behave alike with larger gains.

**Simulated tasks.** Each trial draws a task of X prompts, each with its own Markov policy over
Y = V^H (token 0 = EOS, answer tokens 1..m, reasoning tokens m+1..m+k). A response is up to H−2 reasoning
tokens, one answer token, then EOS; its extracted answer is that answer token, correct iff it equals the
prompt's hidden answer a*(x). Per prompt:

* each reasoning token r has a confidence κ_r ~ U(0, κ_max); its rows are softmax(κ_r · noise) for the next
  reasoning token and softmax(κ_r·bonus·e_{a*} + noise) for the answer (unit Gaussian noise) — a confused
  token answers at random, a confident one answers a* with a peaked row, so confident responses are both
  likely and right: the "sharpening mechanism";
* the first token is a strategy r ~ Dirichlet(1) *independent* of κ, so greedy decoding is myopic: it follows
  the most probable first step whether or not what follows is confident;
* with probability s ~ U(shortcut_lo, shortcut_hi) the first token is a *shortcut*: an answer right away
  (guess ~ softmax(guess_kappa · noise), correct only by chance), then EOS. Two tokens with a near-certain
  EOS make these the most likely whole responses although they are rarely correct.

Families (settings): ``likelihood_correct`` (shortcut mass 0: correctness correlates with likelihood) and
``short_wrong`` (shortcut mass 0.2–0.4); full mode adds ``weak_signal`` (small bonus: confidence barely
predicts correctness). Per trial: greedy accuracy (exact); BoN accuracy under r_self = log π exactly from the
law π^BoN_N (:func:`sharpsim.exact.bon_log_probs` over all responses of positive probability) and by Monte
Carlo; length-normalised log-prob and majority vote (answers extracted from responses) by Monte Carlo (the
paper's protocol: N_max = 50 samples per prompt, N < 50 by taking the first N; the samples are drawn by the
inverse CDF from the exact law over the enumerated responses — the same distribution as token-by-token
sampling, with one random draw per trial, which keeps the compiled program small); Pass@N (exact skyline);
E[log π(BoN_N)] (exact) and a few sampled responses' log-probabilities for the histogram.
"""

from __future__ import annotations

import itertools
import math
import pathlib
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from sharpsim import rewards
from sharpsim.decoding import greedy
from sharpsim.exact import bon_log_probs_grid
from sharpsim.policies import MarkovPolicy
from sharpsim.runner import Check, Experiment, column, pivot, rows_where

#: Best-of-N sizes (the paper's N = 1..50; N < 50 from the first N of 50 samples).
N_GRID = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50)
N_MAX = N_GRID[-1]
#: Sampled responses per trial kept for the log-probability histogram (first sample of the first prompts).
HIST_PROMPTS = 16
#: Monte-Carlo self-rewards: (metric suffix, reward factory).
MC_REWARDS = ("logprob", "lennorm", "majority")
BOOTSTRAP = 1000
EOS = 0

_FAMILIES = {
    # name: generator parameters (traced, so every family shares one compile per shape)
    "likelihood_correct": dict(shortcut_lo=0.0, shortcut_hi=0.0, kappa_max=4.0, bonus=2.0, guess_kappa=4.0,
                               stop_lo=0.3, stop_hi=0.7),
    "short_wrong": dict(shortcut_lo=0.2, shortcut_hi=0.4, kappa_max=4.0, bonus=2.0, guess_kappa=4.0,
                        stop_lo=0.3, stop_hi=0.7),
    "weak_signal": dict(shortcut_lo=0.0, shortcut_hi=0.0, kappa_max=4.0, bonus=0.25, guess_kappa=4.0,
                        stop_lo=0.3, stop_hi=0.7),
}
_PARAM_NAMES = tuple(_FAMILIES["likelihood_correct"])


# ------------------------------------------------------------------------------------------ settings
def settings(mode: str) -> list:
    if mode == "quick":
        shape = dict(num_prompts=32, answers=4, reasoning=3, horizon=5)
        return [dict(family=f, **shape, **_FAMILIES[f]) for f in ("likelihood_correct", "short_wrong")]
    shapes = [dict(num_prompts=256, answers=4, reasoning=3, horizon=5),
              dict(num_prompts=256, answers=6, reasoning=4, horizon=6)]
    return [dict(family=f, **shape, **p) for shape in shapes for f, p in _FAMILIES.items()]


# ------------------------------------------------------------------------------------------ the task
def task_policy(key, params: dict, *, num_prompts: int, answers: int, reasoning: int, horizon: int):
    """A random task: ``(MarkovPolicy over X prompts, a* [X] answer token ids)`` (see the module docstring).

    All randomness comes from ONE uniform draw, transformed (normal by the inverse CDF, Dirichlet(1) by
    normalised exponentials): every ``jax.random`` call inlines its own counter-based hash, and on CPU
    compiling nine of them under ``vmap`` costs far more than the experiment itself.
    """
    X, m, k, H = num_prompts, answers, reasoning, horizon
    V = 1 + m + k
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


def canonical_responses(answers: int, reasoning: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Every response of positive probability: L ≤ H−2 reasoning tokens, an answer, EOS padding.

    Returns ``(responses [R, H] int32, answer token [R])``; R = m·Σ_L k^L, far fewer than V^H.
    """
    m, k, H = answers, reasoning, horizon
    seqs, ans = [], []
    for L in range(H - 1):
        for steps in itertools.product(range(1 + m, 1 + m + k), repeat=L):
            for a in range(1, m + 1):
                seqs.append(list(steps) + [a] + [EOS] * (H - L - 1))
                ans.append(a)
    return np.asarray(seqs, np.int32), np.asarray(ans, np.int32)


def extract_answer(responses, answers: int):
    """The first answer token (ids 1..m) of each response ``[..., H]``; −1 when there is none."""
    is_ans = (responses >= 1) & (responses <= answers)
    first = jnp.argmax(is_ans, axis=-1)
    tok = jnp.take_along_axis(responses, first[..., None], axis=-1)[..., 0]
    return jnp.where(jnp.any(is_ans, axis=-1), tok, -1)


# ------------------------------------------------------------------------------------------ one trial
def bon_law(log_probs, Ns):
    """π^BoN_N(·|x) under r_self = log π for every N in ``Ns`` at once: ``[len(Ns), R]`` probabilities.

    One sort serves the whole grid (:func:`sharpsim.exact.bon_log_probs_grid`), which keeps the compiled
    program small.
    """
    return jnp.exp(bon_log_probs_grid(log_probs, Ns))


def first_n_choice(scores, Ns):
    """Index of the best-of-N response among the first N of ``scores [N_MAX]`` for every N: ``[len(Ns)]``.

    Ties go to the first maximiser, as in :func:`sharpsim.algorithms.select_best`.
    """
    from sharpsim.algorithms._best_of_n import best_of_first_n

    return best_of_first_n(scores, Ns)


def first_n_majority(answers, Ns):
    """Majority vote among the first N responses for every N: ``[len(Ns), N_MAX]`` vote counts, i.e.
    :func:`sharpsim.rewards.majority` applied to the first N (later responses get −inf)."""
    live = jnp.arange(answers.shape[-1])[None, :] < jnp.asarray(Ns)[:, None]  # [G, N_MAX]
    same = (answers[:, None] == answers[None, :]).astype(jnp.result_type(float))  # [N_MAX, N_MAX]
    votes = live.astype(same.dtype) @ same.T  # votes[g, i] = #{j < N_g : ans_j = ans_i}
    return jnp.where(live, votes, -jnp.inf)


#: Largest number of floats of the [trials, X, len(N_GRID), R] BoN law held at once (larger: trials in batches).
MAX_LAW_FLOATS = 2**27


def _trial_batch(trials: int, num_prompts: int, answers: int, reasoning: int, horizon: int):
    """``None`` (one vmap over all trials) when the BoN law fits in :data:`MAX_LAW_FLOATS`, else a batch size."""
    R = answers * sum(reasoning**L for L in range(horizon - 1))
    per_trial = num_prompts * len(N_GRID) * R
    return None if trials * per_trial <= MAX_LAW_FLOATS else max(1, MAX_LAW_FLOATS // per_trial)


@partial(jax.jit, static_argnames=("num_prompts", "answers", "reasoning", "horizon", "batch"))
def _trials(keys, params, *, num_prompts, answers, reasoning, horizon, batch=None):
    X, m = num_prompts, answers
    seqs_np, seq_ans_np = canonical_responses(answers, reasoning, horizon)
    seqs, seq_ans = jnp.asarray(seqs_np), jnp.asarray(seq_ans_np)
    Ns = jnp.asarray(N_GRID)
    lengths = rewards.sequence_lengths(seqs, EOS)  # [R]: tokens up to and including EOS
    lennorm = rewards.length_normalized(eos_id=EOS)

    def one(key):
        k_task, k_sample = jax.random.split(key)
        pi, a_star = task_policy(k_task, params, num_prompts=X, answers=m, reasoning=reasoning, horizon=horizon)
        xs = jnp.arange(X)
        # Exact law over every response of positive probability (teacher-forced log π of the policy).
        lp = pi.log_prob(xs[:, None], seqs[None, :, :])  # [X, R]
        correct = seq_ans[None, :] == a_star[:, None]  # [X, R]
        total_mass = jnp.exp(jax.nn.logsumexp(lp, axis=-1))  # == 1 when the enumeration is complete
        p_correct = jnp.sum(jnp.where(correct, jnp.exp(lp), 0.0), axis=-1)
        bon = jax.vmap(lambda row: bon_law(row, Ns))(lp)  # [X, G, R]
        exact_acc = jnp.mean(jnp.sum(bon * correct[:, None, :], axis=-1), axis=0)
        exact_ll = jnp.mean(jnp.sum(bon * jnp.where(jnp.isfinite(lp), lp, 0.0)[:, None, :], axis=-1), axis=0)
        pass_n = jnp.mean(1.0 - (1.0 - p_correct[:, None]) ** Ns[None, :].astype(lp.dtype), axis=0)
        # Greedy decoding.
        y_g, lp_g = jax.vmap(lambda x: greedy(pi, x))(xs)
        greedy_acc = jnp.mean(extract_answer(y_g, m) == a_star)
        # Monte Carlo: N_MAX i.i.d. responses per prompt (inverse CDF on the exact law over the enumerated
        # responses, i.e. the sample-and-evaluate oracle of π; one uniform draw), BoN_N from the first N.
        cdf = jnp.cumsum(jnp.exp(lp), axis=-1)
        u = jax.random.uniform(k_sample, (X, N_MAX)) * cdf[:, -1:]
        idx = jnp.minimum(jax.vmap(lambda c, uu: jnp.searchsorted(c, uu, side="right"))(cdf, u), seqs.shape[0] - 1)
        s_lp = jnp.take_along_axis(lp, idx, axis=1)  # [X, N_MAX]
        s_ok = jnp.take_along_axis(correct, idx, axis=1)
        s_seqs = seqs[idx]  # [X, N_MAX, H]
        scores = {"logprob": rewards.log_prob(xs, s_seqs, s_lp), "lennorm": lennorm(xs, s_seqs, s_lp)}
        mc = {name: jax.vmap(first_n_choice, (0, None))(sc, Ns) for name, sc in scores.items()}  # [X, G]
        mc["majority"] = jax.vmap(lambda a: jnp.argmax(first_n_majority(a, Ns), axis=-1))(seq_ans[idx])
        mc = {name: jnp.mean(jnp.take_along_axis(s_ok, j, axis=1), axis=0) for name, j in mc.items()}
        first = dict(lp=s_lp[:HIST_PROMPTS, 0], correct=s_ok[:HIST_PROMPTS, 0], length=lengths[idx[:HIST_PROMPTS, 0]])
        return dict(exact_acc=exact_acc, exact_ll=exact_ll, pass_n=pass_n, greedy_acc=greedy_acc,
                    greedy_ll=jnp.mean(lp_g), mc=mc, first=first,
                    min_mass=jnp.min(total_mass), max_mass=jnp.max(total_mass),
                    p_star=jnp.mean(jnp.exp(jnp.max(lp, axis=-1))),
                    c_cov=jnp.mean(jnp.exp(-jnp.max(lp, axis=-1))))

    if batch is None:
        return jax.vmap(one)(keys)
    return jax.lax.map(one, keys, batch_size=batch)  # vmap over batches of trials, to bound memory


def run_setting(keys, setting: dict, mode: str) -> list:
    params = {p: jnp.asarray(setting[p], jnp.result_type(float)) for p in _PARAM_NAMES}
    shape = dict(num_prompts=int(setting["num_prompts"]), answers=int(setting["answers"]),
                 reasoning=int(setting["reasoning"]), horizon=int(setting["horizon"]))
    X = shape["num_prompts"]
    out = jax.tree_util.tree_map(np.asarray, _trials(keys, params, **shape,
                                                     batch=_trial_batch(keys.shape[0], **shape)))
    mass_err = max(abs(float(out["min_mass"].min()) - 1.0), abs(float(out["max_mass"].max()) - 1.0))
    if mass_err > 1e-3:  # the canonical responses must carry all the mass for the exact law to be exact
        raise AssertionError(f"canonical responses carry mass in [{out['min_mass'].min()}, {out['max_mass'].max()}]")
    rows = []
    for t in range(keys.shape[0]):
        rows.append(dict(trial=t, queries=0, metric="greedy_acc", value=float(out["greedy_acc"][t])))
        rows.append(dict(trial=t, queries=0, metric="greedy_logprob", value=float(out["greedy_ll"][t])))
        rows.append(dict(trial=t, queries=0, metric="argmax_mass", value=float(out["p_star"][t])))
        rows.append(dict(trial=t, queries=0, metric="coverage_coefficient", value=float(out["c_cov"][t])))
        for i, N in enumerate(N_GRID):
            q = N * X
            rows.append(dict(trial=t, queries=q, N=N, metric="bon_logprob_exact", value=float(out["exact_acc"][t, i])))
            rows.append(dict(trial=t, queries=q, N=N, metric="bon_logprob_exact_loglik", value=float(out["exact_ll"][t, i])))
            rows.append(dict(trial=t, queries=q, N=N, metric="pass_at_n", value=float(out["pass_n"][t, i])))
            for name in MC_REWARDS:
                rows.append(dict(trial=t, queries=q, N=N, metric=f"bon_{name}_mc", value=float(out["mc"][name][t, i])))
        f = out["first"]
        for j in range(f["lp"].shape[1]):
            rows.append(dict(trial=t, queries=1, metric="sample_logprob", value=float(f["lp"][t, j]),
                             correct=int(f["correct"][t, j]), length=int(f["length"][t, j])))
    return rows


# ------------------------------------------------------------------------------------------ analysis
def _matrix(rows, metric) -> np.ndarray:
    """[trials, len(N_GRID)] for a per-N metric."""
    return pivot(rows_where(rows, metric=metric), "trial", "N", column_values=N_GRID)


def _per_trial(rows, metric) -> np.ndarray:
    sub = sorted(rows_where(rows, metric=metric), key=lambda r: r["trial"])
    return column(sub, "value").astype(float)


def _n90(lift: np.ndarray) -> float:
    """Smallest N of the grid where the lift reaches 90% of its N = 50 value (NaN when that value is ≤ 0)."""
    final = lift[..., -1]
    reached = lift >= 0.9 * final[..., None]
    first = np.argmax(reached, axis=-1)
    return np.where(final > 0, np.asarray(N_GRID, float)[first], np.nan)


def _family_stats(rows) -> dict:
    greedy_acc = _per_trial(rows, "greedy_acc")
    T = greedy_acc.size
    rng = np.random.default_rng(0)
    boot = rng.integers(0, T, size=(BOOTSTRAP, T))
    g_mean, g_boot = greedy_acc.mean(), greedy_acc[boot].mean(axis=1)
    curves = {}
    for metric in ["bon_logprob_exact", "pass_at_n"] + [f"bon_{n}_mc" for n in MC_REWARDS]:
        A = _matrix(rows, metric)
        acc, acc_boot = A.mean(axis=0), A[boot].mean(axis=1)  # [G], [B, G]
        lift, lift_boot = acc / g_mean - 1.0, acc_boot / g_boot[:, None] - 1.0
        se = A.std(axis=0, ddof=1) / math.sqrt(T) if T > 1 else np.full(len(N_GRID), np.nan)
        curves[metric] = dict(
            acc=acc.tolist(), acc_se=se.tolist(),
            acc_lower=np.percentile(acc_boot, 2.5, axis=0).tolist(), acc_upper=np.percentile(acc_boot, 97.5, axis=0).tolist(),
            lift=lift.tolist(), lift_lower=np.percentile(lift_boot, 2.5, axis=0).tolist(),
            lift_upper=np.percentile(lift_boot, 97.5, axis=0).tolist())
        if metric == "bon_logprob_exact":
            inc, inc_boot = np.diff(acc), np.diff(acc_boot, axis=1)
            j = int(np.argmin(inc))
            curves[metric]["min_increment"] = dict(value=float(inc[j]), between=[N_GRID[j], N_GRID[j + 1]],
                                                   lower=float(np.percentile(inc_boot[:, j], 2.5)),
                                                   upper=float(np.percentile(inc_boot[:, j], 97.5)))
            n90_boot = _n90(lift_boot)
            finite = np.isfinite(n90_boot).any()  # resamples with a non-positive lift at N = 50 have no N_90
            curves[metric]["n90"] = dict(value=float(_n90(lift)),
                                         lower=float(np.nanpercentile(n90_boot, 2.5)) if finite else math.nan,
                                         upper=float(np.nanpercentile(n90_boot, 97.5)) if finite else math.nan)
            drop, drop_boot = acc[-1] - acc[0], acc_boot[:, -1] - acc_boot[:, 0]
            curves[metric]["acc50_minus_acc1"] = dict(value=float(drop), lower=float(np.percentile(drop_boot, 2.5)),
                                                      upper=float(np.percentile(drop_boot, 97.5)))
    # Exact law vs Monte Carlo under the same self-reward (a correctness check of both).
    diff = _matrix(rows, "bon_logprob_mc") - _matrix(rows, "bon_logprob_exact")
    z = diff.mean(axis=0) / np.maximum(diff.std(axis=0, ddof=1) / math.sqrt(T), 1e-12) if T > 1 else np.zeros(1)
    loglik = _matrix(rows, "bon_logprob_exact_loglik").mean(axis=0)
    samples = rows_where(rows, metric="sample_logprob")
    return dict(trials=T, greedy_acc=float(g_mean),
                greedy_acc_interval=[float(np.percentile(g_boot, 2.5)), float(np.percentile(g_boot, 97.5))],
                greedy_logprob=float(_per_trial(rows, "greedy_logprob").mean()),
                argmax_mass=float(_per_trial(rows, "argmax_mass").mean()),
                coverage_coefficient=float(_per_trial(rows, "coverage_coefficient").mean()),
                bon_loglik=loglik.tolist(), curves=curves, mc_vs_exact_max_abs_z=float(np.max(np.abs(z))),
                sample_accuracy=float(np.mean([r["correct"] for r in samples])) if samples else math.nan,
                mean_logprob_correct=float(np.mean([r["value"] for r in samples if r["correct"]] or [np.nan])),
                mean_logprob_wrong=float(np.mean([r["value"] for r in samples if not r["correct"]] or [np.nan])))


def _lift_check(quantity, fam, stats, metric, want_positive, note_extra=""):
    c = stats["curves"][metric]
    v, lo, hi = c["lift"][-1], c["lift_lower"][-1], c["lift_upper"][-1]
    right, wrong = (lo > 0, hi < 0) if want_positive else (hi < 0, lo > 0)
    verdict = "consistent" if right else "inconsistent" if wrong else "inconclusive"  # interval across 0
    return Check(quantity, 0.0, v, lo, hi, verdict,
                 f"predicted: {'> 0' if want_positive else '< 0'}. Family {fam}: % lift at N = {N_MAX} = {100 * v:.1f}% "
                 f"(95% bootstrap over {stats['trials']} tasks [{100 * lo:.1f}%, {100 * hi:.1f}%]); accuracy "
                 f"{c['acc'][-1]:.3f} vs greedy {stats['greedy_acc']:.3f}. {note_extra}").as_dict()


def analyze(rows: list, mode: str) -> dict:
    families = [f for f in _FAMILIES if rows_where(rows, family=f)]
    out: dict = {"N": list(N_GRID), "families": {}}
    checks = []
    for fam in families:
        sub = rows_where(rows, family=fam)
        shapes = sorted({(r["num_prompts"], r["answers"], r["reasoning"], r["horizon"]) for r in sub})
        # One setting per (family, shape); the report uses the first shape, others are in "families".
        for shape in shapes:
            key = fam if shape == shapes[0] else f"{fam}[X={shape[0]},m={shape[1]},k={shape[2]},H={shape[3]}]"
            out["families"][key] = _family_stats(rows_where(sub, num_prompts=shape[0], answers=shape[1],
                                                            reasoning=shape[2], horizon=shape[3]))
            out["families"][key]["shape"] = dict(num_prompts=shape[0], answers=shape[1], reasoning=shape[2], horizon=shape[3])
            out["families"][key]["family"] = fam

    fams = out["families"]
    if "likelihood_correct" in fams:
        st = fams["likelihood_correct"]
        c = st["curves"]["bon_logprob_exact"]
        mi = c["min_increment"]
        checks.append(Check(
            "BoN(log-prob) accuracy is non-decreasing in N (family likelihood_correct)", 0.0, mi["value"], mi["lower"],
            mi["upper"], "consistent" if mi["upper"] >= 0 else "inconsistent",
            f"predicted: every increment ≥ 0. Smallest increment of the exact BoN accuracy between consecutive N of "
            f"{list(N_GRID)} is {mi['value']:+.4f} (between N = {mi['between']}; 95% bootstrap over tasks); accuracy "
            f"{c['acc'][0]:.3f} at N = 1 (temperature-1 sampling) → {c['acc'][-1]:.3f} at N = {N_MAX}.").as_dict())
        checks.append(_lift_check("BoN(log-prob) beats greedy at N = 50 (family likelihood_correct)",
                                  "likelihood_correct", st, "bon_logprob_exact", True,
                                  f"Exact law (π^BoN_N); Monte Carlo agrees (max |z| over N = {st['mc_vs_exact_max_abs_z']:.2f})."))
        n90 = c["n90"]
        in_range = math.isfinite(n90["lower"]) and n90["lower"] <= 20 and n90["upper"] >= 10
        checks.append(Check(
            "lift saturates by N ≈ 10–20: N where the log-prob lift reaches 90% of its N = 50 value "
            "(family likelihood_correct)", 15.0, n90["value"], n90["lower"], n90["upper"],
            "consistent" if in_range else "inconsistent",
            f"predicted: the paper's observation N ≈ 10–20 (an empirical finding on LLMs, not a theorem; here it is set "
            f"by the simulated task: mean π(y*|x) = {st['argmax_mass']:.3f}, C_cov = E[1/π(y*|x)] = "
            f"{st['coverage_coefficient']:.2f}, and Prop. C.1 gives P[BoN ∉ y*] ≤ e^(−N π(y*))). Measured N_90 = "
            f"{n90['value']:g} on the grid {list(N_GRID)}, 95% bootstrap [{n90['lower']:g}, {n90['upper']:g}]; "
            f"verdict consistent iff that interval meets [10, 20].").as_dict())
        for r in ("lennorm", "majority"):
            checks.append(_lift_check(f"BoN({'length-normalised log-prob' if r == 'lennorm' else 'majority vote'}) "
                                      f"beats greedy at N = 50 (family likelihood_correct)",
                                      "likelihood_correct", st, f"bon_{r}_mc", True, "Monte Carlo."))
    if "short_wrong" in fams:
        st = fams["short_wrong"]
        c = st["curves"]["bon_logprob_exact"]
        d = c["acc50_minus_acc1"]
        checks.append(Check(
            "BoN(log-prob) degrades with N (family short_wrong)", 0.0, d["value"], d["lower"], d["upper"],
            "consistent" if d["upper"] < 0 else "inconsistent" if d["lower"] > 0 else "inconclusive",
            f"predicted: acc(N = {N_MAX}) − acc(N = 1) < 0. Exact BoN accuracy {c['acc'][0]:.3f} at N = 1 → "
            f"{c['acc'][-1]:.3f} at N = {N_MAX} (95% bootstrap of the difference over tasks); % lift over greedy "
            f"({st['greedy_acc']:.3f}) at N = {N_MAX}: {100 * c['lift'][-1]:.1f}% "
            f"[{100 * c['lift_lower'][-1]:.1f}%, {100 * c['lift_upper'][-1]:.1f}%]. Sampled responses: mean log-prob "
            f"{st['mean_logprob_correct']:.2f} if correct vs {st['mean_logprob_wrong']:.2f} if wrong.").as_dict())
        checks.append(_lift_check("BoN(log-prob) is below greedy at N = 50 (family short_wrong)", "short_wrong", st,
                                  "bon_logprob_exact", False, "Exact law."))
        for r in ("lennorm", "majority"):
            checks.append(_lift_check(f"BoN({'length-normalised log-prob' if r == 'lennorm' else 'majority vote'}) "
                                      f"rescues the lift at N = 50 (family short_wrong)", "short_wrong", st,
                                      f"bon_{r}_mc", True,
                                      f"Monte Carlo; compare BoN(log-prob) at {100 * c['lift'][-1]:.1f}% on the same tasks."))
    # Exact law vs Monte Carlo across all families: |z| of the mean difference, Bonferroni over the N grid.
    zmax = max(s["mc_vs_exact_max_abs_z"] for s in fams.values())
    crit = float(scipy.stats.norm.ppf(1 - 0.025 / (len(N_GRID) * len(fams))))
    checks.append(Check(
        "exact BoN law (π^BoN_N) = Monte-Carlo BoN under r_self = log π", 0.0, zmax, -crit, crit,
        "consistent" if zmax <= crit else "inconsistent",
        f"largest |z| of the mean (MC − exact) accuracy over N and families; lower/upper: the two-sided 95% "
        f"critical value with Bonferroni over {len(N_GRID) * len(fams)} comparisons.").as_dict())
    out["checks"] = checks
    out["lift_at_50"] = {k: {m: v["curves"][m]["lift"][-1] for m in v["curves"]} for k, v in fams.items()}
    return out


# ------------------------------------------------------------------------------------------ figures
_STYLE = {
    "bon_logprob_exact": ("log-prob (exact law)", "C0", "-"),
    "bon_logprob_mc": ("log-prob (Monte Carlo)", "C0", "none"),
    "bon_lennorm_mc": ("length-normalised log-prob", "C1", "--"),
    "bon_majority_mc": ("majority vote", "C2", "-."),
    "pass_at_n": ("Pass@N (skyline)", "C7", ":"),
}


def plot(rows: list, summary: dict, out_dir) -> list:
    from sharpsim.plotting import new_figure, save_figure

    out_dir = pathlib.Path(out_dir)
    N = np.asarray(summary["N"], float)
    fams = summary["families"]
    paths = []
    fig, axes = new_figure(len(fams) + 1, width=4.6, height=3.8)
    for ax, (name, st) in zip(axes, fams.items()):
        for metric, (label, color, ls) in _STYLE.items():
            c = st["curves"].get(metric)
            if c is None:
                continue
            y = 100 * np.asarray(c["lift"])
            if ls == "none":
                ax.plot(N, y, "o", color=color, ms=3, mfc="none", label=label)
            else:
                ax.plot(N, y, ls=ls, color=color, label=label)
                ax.fill_between(N, 100 * np.asarray(c["lift_lower"]), 100 * np.asarray(c["lift_upper"]),
                                color=color, alpha=0.15)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel("N (responses per prompt)")
        ax.set_ylabel("% lift in accuracy over greedy")
        ax.set_title(f"{name}: greedy acc {st['greedy_acc']:.2f} ({st['trials']} tasks)", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6, loc="best")
    ax = axes[-1]
    for i, (name, st) in enumerate(fams.items()):
        ax.plot(N, st["bon_loglik"], "-", color=f"C{i + 3}", label=f"{name}: BoN(log-prob)")
        ax.axhline(st["greedy_logprob"], color=f"C{i + 3}", ls="--", lw=0.8, label=f"{name}: greedy")
    ax.set_xlabel("N")
    ax.set_ylabel("E[log π(selected response)]  (exact)")
    ax.set_title("likelihood of the BoN response (cf. Fig. 4)", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    paths += save_figure(fig, out_dir / "bon_lift")

    fig, axes = new_figure(len(fams), width=4.6, height=3.6)
    for ax, (name, st) in zip(axes, fams.items()):
        shape = st["shape"]
        sub = [r for r in rows if r["metric"] == "sample_logprob" and r["family"] == st["family"]
               and all(r[k] == v for k, v in shape.items())]
        lp = np.asarray([r["value"] for r in sub], float)
        ok = np.asarray([r["correct"] for r in sub], bool)
        if lp.size:
            bins = np.linspace(np.floor(lp.min()), 0.0, 30)
            ax.hist(lp[ok], bins=bins, density=True, alpha=0.55, color="C2", label=f"correct ({ok.sum()})")
            ax.hist(lp[~ok], bins=bins, density=True, alpha=0.55, color="C3", label=f"incorrect ({(~ok).sum()})")
        ax.set_xlabel("log π(y|x) of a sampled response (N = 1)")
        ax.set_ylabel("density")
        ax.set_title(f"{name}: log-prob by correctness (cf. Figs. 1c, 6)", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    paths += save_figure(fig, out_dir / "bon_lift_logprob_hist")
    return paths


EXPERIMENT = Experiment(
    name="bon_lift",
    title="Inference-time best-of-N lift over greedy vs N (Figure 1 analogue on simulated tasks)",
    claim=("Best-of-N under the log-probability self-reward lifts accuracy over greedy decoding and saturates "
           "in N when correct responses are the likely ones, and degrades with N when the likeliest responses are "
           "short wrong answers, where length-normalised log-prob or majority vote can still help."),
    paper_refs=("Figure 1", "Figures 2-4, 6", "Appendix A.1-A.2", "Proposition C.1"),
    instance=("random tasks of X prompts, each a Markov policy (EOS, answer and reasoning tokens; responses = "
              "reasoning steps, an answer, EOS) whose confident reasoning rows are mostly right; family "
              "short_wrong adds a 2-token shortcut answer that is correct only by chance"),
    sweep="N = 1..50 (first N of 50 samples); families likelihood_correct and short_wrong (full: also weak_signal, a larger shape)",
    algorithms=("greedy", "best_of_n with r_self = log π (exact law bon_log_probs, and Monte Carlo)",
                "best_of_n with length-normalised log π", "best_of_n with majority vote", "Pass@N skyline"),
    bounds=(),
    predicted=("likelihood_correct: BoN(log-prob) accuracy non-decreasing in N, positive lift, saturating by "
               "N ≈ 10–20 (paper); short_wrong: BoN(log-prob) accuracy decreasing in N and below greedy, "
               "length-normalisation / majority vote positive"),
    how_to_read=("Each panel of bon_lift is one task family: the % lift in accuracy of best-of-N over greedy "
                 "decoding, (acc_BoN − acc_greedy)/acc_greedy, against N, for the self-rewards log-prob (solid: the "
                 "exact law of BoN; circles: Monte Carlo, which should sit on it), length-normalised log-prob and "
                 "majority vote (Monte Carlo), with Pass@N as the skyline; bands are 95% bootstrap intervals over "
                 "tasks. Where the sharpening mechanism holds (likelihood_correct) the log-prob curve rises and "
                 "flattens, like Fig. 1b; where the likeliest responses are short wrong answers (short_wrong) it "
                 "falls below zero as N grows, like gpt-3.5 on GSM8k, while length-normalisation and majority "
                 "vote may stay positive. The last panel is the mean log-likelihood of the selected response "
                 "(cf. Fig. 4). bon_lift_logprob_hist shows the log-probabilities of single sampled responses split "
                 "by correctness (cf. Figs. 1c, 6): the correct ones should sit to the right when the mechanism holds."),
    settings=settings,
    run_setting=run_setting,
    analyze=analyze,
    plot=plot,
    trials={"quick": 64, "full": 256},
)
