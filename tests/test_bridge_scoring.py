"""Teacher-forced scoring against a hand-computed reference (unpadded, one example at a time)."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from sharpsim.bridge import (  # noqa: E402
    char_tokenizer,
    completion_mask_from_ids,
    score_completions,
    score_ids,
    tiny_gpt2,
    tiny_llama,
)

pytestmark = [pytest.mark.hf]

PROMPTS = ["ab", "b", "abba b", "a"]
COMPLETIONS = ["ba", "aab b", "a", "bbbbbab"]


def reference_logp(model, tok, prompt, completion, eos=False):
    """Sum of token log-softmax from a single unpadded forward pass (no attention mask, default positions)."""
    p = tok(prompt)["input_ids"]
    c = tok(completion, add_special_tokens=False)["input_ids"] + ([tok.eos_token_id] if eos else [])
    ids = torch.tensor([p + c])
    with torch.no_grad():
        logits = model(ids).logits[0].double()
    lsm = logits.log_softmax(-1)
    return sum(float(lsm[len(p) - 1 + t, c[t]]) for t in range(len(c))), len(c)


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def model_tok(request):
    tok = char_tokenizer("ab ")
    model = (tiny_gpt2 if request.param == "gpt2" else tiny_llama)(tok, seed=1)
    return model, tok


def test_left_padded_batch_matches_unpadded_reference(model_tok):
    model, tok = model_tok
    s = score_completions(model, tok, PROMPTS, COMPLETIONS, batch_size=3)
    for i, (p, c) in enumerate(zip(PROMPTS, COMPLETIONS)):
        ref, n = reference_logp(model, tok, p, c)
        assert s.lengths[i] == n
        assert s.logps[i].item() == pytest.approx(ref, abs=1e-4)
    assert s.logps.dtype == torch.float32


def test_position_ids_matter_for_gpt2():
    """Without explicit position ids a left-padded GPT-2 row is shifted; our scores must not be."""
    tok = char_tokenizer("ab ")
    model = tiny_gpt2(tok, seed=3)
    ids = torch.tensor([[tok.pad_token_id] * 4 + tok("ab")["input_ids"] + tok("ba", add_special_tokens=False)["input_ids"]])
    mask = (torch.arange(ids.shape[1]) >= 4)[None].long()
    with torch.no_grad():
        naive = model(ids, attention_mask=mask).logits[0, 5:7].log_softmax(-1)
    naive = float(naive[0, ids[0, 6]] + naive[1, ids[0, 7]])
    ref, _ = reference_logp(model, tok, "ab", "ba")
    ours = score_completions(model, tok, ["ab"], ["ba"]).logps.item()
    assert ours == pytest.approx(ref, abs=1e-4)
    assert abs(naive - ref) > 1e-3  # the trap is real for this model


def test_mean_normalisation_and_add_eos(model_tok):
    model, tok = model_tok
    s_sum = score_completions(model, tok, PROMPTS, COMPLETIONS)
    s_mean = score_completions(model, tok, PROMPTS, COMPLETIONS, normalize="mean")
    torch.testing.assert_close(s_mean.values, s_sum.logps / s_sum.lengths)
    s_eos = score_completions(model, tok, PROMPTS, COMPLETIONS, add_eos=True)
    assert (s_eos.lengths == s_sum.lengths + 1).all()
    for i, (p, c) in enumerate(zip(PROMPTS, COMPLETIONS)):
        ref, _ = reference_logp(model, tok, p, c, eos=True)
        assert s_eos.logps[i].item() == pytest.approx(ref, abs=1e-4)


def test_pad_equals_eos_keeps_the_real_eos():
    tok = char_tokenizer("ab", eos="$", pad="$")
    assert tok.pad_token_id == tok.eos_token_id
    model = tiny_llama(tok, seed=2)
    eos = tok.eos_token_id
    a, b = tok.convert_tokens_to_ids("a"), tok.convert_tokens_to_ids("b")
    comp = torch.tensor([[a, b, eos, eos, eos], [a, eos, eos, eos, eos], [b, b, b, b, b]])
    mask, lengths, truncated = completion_mask_from_ids(comp, [eos])
    assert lengths.tolist() == [3, 2, 5]
    assert truncated.tolist() == [False, False, True]
    assert mask[0].tolist() == [True, True, True, False, False]
    p_ids, p_mask = torch.tensor([[a], [b], [a]]), torch.ones(3, 1, dtype=torch.bool)
    s = score_ids(model, p_ids, p_mask, comp, mask)
    ref, _ = reference_logp(model, tok, "a", "ab", eos=True)
    assert s.logps[0].item() == pytest.approx(ref, abs=1e-4)
    # the naive `token != pad` mask drops the real EOS and gets a different (wrong) score
    naive = score_ids(model, p_ids, p_mask, comp, comp != tok.pad_token_id)
    assert naive.lengths[0] == 2 and abs(naive.logps[0].item() - ref) > 1e-3


def test_grouped_completions_repeat_prompts(model_tok):
    model, tok = model_tok
    s = score_completions(model, tok, ["ab", "b"], ["a", "b", "ab", "ba"])
    ref = [reference_logp(model, tok, p, c)[0] for p, c in [("ab", "a"), ("ab", "b"), ("b", "ab"), ("b", "ba")]]
    assert s.logps.tolist() == pytest.approx(ref, abs=1e-4)


def test_repeated_rows_are_scored_once_and_copied_back(model_tok, monkeypatch):
    """score_ids forwards each distinct (prompt, completion) pair once; every row still gets its own pair's
    score, in row order (checked against the unpadded reference), and the forward pass sees only the distinct
    pairs. With dropout active every row is forwarded (identical rows may then score differently)."""
    import sharpsim.bridge._scoring as scoring
    from sharpsim.bridge import pad_left, pad_right

    model, tok = model_tok
    prompts = ["ab", "b", "ab", "ab", "b", "a"]
    comps = ["ba", "aab b", "ba", "a", "aab b", "ba"]
    seen = []
    real = scoring.completion_token_logps
    monkeypatch.setattr(scoring, "completion_token_logps",
                        lambda m, p, pm, c, cm: seen.append(c.shape[0]) or real(m, p, pm, c, cm))
    p_ids, pm = pad_left([tok(p)["input_ids"] for p in prompts], tok.pad_token_id)
    c_ids, cm = pad_right([tok(c, add_special_tokens=False)["input_ids"] for c in comps], tok.pad_token_id)
    s = score_ids(model, p_ids, pm, c_ids, cm, batch_size=64)
    assert seen == [4]  # ("ab","ba"), ("b","aab b"), ("ab","a"), ("a","ba")
    for i, (p, c) in enumerate(zip(prompts, comps)):
        assert float(s.logps[i]) == pytest.approx(reference_logp(model, tok, p, c)[0], abs=1e-4)
    assert s.lengths.tolist() == [len(c) for c in comps]
    seen.clear()
    drop = torch.nn.Dropout(0.5)
    model.add_module("_test_dropout", drop)
    try:
        model.train()
        score_ids(model, p_ids, pm, c_ids, cm, batch_size=64)
    finally:
        model.eval()
        del model._test_dropout
    assert seen == [6]


def test_training_logps_of_repeated_rows_have_the_same_gradient():
    """sequence_logps forwards a distinct row once: values and gradients equal those of the row-by-row pass."""
    from sharpsim.bridge._algorithms import _sequence_logps, sequence_logps

    tok = char_tokenizer("ab ")
    model = tiny_gpt2(tok, seed=2).train()
    P = [[3, 4], [3, 4], [4], [3, 4], [4]]
    C = [[4, 3, 1], [4, 3, 1], [3], [3], [3]]
    weights = torch.tensor([0.3, -1.0, 2.0, 0.7, 1.1])
    grads = []
    for fn in (lambda: sequence_logps(model, P, C, 0), lambda: _sequence_logps(P, C, model, 0)):
        model.zero_grad()
        lp = fn()
        (lp * weights).sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        grads.append(lp.detach())
    assert torch.allclose(grads[1], grads[3], atol=1e-6)
    for a, b in zip(grads[0], grads[2]):
        assert torch.allclose(a, b, atol=1e-5)
