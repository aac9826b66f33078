"""Issue 12, bridge part: exported SFT rows and DPO pairs round-trip through TRL's tokenization.

TRL (checked against 1.16) appends ``tokenizer.eos_token`` to every completion text and tokenizes
``prompt + completion`` itself. Old bugs each test catches:

* a truncated completion's exported log-prob had no EOS term, so it differed from what TRL scores (20 of 24 pairs,
  up to 6.9 nats) — and SFT rows taught "stop here" after a cut-off pick without saying so;
* texts were decoded with ``skip_special_tokens=True``: a sampled pad/unk vanished from the text while its
  log-prob stayed in the score (25 of 36 completions on a random tiny GPT-2 did not re-score to their export);
* the columns were named ``ref_chosen_logps`` / ``ref_rejected_logps``, which TRL's
  ``precompute_ref_log_probs=True`` refuses as duplicates (it always computes its own).

The tests that run TRL itself skip when ``trl`` is not installed (it is not a sharpsim dependency).
"""

import copy
import importlib.util
import tempfile

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from sharpsim.bridge import (  # noqa: E402
    RLHFConfig,
    SFTConfig,
    char_tokenizer,
    export_completions,
    rlhf_sharpening,
    sample_completions,
    score_completions,
    score_ids,
    sft_sharpening,
    tiny_gpt2,
    to_trl,
)
from sharpsim.bridge._algorithms import _rows_from_samples  # noqa: E402

pytestmark = [pytest.mark.hf]

PROMPTS = ["ab", "ba", "a", "bb", "aab", "b"]
HAS_TRL = importlib.util.find_spec("trl") is not None and importlib.util.find_spec("datasets") is not None


@pytest.fixture(scope="module")
def random_model():
    """An untrained tiny GPT-2: it samples pad, unk and EOS tokens freely, and is often cut at max_new_tokens."""
    torch.set_num_threads(1)
    tok = char_tokenizer("ab")
    return tiny_gpt2(tok, n_positions=32, seed=1), tok


@pytest.fixture(scope="module")
def exported(random_model):
    model, tok = random_model
    s = sample_completions(model, tok, PROMPTS, 6, max_new_tokens=5, seed=0)
    sc = score_ids(model, s.prompt_ids, s.prompt_mask, s.completion_ids, s.completion_mask)
    rows_p, rows_c = _rows_from_samples(s)
    prompts = [PROMPTS[i // 6] for i in range(len(rows_c))]
    return s, sc, prompts, rows_c, export_completions(model, tok, prompts, rows_p, rows_c, sc.logps.tolist())


def test_exported_texts_rescore_to_their_exported_logps(random_model, exported):
    model, tok = random_model
    s, sc, prompts, rows_c, ex = exported
    special = {tok.pad_token_id, tok.unk_token_id}
    # this draw really contains the two traps (so the test can fail on the old export) ...
    assert sum(any(t in special for t in c) for c in rows_c) >= 5
    assert 3 <= sum(ex["truncated"]) < len(rows_c)
    assert ex["truncated"] == s.truncated.tolist()
    assert all(ex["exact"])  # a character tokenizer re-tokenises every decoded text exactly
    # ... and every exported text, re-tokenised and scored as TRL does (EOS appended), gives its exported log-prob
    rescored = score_completions(model, tok, prompts, ex["text"], add_eos=True).logps
    torch.testing.assert_close(rescored, torch.tensor(ex["base_logps"]), atol=1e-5, rtol=0)
    # the old export (skip_special_tokens=True, no EOS term) does not
    old = score_completions(model, tok, prompts, s.texts(tok)).logps
    assert (old - sc.logps).abs().gt(1e-3).sum() >= 5
    # complete samples keep their sampled score; truncated ones gain exactly the EOS term (< 0)
    for i, t in enumerate(ex["truncated"]):
        if t:
            assert ex["base_logps"][i] < float(sc.logps[i]) - 1e-6
        else:
            assert ex["base_logps"][i] == pytest.approx(float(sc.logps[i]), abs=1e-6)


def test_inexact_retokenisation_is_flagged(random_model):
    """When TRL's tokenization of the texts is not the sampled id sequence (with BPE tokenizers: tokens merging
    across the prompt/completion boundary), the row is flagged ``exact=False`` and its log-prob is the one TRL will
    compute from the text. Simulated here by sampled prompt ids ([a]) that the prompt text ("b") does not give."""
    model, tok = random_model
    a = tok.convert_tokens_to_ids("a")
    ex = export_completions(model, tok, ["b"], [[a]], [[a, tok.eos_token_id]])
    assert ex["exact"] == [False] and ex["truncated"] == [False] and ex["text"] == ["a"]
    want = score_completions(model, tok, ["b"], ["a"], add_eos=True).logps
    assert ex["base_logps"][0] == pytest.approx(float(want[0]), abs=1e-5)


def test_algorithm_exports_use_trl_safe_columns_and_flags(random_model):
    model, tok = random_model
    res = rlhf_sharpening(copy.deepcopy(model), tok, PROMPTS * 2, RLHFConfig(max_new_tokens=5, steps=1, seed=0))
    d = res.data
    assert "ref_chosen_logps" not in d and "ref_rejected_logps" not in d  # TRL's own names: it refuses them
    assert {"base_chosen_logps", "base_rejected_logps", "chosen_truncated", "rejected_truncated", "exact"} <= set(d)
    # chosen/rejected base log-probs are π_base's score of the text as TRL tokenizes it (EOS appended)
    for side in ("chosen", "rejected"):
        want = score_completions(model, tok, d["prompt"], d[side], add_eos=True).logps
        torch.testing.assert_close(torch.tensor(d[f"base_{side}_logps"]), want, atol=1e-5, rtol=0)
    trl = to_trl(d)
    assert set(trl) == {"prompt", "chosen", "rejected"}
    keep = [not (a or b) and e for a, b, e in zip(d["chosen_truncated"], d["rejected_truncated"], d["exact"])]
    assert len(trl["prompt"]) == sum(keep) < len(d["prompt"])
    assert len(to_trl(d, drop_truncated=False)["prompt"]) == len(d["prompt"])

    sft = sft_sharpening(copy.deepcopy(model), tok, PROMPTS * 2,
                         SFTConfig(N=4, max_new_tokens=5, steps=1, seed=0)).data
    assert {"prompt", "completion", "base_logps", "truncated", "exact"} == set(sft)
    want = score_completions(model, tok, sft["prompt"], sft["completion"], add_eos=True).logps
    torch.testing.assert_close(torch.tensor(sft["base_logps"]), want, atol=1e-5, rtol=0)
    assert set(to_trl(sft)) == {"prompt", "completion"}
    assert len(to_trl(sft)["prompt"]) == sum(not t for t in sft["truncated"])


# --- against TRL itself --------------------------------------------------------------------------------------

needs_trl = pytest.mark.skipif(not HAS_TRL, reason="trl and datasets are not installed (not sharpsim dependencies)")


@needs_trl
def test_dpo_table_round_trips_through_trl(random_model):
    """DPOTrainer(precompute_ref_log_probs=True) with π_base as reference recomputes ref_*_logps from our texts;
    they equal our base_*_logps on every row, truncated ones included (the EOS term), to float32 precision.
    bf16=False: TRL's default bf16 autocast would itself move its values by ~1e-3."""
    from sharpsim.bridge import to_dataset
    from trl import DPOConfig, DPOTrainer

    model, tok = random_model
    res = rlhf_sharpening(copy.deepcopy(model), tok, PROMPTS * 4, RLHFConfig(max_new_tokens=5, steps=1, seed=0))
    d = res.data
    assert sum(d["chosen_truncated"]) + sum(d["rejected_truncated"]) >= 5
    table = to_trl(d, drop_truncated=False)
    assert len(table["prompt"]) == len(d["prompt"])
    with tempfile.TemporaryDirectory() as out:
        args = DPOConfig(output_dir=out, precompute_ref_log_probs=True, report_to="none", use_cpu=True, bf16=False,
                         per_device_train_batch_size=8, max_steps=1, logging_strategy="no", save_strategy="no")
        trainer = DPOTrainer(model=copy.deepcopy(model), args=args, train_dataset=to_dataset(table),
                             processing_class=tok)
        td = trainer.train_dataset
        assert td["prompt"] == table["prompt"]
        got_c, got_r = torch.tensor(td["ref_chosen_logps"]), torch.tensor(td["ref_rejected_logps"])
    torch.testing.assert_close(got_c, torch.tensor(d["base_chosen_logps"]), atol=1e-5, rtol=0)
    torch.testing.assert_close(got_r, torch.tensor(d["base_rejected_logps"]), atol=1e-5, rtol=0)


@needs_trl
def test_sft_rows_round_trip_through_trl(random_model):
    """SFTTrainer tokenizes prompt + completion + EOS; on exact rows that is the sampled prompt and completion ids
    (+ EOS where the sample was cut), and π_base's log-prob of its completion tokens is our base_logps (computed
    here with a plain unbatched forward pass, independent of the bridge's scorer)."""
    from sharpsim.bridge import to_dataset
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    model, tok = random_model
    d = sft_sharpening(copy.deepcopy(model), tok, PROMPTS * 3,
                       SFTConfig(N=4, max_new_tokens=5, steps=1, seed=0)).data
    table = to_trl(d, drop_truncated=False)
    with tempfile.TemporaryDirectory() as out:
        args = TRLSFTConfig(output_dir=out, report_to="none", use_cpu=True, bf16=False, max_steps=1,
                            per_device_train_batch_size=4, logging_strategy="no", save_strategy="no")
        trainer = SFTTrainer(model=copy.deepcopy(model), args=args, train_dataset=to_dataset(table),
                             processing_class=tok)
        td = trainer.train_dataset
        rows = list(zip(td["input_ids"], td["labels"]))  # TRL 1.16: labels = -100 on the prompt tokens
    assert len(rows) == len(d["prompt"])
    for (ids, labels), want in zip(rows, d["base_logps"]):
        ids_t = torch.tensor([ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids_t).logits[0, :-1].float(), -1)
        tok_lp = logp.gather(-1, ids_t[0, 1:, None])[:, 0]
        completion = torch.tensor([lab != -100 for lab in labels[1:]])
        got = float(tok_lp[completion].sum())
        assert ids[-1] == tok.eos_token_id and labels[-1] == tok.eos_token_id  # TRL always ends with EOS
        assert got == pytest.approx(want, abs=1e-4)


def test_xpo_data_rescores_to_its_logps(random_model):
    """Old: XPO's exported texts dropped sampled pad/unk tokens, so they did not re-score to ref_*_logps."""
    from sharpsim.bridge import XPOConfig, xpo_sharpening

    model, tok = random_model
    cfg = XPOConfig(num_iterations=2, prompts_per_iteration=6, steps_per_iteration=1, max_new_tokens=5, seed=0)
    res = xpo_sharpening(copy.deepcopy(model), tok, PROMPTS, cfg, reference=copy.deepcopy(model))
    d = res.data
    assert len(d["base_truncated"]) == len(d["prompt"]) == 12
    texts = d["policy_completion"] + d["base_completion"]
    assert sum(("_" in t) or ("<unk>" in t) for t in texts) >= 2  # the draw holds the trap (the test can fail)
    for side in ("policy", "base"):
        got = score_completions(model, tok, d["prompt"], d[f"{side}_completion"]).logps
        torch.testing.assert_close(got, torch.tensor(d[f"ref_{side}_logps"]), atol=1e-5, rtol=0)
