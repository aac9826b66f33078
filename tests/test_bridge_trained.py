"""A tiny model trained for seconds on a task with a known answer distribution: exact BoN / SFT targets.

The trained model's own distribution over the task's answers is computed *exactly* by scoring every answer
(+EOS); the rest of its mass (< min answer mass, checked) lies on strings that rank below every answer, so the
best-of-N law has the closed form π^BoN_N(y) = (L(y) + p(y))^N − L(y)^N (theory.md §6). Tolerances: each
empirical frequency is a mean of R Bernoulli draws, so we allow 4.5 standard deviations (sqrt(q(1−q)/R) with
q floored at 0.01); with 9 cells the false-failure rate is < 1e-4 (and seeds are fixed, so runs are repeatable).
"""

import copy
import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from sharpsim.bridge.experiments import pair_graph_diameter  # noqa: E402
from sharpsim.bridge import (  # noqa: E402
    RLHFConfig,
    SFTConfig,
    XPOConfig,
    answer_distribution,
    best_of_n,
    dpo_pairs,
    rlhf_sharpening,
    score_completions,
    sft_sharpening,
    train_answer_model,
    xpo_sharpening,
)

pytestmark = [pytest.mark.hf]


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    return train_answer_model(seed=0)


def bon_law(p, N, other):
    """Closed-form BoN law over the answers (the leftover mass ``other`` ranks below all of them)."""
    out = []
    for j, pj in enumerate(p):
        L = other + sum(q for q in p if q < pj)
        out.append((L + pj) ** N - L ** N)
    return out


def test_trained_model_learns_the_known_distribution(trained):
    model, tok, task = trained
    d = answer_distribution(model, tok, task.prompts, task.answers)
    target = torch.tensor(task.probs, dtype=torch.float32)
    # 600 training samples: a few seconds of training gets within 0.08 of the generating distribution
    assert (d - target).abs().max() < 0.08
    assert (d.sum(1) > 0.95).all()
    assert (d.argmax(1) == target.argmax(1)).all()


def test_best_of_n_matches_closed_form(trained):
    model, tok, task = trained
    d = answer_distribution(model, tok, task.prompts, task.answers).double()
    N, R = 4, 150
    prompts = [p for p in task.prompts for _ in range(R)]
    res = best_of_n(model, tok, prompts, N, max_new_tokens=5, seed=1)
    # the winner is the argmax of the rewards it reports, and its score is its log-prob
    assert torch.equal(res.indices, res.all_rewards.argmax(1))
    torch.testing.assert_close(res.scores, res.all_logps.gather(1, res.indices[:, None]).squeeze(1))
    rescored = score_completions(model, tok, prompts[:6], res.texts[:6], add_eos=True)
    torch.testing.assert_close(rescored.logps, res.scores[:6], atol=1e-4, rtol=0)
    assert res.lengths.tolist()[:6] == rescored.lengths.tolist()
    for i, p in enumerate(task.prompts):
        pi = d[i].tolist()
        other = 1 - sum(pi)
        assert other < min(pi)  # every non-answer string ranks below every answer
        law = bon_law(pi, N, other)
        wins = res.texts[i * R:(i + 1) * R]
        for a, q in zip(task.answers, law):
            freq = sum(w == a for w in wins) / R
            sd = math.sqrt(max(q, 0.01) * (1 - min(q, 0.99)) / R)
            assert abs(freq - q) < 4.5 * sd, (p, a, freq, q)


def test_sft_sharpening_reaches_the_bon_target(trained):
    model0, tok, task = trained
    model = __import__("copy").deepcopy(model0)
    base = answer_distribution(model, tok, task.prompts, task.answers)
    prompts = [p for p in task.prompts for _ in range(16)]
    correct = {p: c for p, c in zip(task.prompts, task.correct)}
    res = sft_sharpening(model, tok, prompts, SFTConfig(N=8, max_new_tokens=5, steps=40, batch_size=16,
                                                        learning_rate=3e-3, seed=0),
                         answers=[correct[p] for p in prompts], check=lambda t, a: t == a)
    assert res.metrics["queries"] == 48 * 8
    assert res.metrics["selected_self_reward"] > res.metrics["self_reward"]
    assert 0 <= res.metrics["base_accuracy"] <= res.metrics["pass_at_n"] <= 1
    after = answer_distribution(res.model, tok, task.prompts, task.answers)
    modes = base.argmax(1)
    for i in range(3):
        law = bon_law(base[i].double().tolist(), 8, 1 - float(base[i].sum()))
        # π^BoN_8(y*) >= 0.99 here; MLE on 16 picks/prompt, 40 steps: within 0.1 of the exact target
        assert after[i, modes[i]] > law[int(modes[i])] - 0.1
        assert after[i, modes[i]] > base[i, modes[i]] + 0.2


def kl_optimum(p, beta):
    """π*_β ∝ π_base^{1+1/β} restricted to the answers (theory.md §9)."""
    q = p ** (1 + 1 / beta)
    return q / q.sum(-1, keepdim=True)


@pytest.mark.slow  # ~30 s on one core: 200 full-batch steps to the convergence criterion
def test_rlhf_squared_loss_reaches_the_kl_optimum(trained, record_property):
    """Eq. 8 trained to convergence gives π ∝ π_base^{1+1/β} **on the sampled support** (theory.md §9).

    Derivation of the tolerance. Write g(y) = log π(y|x) − (1+1/β) log π_base(y|x). For a sampled pair (y, y') the
    Eq. 8 residual with r = log π_base is e = β (g(y) − g(y')). If the mean squared residual over the n complete
    pairs is ≤ L, every |e| ≤ sqrt(n·L), so along a path of d pairs |g(y) − g(y')| ≤ d·sqrt(n·L)/β. On the support
    S_x (the distinct complete strings sampled for prompt x, connected by the pairs, diameter d_x), the
    renormalised laws q = π/π(S_x) and t = π_base^{1+1/β}/Σ_S π_base^{1+1/β} satisfy
    |log q(y) − log t(y)| ≤ max_S g − min_S g ≤ d_x·sqrt(n·L)/β. Convergence criterion: L ≤ 1e-6 (measured
    independently after training by scoring every sampled string under both models), so with n ≈ 72 and
    β = 0.5 the tolerance is ≈ 0.017·d_x in log-probability.

    The mass that leaves S_x is a property of Eq. 8, which constrains only log-ratios of sampled strings: it is
    reported (``record_property("leaked_mass", …)``), not asserted. Measured with this seed: > 0.99 of every
    prompt's mass leaves the sampled support at convergence (the old test, after 30 steps, saw ~0.03 off π*_β
    only because training had barely started; the tiny experiment saw 41% leak).
    """
    model0, tok, task = trained
    beta, L_tol = 0.5, 1e-6
    prompts = [p for p in task.prompts for _ in range(24)]
    res = rlhf_sharpening(copy.deepcopy(model0), tok, prompts, RLHFConfig(
        beta=beta, loss="squared", max_new_tokens=5, steps=200, batch_size=len(prompts), learning_rate=3e-3,
        lr_schedule="constant", max_grad_norm=None, seed=0))
    d = res.data
    assert all(d["exact"])  # the texts are the sampled ids (character tokenizer), so scoring text = scoring ids
    pairs = [(d["prompt"][j], d["chosen"][j], d["rejected"][j]) for j in range(len(d["prompt"]))
             if not (d["chosen_truncated"][j] or d["rejected_truncated"][j])]
    n = len(pairs)
    assert n >= 0.9 * len(prompts)

    def logps(model, p, ys):
        return score_completions(model, tok, [p] * len(ys), ys, add_eos=True).logps.double()

    # convergence criterion, measured independently of the trainer's loss history
    resid = []
    for p in task.prompts:
        S = sorted({y for q, a, b in pairs if q == p for y in (a, b)})
        a_after, b_base = dict(zip(S, logps(res.model, p, S).tolist())), dict(zip(S, logps(model0, p, S).tolist()))
        for q, y, y2 in pairs:
            if q == p:
                g = (a_after[y] - (1 + 1 / beta) * b_base[y]) - (a_after[y2] - (1 + 1 / beta) * b_base[y2])
                resid.append(beta * g)
    loss = sum(e * e for e in resid) / n
    assert loss <= L_tol, f"Eq. 8 not converged: mean squared residual {loss:.2e} > {L_tol:.0e}"

    leaked = {}
    for p in task.prompts:
        P = [(a, b) for q, a, b in pairs if q == p]
        S = sorted({y for pr in P for y in pr})
        diam = pair_graph_diameter(S, P)
        assert diam is not None, f"prompt {p}: the sampled pairs do not connect {S}; their law is not identified"
        after, base = logps(res.model, p, S), logps(model0, p, S)
        log_q = after - torch.logsumexp(after, 0)
        log_t = (1 + 1 / beta) * base - torch.logsumexp((1 + 1 / beta) * base, 0)
        tol = max(diam, 1) * math.sqrt(n * L_tol) / beta
        err = float((log_q - log_t).abs().max())
        assert err <= tol, (p, S, err, tol)
        leaked[p] = 1.0 - float(after.exp().sum())
    record_property("leaked_mass", leaked)
    print(f"Eq. 8 at convergence (loss {loss:.1e}): mass leaving the sampled support per prompt: {leaked}")
    assert res.metrics["queries"] == 2 * len(prompts)
    assert set(res.data) >= {"prompt", "chosen", "rejected", "base_chosen_logps", "base_rejected_logps"}
    assert all(c >= r for c, r in zip(res.data["chosen_reward"], res.data["rejected_reward"]))


def test_rlhf_logistic_dpo_moves_mass_to_the_mode(trained):
    model0, tok, task = trained
    model = __import__("copy").deepcopy(model0)
    base = answer_distribution(model, tok, task.prompts, task.answers)
    prompts = [p for p in task.prompts for _ in range(24)]
    res = rlhf_sharpening(model, tok, prompts, RLHFConfig(beta=1.0, loss="logistic", max_new_tokens=5, steps=30,
                                                          batch_size=16, learning_rate=1e-3, seed=0))
    after = answer_distribution(res.model, tok, task.prompts, task.answers)
    m = base.argmax(1)
    # the logistic loss has no finite optimum on separable pairs (it keeps pushing); only the direction is tested
    assert (after[torch.arange(3), m] - base[torch.arange(3), m]).min() > 0.1, (base, after)


def test_xpo_grows_dataset_and_sharpens(trained):
    model0, tok, task = trained
    model = __import__("copy").deepcopy(model0)
    base = answer_distribution(model, tok, task.prompts, task.answers)
    cfg = XPOConfig(beta=1.0, alpha=0.01, num_iterations=6, prompts_per_iteration=6, steps_per_iteration=4,
                    batch_size=16, learning_rate=1e-3, max_new_tokens=5, seed=0)
    res = xpo_sharpening(model, tok, list(task.prompts) * 4, cfg)
    # queries counted: 2 per triple, plus Ĵ_β's selection draws (6 validation prompts × 1 draw × 7 iterates)
    assert res.metrics["dataset_size"] == 36 and res.metrics["queries"] == 72 + 6 * 7
    assert len(res.history) == 24 and len(res.metrics["j_beta_estimates"]) == 7
    after = answer_distribution(res.model, tok, task.prompts, task.answers)
    assert (after - kl_optimum(base, 1.0)).abs().max() < 0.12, (after, kl_optimum(base, 1.0))


def test_dpo_pairs_order_by_reward():
    t = dpo_pairs(["p", "q"], ["a", "b"], ["c", "d"], [1.0, 0.0], [0.5, 2.0], [-1, -2], [-3, -4])
    assert t["chosen"] == ["a", "d"] and t["rejected"] == ["c", "b"]
    assert t["base_chosen_logps"] == [-1.0, -4.0] and t["base_rejected_logps"] == [-3.0, -2.0]
