"""Issue 12, bridge part: a deliberate thread count per phase (restored afterwards) and float32 scoring whatever
autocast the caller or an accelerate/TRL wrapper left on. Each test names the old behaviour it catches."""

import copy
from types import MethodType

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from sharpsim.bridge import (  # noqa: E402
    char_tokenizer,
    choose_threads,
    fine_tune,
    float32_forward,
    sample_completions,
    score_completions,
    tiny_gpt2,
    torch_threads,
)
from sharpsim.bridge import _runtime  # noqa: E402

pytestmark = [pytest.mark.hf]

PROMPTS, COMPLETIONS = ["ab", "ba", "a"], ["abba", "b", "aab"]


@pytest.fixture(scope="module")
def model_tok():
    tok = char_tokenizer("ab")
    return tiny_gpt2(tok, n_positions=32, seed=3), tok


@pytest.fixture
def seen_threads(model_tok):
    """Record torch.get_num_threads() inside every forward pass of the model."""
    model, _ = model_tok
    seen = []
    handle = model.register_forward_pre_hook(lambda mod, args: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    yield seen
    handle.remove()
    torch.set_num_threads(before)


@pytest.fixture
def caller_threads(monkeypatch):
    """The caller runs with 2 threads (the bridge must not keep a different setting after returning)."""
    monkeypatch.delenv(_runtime.THREADS_ENV, raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)


def test_tiny_model_phases_run_single_threaded_and_restore(model_tok, seen_threads, caller_threads):
    """Old: every phase ran with the caller's (default = all cores) count: 125 s vs 3.9 s training under load."""
    model, tok = model_tok
    score_completions(model, tok, PROMPTS, COMPLETIONS)
    assert seen_threads and set(seen_threads) == {1}
    assert torch.get_num_threads() == caller_threads
    seen_threads.clear()
    sample_completions(model, tok, ["a"], 2, max_new_tokens=2, seed=0)
    assert seen_threads and set(seen_threads) == {1}
    assert torch.get_num_threads() == caller_threads
    m2 = copy.deepcopy(model)  # training changes the weights: train a copy, with its own hook
    seen2 = []
    m2.register_forward_pre_hook(lambda mod, args: seen2.append(torch.get_num_threads()))
    fine_tune(m2, tok, ["a", "b"], ["b", "a"], steps=2, batch_size=1)
    assert seen2 and set(seen2) == {1}
    assert torch.get_num_threads() == caller_threads


def test_explicit_thread_count_wins_and_is_restored(model_tok, seen_threads, caller_threads):
    model, tok = model_tok
    with torch_threads(3) as n:
        assert n == 3 and torch.get_num_threads() == 3
        score_completions(model, tok, PROMPTS, COMPLETIONS)
    assert set(seen_threads) == {3}
    assert torch.get_num_threads() == caller_threads
    with pytest.raises(RuntimeError):
        with torch_threads(1):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == caller_threads  # restored on the error path too
    with pytest.raises(ValueError, match="num_threads must be an integer >= 1"):
        with torch_threads(0):
            pass


def test_environment_and_large_model_rule(model_tok, caller_threads, monkeypatch):
    model, _ = model_tok
    monkeypatch.setenv(_runtime.THREADS_ENV, "2")
    assert choose_threads(model, "scoring") == 2
    monkeypatch.setenv(_runtime.THREADS_ENV, "zero")
    with pytest.raises(ValueError, match="SHARPSIM_TORCH_THREADS must be a positive integer"):
        choose_threads(model, "scoring")
    monkeypatch.delenv(_runtime.THREADS_ENV)
    assert choose_threads(model, "generation") == 1  # tiny model: one thread
    monkeypatch.setattr(_runtime, "SMALL_MODEL_PARAMS", 0)  # pretend it is large
    assert choose_threads(model, "training") == min(caller_threads, _runtime._available_cpus())
    with pytest.raises(ValueError, match="phase must be one of"):
        choose_threads(model, "decoding")


def test_scores_are_float32_under_a_bf16_autocast(model_tok):
    """Old: a caller's ``torch.autocast("cpu", bfloat16)`` ran the scoring matmuls in bf16 (~1e-3 nats off)."""
    model, tok = model_tok
    ref = score_completions(model, tok, PROMPTS, COMPLETIONS).logps
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        # the autocast really changes a plain forward pass (so this test can fail) ...
        ids = torch.tensor([[3, 4, 3, 3]])
        plain = model(input_ids=ids).logits.float()
        with float32_forward(model):
            exact = model(input_ids=ids).logits
        assert (plain - exact).abs().max() > 1e-4
        # ... but not the bridge's scores
        under = score_completions(model, tok, PROMPTS, COMPLETIONS).logps
    torch.testing.assert_close(under, ref, atol=1e-6, rtol=0)


def test_scores_are_float32_for_an_accelerate_wrapped_model(model_tok):
    """accelerate's ``prepare_model(mixed_precision="bf16")`` (what a TRL trainer does) replaces ``model.forward``
    by an autocast-wrapped one and keeps the original as ``model._original_forward`` (accelerate 1.15,
    accelerator.py). An outer ``autocast(enabled=False)`` cannot undo an inner autocast, so the bridge calls the
    original for its own passes and puts the wrapper back. Old: 1.5e-3 nats off the float32 value."""
    model0, tok = model_tok
    model = copy.deepcopy(model0)
    ref = score_completions(model, tok, PROMPTS, COMPLETIONS).logps
    model._original_forward = model.forward
    wrapped = MethodType(torch.autocast(device_type="cpu", dtype=torch.bfloat16)(model.forward.__func__), model)
    model.forward = wrapped
    ids = torch.tensor([[3, 4, 3, 3]])
    with torch.no_grad():
        drift = (model(input_ids=ids).logits.float() - model0(input_ids=ids).logits).abs().max()
    assert drift > 1e-4  # the wrapper really runs in bf16
    got = score_completions(model, tok, PROMPTS, COMPLETIONS).logps
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)
    assert model.__dict__["forward"] is wrapped  # the caller's wrapper is back in place


def test_study_threads_follow_idle_cpus_not_the_load_average(monkeypatch):
    """The SmolLM2 studies used the 1-minute load average, which remembered the previous study and the run's own
    earlier settings, so every setting on an idle 2-core machine got 1 thread. Now: the CPUs idle right now."""
    import os

    from sharpsim.bridge import experiments

    monkeypatch.delenv(_runtime.THREADS_ENV, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (5.0, 5.0, 5.0))  # a busy past must not matter
    monkeypatch.setattr(_runtime, "_available_cpus", lambda: 4)
    for idle, want in ((4, 4), (9, 4), (2, 2), (0, 1), (None, 1)):
        monkeypatch.setattr(_runtime, "idle_cpus", lambda idle=idle: idle)
        assert experiments.study_threads() == want
    monkeypatch.setenv(_runtime.THREADS_ENV, "3")
    assert experiments.study_threads() == 3


def test_idle_cpus_is_a_count_of_this_process_cpus():
    n = _runtime.idle_cpus(0.05)
    assert n is None or 0 <= n <= _runtime._available_cpus()
