"""A tiny model trained for seconds on a task with a known answer distribution: exact BoN / SFT targets.

The trained model's own distribution over the task's answers is computed *exactly* by scoring every answer
(+EOS); the rest of its mass (< min answer mass, checked) lies on strings that rank below every answer, so the
best-of-N law has the closed form π^BoN_N(y) = (L(y) + p(y))^N − L(y)^N (theory.md §6). Tolerances: each
empirical frequency is a mean of R Bernoulli draws, so we allow 4.5 standard deviations (sqrt(q(1−q)/R) with
q floored at 0.01); with 9 cells the false-failure rate is < 1e-4 (and seeds are fixed, so runs are repeatable).
"""

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

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
    res = sft_sharpening(model, tok, prompts, SFTConfig(num_samples=8, max_new_tokens=5, steps=40, batch_size=16,
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


def test_rlhf_squared_loss_reaches_the_kl_optimum(trained):
    model0, tok, task = trained
    model = __import__("copy").deepcopy(model0)
    base = answer_distribution(model, tok, task.prompts, task.answers)
    prompts = [p for p in task.prompts for _ in range(24)]
    res = rlhf_sharpening(model, tok, prompts, RLHFConfig(beta=0.5, loss="squared", max_new_tokens=5, steps=30,
                                                          batch_size=16, learning_rate=1e-3, seed=0))
    assert res.metrics["queries"] == 2 * len(prompts)
    after = answer_distribution(res.model, tok, task.prompts, task.answers)
    target = kl_optimum(base, 0.5)  # puts 0.56-0.83 on the mode; the base has 0.41-0.54
    # With this seed the result lands within ~0.03 of π*_β. It is NOT robust to the sample draw: Eq. 8 only
    # constrains log-ratios of the sampled pairs, and with 24 pairs per prompt another draw (the tiny experiment)
    # leaked 41% of prompt b='s mass off the answer set. So we assert what held in both draws: the mode gains
    # mass on average (+0.13 and +0.30); the closed-form match itself is pinned by test_bridge_losses.py.
    m = base.argmax(1)
    assert (after[torch.arange(3), m] - base[torch.arange(3), m]).mean() > 0.05, (after, target)
    assert set(res.data) >= {"prompt", "chosen", "rejected", "ref_chosen_logps", "ref_rejected_logps"}
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
    assert res.metrics["dataset_size"] == 36 and res.metrics["queries"] == 72
    assert len(res.history) == 24
    after = answer_distribution(res.model, tok, task.prompts, task.answers)
    assert (after - kl_optimum(base, 1.0)).abs().max() < 0.12, (after, kl_optimum(base, 1.0))


def test_dpo_pairs_order_by_reward():
    t = dpo_pairs(["p", "q"], ["a", "b"], ["c", "d"], [1.0, 0.0], [0.5, 2.0], [-1, -2], [-3, -4])
    assert t["chosen"] == ["a", "d"] and t["rejected"] == ["c", "b"]
    assert t["ref_chosen_logps"] == [-1.0, -4.0] and t["ref_rejected_logps"] == [-3.0, -2.0]
