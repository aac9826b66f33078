"""Issue 14: the bridge's stopping rule, counted queries, the SharpeningResult shape, and XPO's iterate selection
by estimated J_β (Algorithm 1 returns argmax_t Ĵ_β(π^(t)), not the last iterate)."""

import copy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from sharpsim.bridge import RLHFConfig, XPOConfig, char_tokenizer, rlhf_sharpening, tiny_gpt2, xpo_sharpening  # noqa: E402
from sharpsim.bridge._algorithms import convergence_record, converged  # noqa: E402

pytestmark = [pytest.mark.hf]


def test_stopping_rule_is_a_pure_function_of_the_history():
    # catches: a rule that stops while the loss still falls fast, or never stops on a plateau / below the floor
    falling = [1.0 / (k + 1) for k in range(40)]
    assert not converged(falling, tol=0.01, window=10)
    assert converged([0.5] * 20, tol=0.01, window=10)  # plateau: no relative improvement
    assert converged([1.0] * 10 + [2.0] * 10, tol=0.01, window=10)  # rising
    assert converged([1e-7] * 10, tol=0.01, window=10, floor=1e-6)  # under the floor after one window
    assert not converged([1e-7] * 9, tol=0.01, window=10, floor=1e-6)  # fewer than one window
    assert not converged([0.5] * 20, tol=None, window=10)
    rec = convergence_record([{"loss": v} for v in [4.0] + [1.0] * 29], 100, 0.01, 10)
    assert rec["steps_run"] == 30 and rec["final_loss"] == 1.0 and rec["first_loss"] == 4.0 and rec["converged"]


def test_rlhf_stops_at_the_criterion_and_counts_queries():
    tok = char_tokenizer("ab")
    model = tiny_gpt2(tok, seed=1)
    prompts = ["a", "b", "ab"] * 4
    res = rlhf_sharpening(model, tok, prompts, RLHFConfig(
        beta=0.5, max_new_tokens=4, steps=500, batch_size=len(prompts), learning_rate=1e-2, lr_schedule="constant",
        max_grad_norm=None, seed=0, stop_tol=0.01, stop_window=10, stop_loss=1e-4))
    # catches: the cap being run regardless of the rule, or the record disagreeing with the history
    assert res.convergence["converged"] and res.convergence["steps_run"] == len(res.history) < 500
    assert converged([h["loss"] for h in res.history], 0.01, 10, 1e-4)
    assert not converged([h["loss"] for h in res.history[:-1]], 0.01, 10, 1e-4)
    # SharpeningResult shape: num_queries counted from the rows drawn (2 per prompt), policy is the model
    assert res.num_queries == res.metrics["queries"] == 2 * len(prompts)
    assert res.policy is res.model and set(res.diagnostics) == {"metrics", "history", "convergence"}
    assert all(v.requires_grad for v in res.params.values()) and res.params


def test_xpo_returns_the_iterate_with_the_largest_estimated_j_beta():
    tok = char_tokenizer("ab")
    model0 = tiny_gpt2(tok, seed=2)
    prompts = ["a", "b", "ab", "ba"]
    # a learning rate far too large wrecks the policy, so Ĵ_β falls and argmax_t Ĵ_β is an early iterate
    cfg = XPOConfig(beta=1.0, alpha=0.5, num_iterations=3, prompts_per_iteration=4, steps_per_iteration=3,
                    batch_size=4, learning_rate=3.0, max_new_tokens=4, seed=0, selection_samples=4)
    res = xpo_sharpening(copy.deepcopy(model0), tok, prompts, cfg)
    j = res.metrics["j_beta_estimates"]
    assert len(j) == 4 and res.metrics["selected_iteration"] == max(range(4), key=lambda t: j[t])
    last = xpo_sharpening(copy.deepcopy(model0), tok, prompts, dataclass_replace(cfg, select="last"))
    same = all(torch.equal(a, b) for a, b in zip(res.model.parameters(), last.model.parameters()))
    # catches: returning the last iterate whatever Ĵ_β says
    assert same == (res.metrics["selected_iteration"] == 3)
    if res.metrics["selected_iteration"] == 0:
        assert all(torch.equal(a, b) for a, b in zip(res.model.parameters(), model0.parameters()))
    # queries: 2 per triple + one per selection draw scored under π_base (4 prompts × 4 draws × 4 iterates)
    assert res.num_queries == 2 * 3 * 4 + 4 * 4 * 4
    assert last.num_queries == 2 * 3 * 4


def dataclass_replace(cfg, **kw):
    import dataclasses

    return dataclasses.replace(cfg, **kw)
