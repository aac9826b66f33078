"""Self-rewards, best-of-N selection and the TRL-style reward callable."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from sharpsim.bridge import (  # noqa: E402
    best_of_n,
    char_tokenizer,
    majority_reward,
    score_completions,
    select_best,
    sft_rows,
    tiny_gpt2,
    trl_self_reward,
)

pytestmark = [pytest.mark.hf]


def test_select_best_is_argmax_with_ties():
    r = torch.tensor([[0.1, 0.5, 0.5, -1.0], [2.0, 1.0, 0.0, float("nan")]])
    idx, best = select_best(r)
    assert idx.tolist() == [1, 0] and best.tolist() == [0.5, 2.0]
    seen = {int(select_best(r, tie_break="random", generator=torch.Generator().manual_seed(s))[0][0])
            for s in range(30)}
    assert seen == {1, 2}


def test_majority_reward():
    r = majority_reward(["1", "2", "1", None, "3", "3", "3", "4"], 4)
    assert r.tolist() == [0.5, 0.25, 0.5, 0.0, 0.75, 0.75, 0.75, 0.25]


@pytest.mark.parametrize("reward", ["logprob", "lennorm", "majority", "callable"])
def test_best_of_n_picks_argmax_of_the_reward(reward):
    tok = char_tokenizer("ab")
    model = tiny_gpt2(tok, seed=4)
    fn = (lambda prompts, completions, **kw: [float(c.count("a")) for c in completions]) \
        if reward == "callable" else reward
    res = best_of_n(model, tok, ["a", "b", "ab"], 6, reward=fn, extract_answer=lambda t: t[:1] or None,
                    max_new_tokens=4, seed=0)
    assert res.all_rewards.shape == (3, 6)
    for i in range(3):
        assert res.scores[i] == res.all_rewards[i].max()
        assert res.all_rewards[i, res.indices[i]] == res.all_rewards[i].max()
        assert res.texts[i] == res.all_texts[i * 6 + int(res.indices[i])]
        assert res.lengths[i] == res.all_lengths[i, res.indices[i]]
    if reward == "lennorm":
        torch.testing.assert_close(res.all_rewards, res.all_logps / res.all_lengths)


def test_trl_reward_callable_and_sft_rows():
    tok = char_tokenizer("ab")
    model = tiny_gpt2(tok, seed=4)
    f = trl_self_reward(model, tok)
    vals = f(prompts=["a", "b"], completions=["ab", "b"], completion_ids=None)
    ref = score_completions(model, tok, ["a", "b"], ["ab", "b"]).logps.tolist()
    assert vals == pytest.approx(ref) and f.__name__.startswith("self_reward")
    assert sft_rows(["a"], ["b"]) == {"prompt": ["a"], "completion": ["b"]}
