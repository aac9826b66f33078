"""Issue 12, bridge part: bad values fail at once with a ValueError naming the field (never a NaN result, a silent
reinterpretation, or an error from deep inside torch after the sampling), and ``pass_at_n`` is the exact unbiased
estimator of Chen et al. 2021, computed without cancellation.

Each test names the old behaviour it catches.
"""

import math
from fractions import Fraction

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from sharpsim.bridge import (  # noqa: E402
    RLHFConfig,
    SFTConfig,
    XPOConfig,
    best_of_n,
    char_tokenizer,
    dpo_logistic_loss,
    fine_tune,
    pass_at_n,
    plan_from_table,
    recommend_n_bon,
    recommend_n_sft,
    rlhf_sharpening,
    sample_completions,
    score_completions,
    sft_sharpening,
    sharpening_squared_loss,
    tiny_gpt2,
    xpo_loss,
    xpo_sharpening,
)

pytestmark = [pytest.mark.hf]

NAN, INF = float("nan"), float("inf")


@pytest.fixture(scope="module")
def model_tok():
    torch.set_num_threads(1)
    tok = char_tokenizer("ab")
    return tiny_gpt2(tok, n_positions=32), tok


@pytest.fixture
def no_sampling(model_tok, monkeypatch):
    """Fail the test if the model generates anything: validation must come before sampling."""
    model, _ = model_tok

    def boom(*a, **k):
        raise AssertionError("sampled before validating the arguments")

    monkeypatch.setattr(model, "generate", boom)
    return model


# --- configs: every float finite, every count an integer in range --------------------------------------------

BAD_FIELDS = [
    # (config class, field, value, message fragment). Old behaviour in the comments.
    (RLHFConfig, "beta", NAN, "beta must be finite"),          # old: NaN weights after training
    (RLHFConfig, "beta", INF, "beta must be finite"),
    (RLHFConfig, "beta", 0.0, "beta must be > 0"),
    (XPOConfig, "beta", NAN, "beta must be finite"),           # old: accepted, NaN loss
    (XPOConfig, "alpha", NAN, "alpha must be finite"),         # old: accepted (NaN < 0 is False)
    (XPOConfig, "alpha", -1.0, "alpha must be >= 0"),
    (SFTConfig, "epochs", 0, "epochs must be an integer >= 1"),  # old: trained one step
    (SFTConfig, "steps", 0, "steps must be an integer >= 1"),    # old: zero steps, silently
    (SFTConfig, "epochs", 1.5, "epochs must be an integer"),
    (SFTConfig, "learning_rate", NAN, "learning_rate must be finite"),  # old: failed in torch after sampling
    (SFTConfig, "learning_rate", -1e-3, "learning_rate must be > 0"),
    (RLHFConfig, "learning_rate", INF, "learning_rate must be finite"),
    (SFTConfig, "temperature", 0.0, "temperature must be > 0.*greedy"),  # old: error inside generate
    (SFTConfig, "temperature", NAN, "temperature must be finite"),
    (SFTConfig, "batch_size", 0, "batch_size must be an integer >= 1"),  # old: ZeroDivisionError
    (SFTConfig, "max_new_tokens", 0, "max_new_tokens must be an integer >= 1"),
    (SFTConfig, "weight_decay", NAN, "weight_decay must be finite"),
    (SFTConfig, "max_grad_norm", NAN, "max_grad_norm must be finite"),
    (SFTConfig, "N", 0, "N"),
    (SFTConfig, "reward", "logprobs", "reward must be one of"),
    (XPOConfig, "num_iterations", 0, "num_iterations must be an integer >= 1"),
    (XPOConfig, "steps_per_iteration", 0, "steps_per_iteration must be an integer >= 1"),  # old: no training
    (RLHFConfig, "loss", "hinge", "loss must be"),
    (RLHFConfig, "lr_schedule", "cosine", "lr_schedule must be"),
]


@pytest.mark.parametrize("cls,field,value,msg", BAD_FIELDS, ids=[f"{c.__name__}.{f}={v!r}" for c, f, v, _ in
                                                                  BAD_FIELDS])
def test_config_rejects_bad_field_on_construction(cls, field, value, msg):
    with pytest.raises(ValueError, match=msg):
        cls(**{field: value})


@pytest.mark.parametrize("cls,run", [(SFTConfig, sft_sharpening), (RLHFConfig, rlhf_sharpening),
                                     (XPOConfig, xpo_sharpening)])
def test_algorithm_revalidates_before_sampling(model_tok, no_sampling, cls, run):
    """A field changed after construction is caught before any sampling (old: RLHF trained with β = NaN and returned
    NaN weights; a NaN learning rate failed inside torch only after the sampling)."""
    _, tok = model_tok
    cfg = cls(max_new_tokens=2)
    cfg.learning_rate = NAN
    with pytest.raises(ValueError, match="learning_rate must be finite"):
        run(no_sampling, tok, ["a"], cfg)
    if hasattr(cfg, "beta"):
        cfg = cls(max_new_tokens=2)
        cfg.beta = NAN
        with pytest.raises(ValueError, match="beta must be finite"):
            run(no_sampling, tok, ["a"], cfg)


@pytest.mark.parametrize("run", [sft_sharpening, rlhf_sharpening, xpo_sharpening])
def test_algorithms_reject_empty_prompt_list(model_tok, no_sampling, run):
    _, tok = model_tok
    with pytest.raises(ValueError, match="prompts is empty"):  # old: max() of an empty sequence, deep in sampling
        run(no_sampling, tok, [])


def test_epochs_zero_does_not_train_one_step(model_tok):
    """Old: ``max(1, int(epochs or 1) …)`` turned epochs=0 into one epoch of training."""
    model, tok = model_tok
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        fine_tune(model, tok, ["a"], ["b"], epochs=0)
    with pytest.raises(ValueError, match="learning_rate must be finite"):
        fine_tune(model, tok, ["a"], ["b"], learning_rate=NAN)
    with pytest.raises(ValueError, match="prompts is empty"):
        fine_tune(model, tok, [], [])


# --- primitives ---------------------------------------------------------------------------------------------


def test_sampling_and_scoring_reject_bad_values(model_tok, no_sampling):
    _, tok = model_tok
    m = no_sampling
    with pytest.raises(ValueError, match="prompts is empty"):  # old: "max() arg is an empty sequence"
        sample_completions(m, tok, [], 2)
    with pytest.raises(ValueError, match="prompts is empty"):
        best_of_n(m, tok, [], 2)
    with pytest.raises(ValueError, match="temperature must be > 0.*do_sample=False"):  # old: error inside generate
        sample_completions(m, tok, ["a"], 2, temperature=0.0)
    with pytest.raises(ValueError, match="temperature must be finite"):
        sample_completions(m, tok, ["a"], 2, temperature=NAN)
    with pytest.raises(ValueError, match="top_p must be"):
        sample_completions(m, tok, ["a"], 2, top_p=NAN)
    with pytest.raises(ValueError, match="max_batch_rows must be an integer >= 1"):
        sample_completions(m, tok, ["a"], 2, max_batch_rows=0)
    with pytest.raises(ValueError, match="score_batch_size must be an integer >= 1"):  # old: range() step 0
        best_of_n(m, tok, ["a"], 2, score_batch_size=0)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        score_completions(m, tok, ["a"], ["b"], batch_size=0)
    with pytest.raises(ValueError, match="prompts is empty"):
        score_completions(m, tok, [], [])
    with pytest.raises(TypeError, match=r"prompts\[1\] must be a string"):
        sample_completions(m, tok, ["a", 3], 2)


def test_losses_reject_non_finite_coefficients():
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="beta must be finite"):
        sharpening_squared_loss(x, x, x, x, NAN)
    with pytest.raises(ValueError, match="beta must be finite"):
        dpo_logistic_loss(x, x, x, x, NAN)
    with pytest.raises(ValueError, match="alpha must be finite"):
        xpo_loss(x, x, x, x, 1.0, NAN)


# --- planner --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("probs,msg", [
    ([[0.5, 0.5, 0.5]], "must sum to 1"),               # old: n_bon = 5 from a row summing to 1.5
    ([[0.2, 0.2, 0.2]], "must sum to 1"),
    ([[NAN, 0.5, 0.5]], "non-finite"),                  # old: n_bon = inf or NaN
    ([[1.5, -0.5]], "negative"),
    ([0.5, 0.5], r"\[X, Y\]"),
])
def test_plan_from_table_rejects_non_laws(probs, msg):
    with pytest.raises(ValueError, match=msg):
        plan_from_table(probs)


def test_plan_from_table_still_accepts_a_law_and_bad_mu_is_named():
    plan = plan_from_table([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]], rho=0.1)
    assert plan.n_bon_per_prompt.tolist() == [math.ceil(math.log(10) / 0.5), math.ceil(math.log(10) / 0.8)]
    with pytest.raises(ValueError, match="mu must be finite"):
        plan_from_table([[0.5, 0.5]], mu=[NAN])
    with pytest.raises(ValueError, match="epsilon must be finite"):
        plan_from_table([[0.5, 0.5]], epsilon=NAN)


def test_recommenders_reject_nan():
    with pytest.raises(ValueError, match="masses p"):  # old: NaN passed the range check and gave N = inf
        recommend_n_bon([NAN], 0.1)
    with pytest.raises(ValueError, match="rho must be finite"):
        recommend_n_bon([0.5], NAN)
    with pytest.raises(ValueError, match="c_cov must be finite"):  # old: math.ceil's "cannot convert NaN"
        recommend_n_sft(NAN, 0.1, 0.1)


# --- pass@n -----------------------------------------------------------------------------------------------------


def exact_pass_at_n(c, M, n):
    """Independent exact value: 1 − C(M−c, n)/C(M, n) in rational arithmetic."""
    return 1 - Fraction(math.comb(M - c, n), math.comb(M, n))


@pytest.mark.parametrize("c,M,n", [(0, 5, 2), (1, 5, 1), (2, 5, 2), (3, 5, 3), (5, 5, 5), (4, 10, 3),
                                   (1, 100, 7), (17, 200, 50), (0, 1, 1), (1, 1, 1), (3, 1000, 999)])
def test_pass_at_n_matches_the_exact_rational_value(c, M, n):
    # relative error of the product form: ~ (c + 2) ulps; 1e-13 leaves a wide margin
    assert pass_at_n(c, M, n) == pytest.approx(float(exact_pass_at_n(c, M, n)), rel=1e-13, abs=0)


def test_pass_at_n_has_no_catastrophic_cancellation():
    """c = 1, n = 1: the value is exactly 1/M. The old ``1 − C(M−1,1)/C(M,1)`` returns 1 − fl((M−1)/M), whose
    relative error is ~1e-16·M (≈ 1e-7 at M = 10⁹; the product form keeps ~1e-16)."""
    for M in (10**6, 10**9, 10**12):
        assert pass_at_n(1, M, 1) == pytest.approx(1 / M, rel=1e-13, abs=0)
    assert pass_at_n(2, 10**10, 1) == pytest.approx(2e-10, rel=1e-13, abs=0)  # old: relative error ~1e-6


@pytest.mark.parametrize("c,M,n,msg", [
    (-1, 4, 2, "num_correct must be an integer >= 0"),   # old: returned -0.5
    (5, 4, 2, "num_correct = 5 exceeds"),               # old: math.comb's "must be a non-negative integer"
    (1, 4, 5, "n = 5 exceeds the number of samples M = 4"),  # old: "n must be in [1, 4]" (kept clear)
    (1, 4, 0, "n must be an integer >= 1"),
    (1.5, 4, 2, "num_correct must be an integer"),
    (1, 0, 1, "M .* must be an integer >= 1"),
])
def test_pass_at_n_rejects_impossible_counts(c, M, n, msg):
    with pytest.raises(ValueError, match=msg):
        pass_at_n(c, M, n)


def test_pass_at_n_accepts_numpy_integers():
    assert pass_at_n(np.int64(2), np.int64(5), np.int32(2)) == pytest.approx(float(exact_pass_at_n(2, 5, 2)))


def test_callable_reward_returning_nan_is_named():
    """Old: a NaN self-reward was silently ranked last by best-of-N (select_best maps NaN to -inf)."""
    from sharpsim.bridge import Scores, compute_self_reward

    sc = Scores(values=torch.zeros(2), logps=torch.zeros(2), lengths=torch.ones(2, dtype=torch.long))

    def judge(prompts, completions, **kw):
        return [0.0, float("nan")]

    with pytest.raises(ValueError, match="reward judge returned NaN for completion 1"):
        compute_self_reward(judge, sc, N=2, texts=["a", "b"], prompts=["p"])
    with pytest.raises(ValueError, match="returned \\(1,\\) values for 2 completions"):
        compute_self_reward(lambda **kw: [0.0], sc, N=2, texts=["a", "b"], prompts=["p"])


# --- every numeric field of every config, against values that are invalid for all of them ------------------

ALWAYS_BAD = [NAN, INF, -INF, -1, -1.0, "1", [1], True]


def _numeric_fields(cls):
    import dataclasses

    return [f.name for f in dataclasses.fields(cls) if f.name not in ("reward", "loss", "lr_schedule")]


SWEEP = [(cls, f, v) for cls in (SFTConfig, RLHFConfig, XPOConfig) for f in _numeric_fields(cls) for v in ALWAYS_BAD]


@pytest.mark.parametrize("cls,field,value", SWEEP, ids=[f"{c.__name__}.{f}={v!r}" for c, f, v in SWEEP])
def test_every_config_field_rejects_invalid_values(cls, field, value):
    """NaN, ±inf, negatives, strings, lists and bools are invalid for every numeric field (counts, rates,
    coefficients, seeds): each must raise a ValueError naming the field, never construct a config."""
    with pytest.raises(ValueError, match=field):
        cls(**{field: value})


def test_plan_from_model_checks_before_the_pilot(model_tok, no_sampling):
    """Old: a bad ``level`` or a NaN ``rho`` was noticed only after sampling the whole pilot."""
    from sharpsim.bridge import plan_from_model

    _, tok = model_tok
    with pytest.raises(ValueError, match="level must be"):
        plan_from_model(no_sampling, tok, ["a"], level="token")
    with pytest.raises(ValueError, match="rho must be finite"):
        plan_from_model(no_sampling, tok, ["a"], rho=NAN)
    with pytest.raises(ValueError, match="needs extract_answer"):
        plan_from_model(no_sampling, tok, ["a"], level="answer")
