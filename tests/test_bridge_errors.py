"""Clear error messages: tokenizer without pad/eos, too-long prompts, N < 1, devices, missing extras."""

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from sharpsim.bridge import (  # noqa: E402
    best_of_n,
    char_tokenizer,
    sample_completions,
    score_completions,
    score_ids,
    tiny_gpt2,
)

pytestmark = [pytest.mark.hf]


@pytest.fixture(scope="module")
def model_tok():
    tok = char_tokenizer("ab")
    return tiny_gpt2(tok, n_positions=16), tok


def test_tokenizer_without_pad_and_eos(model_tok):
    model, _ = model_tok
    bare = char_tokenizer("ab", eos=None, pad=None)
    model.generation_config.eos_token_id = None
    try:
        with pytest.raises(ValueError, match="neither a pad token nor an EOS"):
            score_completions(model, bare, ["a"], ["b"])
        no_eos = char_tokenizer("ab", eos=None, pad="_")
        with pytest.raises(ValueError, match="no EOS token"):
            sample_completions(model, no_eos, ["a"], 2)
    finally:
        model.generation_config.eos_token_id = model.config.eos_token_id


def test_prompt_longer_than_context(model_tok):
    model, tok = model_tok
    with pytest.raises(ValueError, match="exceeds the model's context of 16"):
        sample_completions(model, tok, ["ab" * 6], 2, max_new_tokens=8)
    with pytest.raises(ValueError, match="longer than the model's context"):
        score_completions(model, tok, ["ab" * 6], ["ab" * 3])


@pytest.mark.parametrize("n", [0, -1, 1.5, True])
def test_bad_num_samples(model_tok, n):
    model, tok = model_tok
    with pytest.raises(ValueError, match="must be an integer >= 1"):
        best_of_n(model, tok, ["a"], n)


def test_model_and_inputs_on_different_devices(model_tok):
    model, _ = model_tok
    ids = torch.zeros((1, 2), dtype=torch.long, device="meta")
    mask = torch.ones((1, 2), dtype=torch.bool, device="meta")
    with pytest.raises(ValueError, match="model is on cpu but prompt_ids is on meta"):
        score_ids(model, ids, mask, ids, mask)


def test_bad_normalize(model_tok):
    model, tok = model_tok
    with pytest.raises(ValueError, match="normalize must be"):
        score_completions(model, tok, ["a"], ["b"], normalize="avg")


def test_import_sharpsim_does_not_import_torch_and_missing_extra_is_named():
    code = (
        "import sys, builtins\n"
        "import sharpsim, sharpsim.bridge\n"
        "from sharpsim.bridge import plan_n, arithmetic_problems\n"
        "assert 'torch' not in sys.modules, 'torch imported eagerly'\n"
        "real = builtins.__import__\n"
        "def fake(name, *a, **k):\n"
        "    if name == 'torch' or name.startswith('torch.'): raise ImportError('no torch')\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = fake\n"
        "try:\n"
        "    sharpsim.bridge.score_completions\n"
        "except ImportError as e:\n"
        "    assert \"pip install 'sharpsim[hf]'\" in str(e), str(e); print('OK')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout
