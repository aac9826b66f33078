"""Sampling: rows grouped per prompt, chunking, EOS-inclusive masks, lengths and truncation flags."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from sharpsim.bridge import char_tokenizer, sample_completions, score_ids, tiny_gpt2, tiny_llama  # noqa: E402

pytestmark = [pytest.mark.hf]


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def model_tok(request):
    tok = char_tokenizer("ab", eos="$", pad="$")  # pad == eos, like SmolLM2
    model = (tiny_gpt2 if request.param == "gpt2" else tiny_llama)(tok, seed=5)
    return model, tok


def test_greedy_rows_grouped_per_prompt_and_chunking(model_tok):
    model, tok = model_tok
    prompts = ["a", "bab", "ab"]
    # temperature 1e-4 makes sampling argmax (random tiny models have logit gaps >> 1e-4), so rows must equal
    # each prompt's greedy completion decoded alone: this checks num_return_sequences' grouping and chunking
    s = sample_completions(model, tok, prompts, 3, max_new_tokens=6, temperature=1e-4, max_batch_rows=4, seed=0)
    texts = s.texts(tok, skip_special_tokens=False)
    g = sample_completions(model, tok, prompts, 2, max_new_tokens=6, do_sample=False)
    assert g.texts(tok, skip_special_tokens=False)[::2] == texts[::3]
    for i, p in enumerate(prompts):
        alone = sample_completions(model, tok, [p], 1, max_new_tokens=6, do_sample=False)
        for j in range(3):
            assert texts[i * 3 + j] == alone.texts(tok, skip_special_tokens=False)[0]
    assert s.grouped(s.lengths).shape == (3, 3)
    # the shared-prompt-cache path and the plain num_return_sequences path give the same rows
    plain = sample_completions(model, tok, prompts, 3, max_new_tokens=6, temperature=1e-4, max_batch_rows=4,
                               seed=0, share_prompt_cache=False)
    assert plain.texts(tok, skip_special_tokens=False) == texts


def test_mask_lengths_truncation_consistent(model_tok):
    model, tok = model_tok
    eos = tok.eos_token_id
    s = sample_completions(model, tok, ["a", "bb"], 16, max_new_tokens=5, seed=0, max_batch_rows=8)
    assert s.completion_ids.shape[0] == 32
    for ids, m, n, tr in zip(s.completion_ids, s.completion_mask, s.lengths, s.truncated):
        kept = ids[m].tolist()
        assert len(kept) == int(n) and m[: int(n)].all() and not m[int(n):].any()
        if tr:
            assert eos not in kept and n == 5
        else:
            assert kept[-1] == eos and eos not in kept[:-1]
    # both kinds occur for this random model, so the test exercises both branches
    assert s.truncated.any() and (~s.truncated).any()


def test_shared_prompt_cache_keeps_the_sampling_law(model_tok):
    """First-token frequencies with and without the shared cache agree (same law, 2000 draws each; a 5-sigma
    band on each of the 3 most frequent tokens, false-failure rate < 1e-5)."""
    model, tok = model_tok
    a = sample_completions(model, tok, ["ab"], 2000, max_new_tokens=1, seed=1, max_batch_rows=500)
    b = sample_completions(model, tok, ["ab"], 2000, max_new_tokens=1, seed=2, max_batch_rows=500,
                           share_prompt_cache=False)
    ca = torch.bincount(a.completion_ids[:, 0], minlength=len(tok)).double() / 2000
    cb = torch.bincount(b.completion_ids[:, 0], minlength=len(tok)).double() / 2000
    for t in torch.argsort(ca + cb, descending=True)[:3]:
        p = float(ca[t] + cb[t]) / 2
        assert abs(float(ca[t] - cb[t])) < 5 * (2 * p * (1 - p) / 2000) ** 0.5


def test_sampling_is_seeded_and_scores_finite(model_tok):
    model, tok = model_tok
    a = sample_completions(model, tok, ["a"], 4, max_new_tokens=4, seed=7)
    b = sample_completions(model, tok, ["a"], 4, max_new_tokens=4, seed=7)
    assert torch.equal(a.completion_ids, b.completion_ids)
    sc = score_ids(model, a.prompt_ids, a.prompt_mask, a.completion_ids, a.completion_mask)
    assert torch.isfinite(sc.logps).all() and (sc.logps < 0).all()


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("share", [True, False])
def test_generation_logps_equal_teacher_forcing(arch, share):
    """Issue 14: log-probs read from the generation pass's raw temperature-1 logits (float32) equal teacher-forced
    scoring. Catches: processed scores (temperature / top-k applied), an off-by-one between logits and tokens, EOS
    dropped when pad == eos, padding positions counted."""
    from sharpsim.bridge import char_tokenizer, sample_completions, score_ids, tiny_gpt2, tiny_llama

    tok = char_tokenizer("ab", pad="$")  # pad == eos, as in SmolLM2
    model = (tiny_gpt2 if arch == "gpt2" else tiny_llama)(tok, seed=3)
    s = sample_completions(model, tok, ["a", "ab", "bab"], 5, max_new_tokens=6, seed=0, return_logps=True,
                           max_batch_rows=8, share_prompt_cache=share)
    sc = score_ids(model, s.prompt_ids, s.prompt_mask, s.completion_ids, s.completion_mask)
    assert s.token_logps.dtype == torch.float32
    torch.testing.assert_close(s.logps, sc.logps.float(), atol=1e-4, rtol=0)
    assert (s.token_logps[~s.completion_mask.bool()] == 0).all()


def test_generation_logps_refused_when_the_law_is_not_pi():
    from sharpsim.bridge import char_tokenizer, sample_completions, tiny_gpt2

    tok = char_tokenizer("ab")
    model = tiny_gpt2(tok, seed=3)
    with pytest.raises(ValueError, match="return_logps"):
        sample_completions(model, tok, ["a"], 2, max_new_tokens=3, temperature=0.7, return_logps=True)
    s = sample_completions(model, tok, ["a"], 2, max_new_tokens=3, seed=0)
    with pytest.raises(ValueError, match="return_logps=True"):
        s.logps


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_shared_prefix_prefill_and_row_dropping_keep_logps_and_greedy(arch):
    """The bridge's decoding loop pre-fills a prefix shared by the chunk's prompts once (MIN_SHARED_PREFIX tokens
    or more, padding then sits between prefix and rest) and drops rows after their EOS. Prompts of different
    lengths with a 9-token common start: log-probs still equal teacher forcing (a wrong position, mask or dropped
    cache row would change them), and greedy rows equal generate's (share_prompt_cache=False)."""
    from sharpsim.bridge import _sampling, _scoring

    tok = char_tokenizer("ab", pad="$")
    model = (tiny_gpt2 if arch == "gpt2" else tiny_llama)(tok, seed=4)
    prompts = ["ababbabab" + t for t in ("a", "bba", "b", "abab")]
    assert _scoring.MIN_SHARED_PREFIX <= 9
    s = sample_completions(model, tok, prompts, 6, max_new_tokens=7, seed=3, return_logps=True, max_batch_rows=24)
    assert s.truncated.any() and (~s.truncated).any()  # rows leave the batch at different steps
    sc = score_ids(model, s.prompt_ids, s.prompt_mask, s.completion_ids, s.completion_mask)
    torch.testing.assert_close(s.logps, sc.logps.float(), atol=1e-4, rtol=0)
    g = sample_completions(model, tok, prompts, 1, max_new_tokens=7, do_sample=False, return_logps=True)
    gsc = score_ids(model, g.prompt_ids, g.prompt_mask, g.completion_ids, g.completion_mask)
    torch.testing.assert_close(g.logps, gsc.logps.float(), atol=1e-4, rtol=0)  # greedy tokens' log π, too
    ref = sample_completions(model, tok, prompts, 1, max_new_tokens=7, do_sample=False, share_prompt_cache=False)
    assert g.texts(tok, skip_special_tokens=False) == ref.texts(tok, skip_special_tokens=False)
    assert type(model).__name__ not in _sampling._CACHE_FALLBACK  # the loop ran, not generate


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_decoding_loop_has_the_law_of_generate(arch):
    """Whole-completion frequencies from the bridge's loop (inverse-CDF draws, rows dropped after EOS, shared
    prefix) against generate's (share_prompt_cache=False), 3000 draws each, max_new_tokens = 2: for the 4 most
    frequent completions |f_a − f_b| < 5 sd of the difference (false-failure rate < 1e-5 in all). A wrong
    draw (e.g. searchsorted without right=True, or an off-by-one in the CDF) moves mass between tokens."""
    tok = char_tokenizer("ab", pad="$")
    model = (tiny_gpt2 if arch == "gpt2" else tiny_llama)(tok, seed=6)
    prompts = ["ababbabab"]
    a = sample_completions(model, tok, prompts, 3000, max_new_tokens=2, seed=11, max_batch_rows=1000)
    b = sample_completions(model, tok, prompts, 3000, max_new_tokens=2, seed=12, max_batch_rows=1000,
                           share_prompt_cache=False)
    from collections import Counter

    fa, fb = Counter(a.texts(tok, skip_special_tokens=False)), Counter(b.texts(tok, skip_special_tokens=False))
    for text, _ in (fa + fb).most_common(4):
        pa, pb = fa[text] / 3000, fb[text] / 3000
        p = (pa + pb) / 2
        assert abs(pa - pb) < 5 * (2 * p * (1 - p) / 3000) ** 0.5 + 1e-12, (text, pa, pb)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_shared_prefix_scoring_and_gradients_equal_the_plain_pass(arch, monkeypatch):
    """Teacher-forced scores and their gradients (training uses the same pass) with the rows' common start run
    once equal those of the plain pass (MIN_SHARED_PREFIX raised so that nothing is shared)."""
    from sharpsim.bridge import _scoring
    from sharpsim.bridge._algorithms import sequence_logps

    tok = char_tokenizer("ab", pad="$")
    model = (tiny_gpt2 if arch == "gpt2" else tiny_llama)(tok, seed=8)
    prompts = [tok("ababbaba" + t).input_ids for t in ("ab", "b", "bbab")]
    comps = [tok(c).input_ids + [tok.eos_token_id] for c in ("a", "bab", "")]

    def run():
        model.zero_grad()
        lp = sequence_logps(model, prompts, comps, tok.pad_token_id)
        lp.sum().backward()
        return lp.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    shared, g_shared = run()
    monkeypatch.setattr(_scoring, "MIN_SHARED_PREFIX", 10**6)
    plain, g_plain = run()
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=0)
    assert len(g_shared) == len(g_plain) > 0
    for a, b in zip(g_shared, g_plain):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
