"""Metropolis–Hastings power sampling through the bridge (issue 15): exact laws on tiny Hugging Face models.

References are computed here from plain, unpadded forward passes of the model (``model(ids).logits``), never
with the bridge's own scoring or sampling: the exact π^α over every completion, and the exact law of the MH
chain after s steps (its transition kernel, enumerated).
"""

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from sharpsim.bridge import (  # noqa: E402
    char_tokenizer,
    completion_token_logps_tempered,
    mh_log_acceptance,
    pad_left,
    pad_right,
    power_mh_sample,
    tiny_gpt2,
)

pytestmark = [pytest.mark.hf]


# ---------------------------------------------------------------------------------------------- references
def _completions(V, eos, H):
    """Every completion of at most H tokens: ending at its first EOS, or H tokens without one."""
    out = []

    def rec(pre):
        if len(pre) == H:
            out.append(tuple(pre))
            return
        for v in range(V):
            rec(pre + [v]) if v != eos else out.append(tuple(pre + [v]))

    rec([])
    return out


def _token_tables(model, prompt, seqs, alpha):
    """Per-token log π and log q_α (softmax of α·logits) of each completion, float64, one unpadded pass each."""
    lp, lq = {}, {}
    with torch.no_grad():
        for s in seqs:
            logits = model(torch.tensor([prompt + list(s)])).logits[0].double()
            rows = range(len(prompt) - 1, len(prompt) - 1 + len(s))
            a, b = logits.log_softmax(-1), (alpha * logits).log_softmax(-1)
            lp[s] = [float(a[r, v]) for r, v in zip(rows, s)]
            lq[s] = [float(b[r, v]) for r, v in zip(rows, s)]
    return lp, lq


def _mh_kernel(seqs, lp, lq, alpha):
    """The exact transition matrix of suffix MH (t uniform on the current length, Hastings ratio with 1/L)."""
    n = len(seqs)
    K = torch.zeros(n, n, dtype=torch.float64)
    for i, y in enumerate(seqs):
        L = len(y)
        for t in range(L):
            for j, z in enumerate(seqs):
                if z[:t] != y[:t]:
                    continue
                log_a = (alpha * (sum(lp[z][t:]) - sum(lp[y][t:])) + sum(lq[y][t:]) - sum(lq[z][t:])
                         + math.log(L) - math.log(len(z)))
                K[i, j] += math.exp(sum(lq[z][t:])) / L * min(1.0, math.exp(log_a))
        K[i, i] += 1.0 - K[i].sum()
    return K


def _empirical(res, seqs):
    ids, mask = res.samples.completion_ids, res.samples.completion_mask
    index = {s: k for k, s in enumerate(seqs)}
    counts = torch.zeros(len(seqs), dtype=torch.float64)
    for i in range(ids.shape[0]):
        counts[index[tuple(ids[i][mask[i]].tolist())]] += 1  # KeyError = an impossible completion
    return counts / ids.shape[0]


def _tv(p, q):
    return 0.5 * float((p - q).abs().sum())


def _tv_noise(law, n, delta):
    """With probability >= 1 − δ, TV(empirical of n iid draws, law) <= ½Σ√(p(1−p)/n) + √(ln(1/δ)/(2n)):
    the first term bounds E[TV] (Jensen), the second is McDiarmid's deviation (TV moves by ≤ 1/n per draw)."""
    return 0.5 * float((law * (1 - law) / n).sqrt().sum()) + math.sqrt(math.log(1 / delta) / (2 * n))


# ---------------------------------------------------------------------------------------------- (a) exact law
H, ALPHA, STEPS, CHAINS, DELTA = 3, 2.0, 20, 1000, 1e-4


@pytest.fixture(scope="module")
def tiny_case():
    torch.set_num_threads(1)
    tok = char_tokenizer("ab", eos="$", pad="$")  # pad == eos as in SmolLM2; V = 4 (<unk>, $, a, b)
    model = tiny_gpt2(tok, seed=0)  # absolute positions: left-padded prefixes must get the right ones
    with torch.no_grad():  # a random init is nearly uniform; scale the logits ×3 so that π^α is far from q_α
        model.transformer.ln_f.weight.mul_(3.0)
    prompt = tok("a")["input_ids"]
    seqs = _completions(len(tok), tok.eos_token_id, H)  # 40 completions
    lp, lq = _token_tables(model, prompt, seqs, ALPHA)
    log_pi = torch.tensor([sum(lp[s]) for s in seqs], dtype=torch.float64)
    assert float(log_pi.exp().sum()) == pytest.approx(1.0, abs=1e-6)  # float32 logits
    target = (ALPHA * log_pi).softmax(0)
    start = torch.tensor([math.exp(sum(lq[s])) for s in seqs], dtype=torch.float64)  # temperature-1/α law
    law = start.clone()
    K = _mh_kernel(seqs, lp, lq, ALPHA)
    for _ in range(STEPS):
        law = law @ K
    return model, tok, seqs, target, start, law


def test_mh_chain_law_approaches_exact_power_law(tiny_case):
    """1,000 chains × 20 steps (≈ 45 model calls per chain; 40 completions, H = 3, α = 2).

    Exact (kernel): TV(temperature 1/α, π^α) = 0.244, TV(MH law after 20 steps, π^α) = 0.042. The empirical
    law of the chains must be within ε = noise(n = 1000, δ = 1e-4) ≈ 0.12 of the exact 20-step law, and within
    0.05 + ε of π^α (measured, seed 0: 0.025 and 0.059; without the proposal correction
    0.44 and 0.47). Each check fails with probability ≤ 1e-4 when the sampler is right (false-failure rate
    ≤ 2e-4 for the test).
    """
    model, tok, seqs, target, start, law = tiny_case
    assert _tv(start, target) > 0.2  # the case is not trivial: the proposal alone is far from π^α
    assert _tv(law, target) < 0.05  # the exact chain reaches π^α within 0.05 at this budget
    res = power_mh_sample(model, tok, ["a"], ALPHA, STEPS, num_chains=CHAINS, max_new_tokens=H, seed=0,
                          max_batch_rows=CHAINS)
    emp = _empirical(res, seqs)
    eps = _tv_noise(law, CHAINS, DELTA)
    assert eps < 0.13
    assert _tv(emp, law) <= eps, (_tv(emp, law), eps)
    assert _tv(emp, target) <= 0.05 + eps, (_tv(emp, target), eps)
    # the cost: L₀ + Σ (L' − t) next-token distributions per chain, as recorded step by step
    L0 = res.initial_lengths
    assert torch.equal(res.model_calls, L0 + (res.proposal_lengths - res.positions).sum(0))
    assert bool(((L0 >= 1) & (L0 <= H)).all())
    assert 20 * 1 + 1 <= float(res.model_calls.float().mean()) <= 20 * H + H
    # one generate (≤ H forward passes) + one scoring pass per step, plus the start
    assert (STEPS + 1) * 2 <= res.forward_passes <= (STEPS + 1) * (H + 1)


def test_mh_without_proposal_correction_fails_the_law_test(tiny_case):
    """Dropping q from the ratio (a symmetric-proposal Metropolis ratio) targets the wrong law: its exact TV to
    π^α after 20 steps is 0.47, so with probability ≥ 1 − 1e-4 its empirical TV exceeds 0.47 − ε > 0.05 + ε."""
    model, tok, seqs, target, start, law = tiny_case
    res = power_mh_sample(model, tok, ["a"], ALPHA, STEPS, num_chains=CHAINS, max_new_tokens=H, seed=0,
                          max_batch_rows=CHAINS, _proposal_correction=False)
    emp = _empirical(res, seqs)
    eps = _tv_noise(law, CHAINS, DELTA)
    assert _tv(emp, target) > 0.05 + eps, (_tv(emp, target), eps)
    assert _tv(emp, law) > eps


# ---------------------------------------------------------------------------------------------- (b) by hand
P = (0.1, 0.2, 0.3, 0.4)  # π(<unk>), π($), π(a), π(b): the same at every position


@pytest.fixture(scope="module")
def iid_model():
    """A GPT-2 whose next-token law is P whatever the context: every weight zero except the tied embedding
    (identity) and ln_f's bias (log P), so the final hidden state is log P and the logits are log P."""
    tok = char_tokenizer("ab", eos="$", pad="$")
    model = tiny_gpt2(tok, n_embd=4, n_head=2, seed=0)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.transformer.wte.weight.copy_(torch.eye(4))
        model.transformer.ln_f.bias.copy_(torch.log(torch.tensor(P)))
    return model, tok


def test_acceptance_probability_by_hand(iid_model):
    """y = "ab$" (L = 3) → y' = "a$" (L' = 2) from t = 1 at α = 2; q_α(v) = p_v²/S, S = Σp² = 0.3.

    Ratio = (π(y')/π(y))^α · q(y_{1:})/q(y'_{1:}) · L/L' = (1/p_b)² · (p_b²p_$²/S²)/(p_$²/S) · 3/2
    = (1/0.16)·(0.16/0.3)·1.5 = 5, so the move is accepted with probability 1 and the reverse one with 1/5.
    """
    model, tok = iid_model
    pid, pm = pad_left([tok("x")["input_ids"]] * 2, tok.pad_token_id)
    y, yp = [2, 3, 1], [2, 1]  # a b $ / a $
    cid, cm = pad_right([y, yp], tok.pad_token_id)
    with torch.no_grad():
        lp, lq = completion_token_logps_tempered(model, pid, pm, cid, cm, 2.0)
    S = sum(p * p for p in P)
    torch.testing.assert_close(lp[0], torch.log(torch.tensor([0.3, 0.4, 0.2])), atol=1e-6, rtol=0)
    torch.testing.assert_close(lq[0], torch.log(torch.tensor([0.09, 0.16, 0.04]) / S), atol=1e-6, rtol=0)
    assert float(lq[1, 2]) == 0.0  # outside the mask
    one = torch.tensor([1])
    fwd = mh_log_acceptance(2.0, lp[:1], lq[:1], torch.tensor([3]), lp[1:], lq[1:], torch.tensor([2]), one)
    rev = mh_log_acceptance(2.0, lp[1:], lq[1:], torch.tensor([2]), lp[:1], lq[:1], torch.tensor([3]), one)
    assert math.exp(float(fwd)) == pytest.approx(5.0, rel=1e-5)
    assert min(1.0, math.exp(float(rev))) == pytest.approx(0.2, rel=1e-5)
    # without the position terms the reverse ratio would be 0.3; without the proposal terms 0.16·2/3
    no_len = mh_log_acceptance(2.0, lp[1:], lq[1:], torch.tensor([2]), lp[:1], lq[:1], torch.tensor([3]), one,
                               length_correction=False)
    assert math.exp(float(no_len)) == pytest.approx(0.3, rel=1e-5)


def test_every_step_of_a_chain_uses_the_hand_ratio(iid_model):
    """Chains on the i.i.d. model (two prompts of different lengths, so rows are left-padded). With
    q_α(v) = p_v²/S at α = 2, the π and q terms cancel token by token up to S: the log-ratio of every recorded
    step must be (L' − L)·log S + log(L/L'), a function of the recorded lengths alone."""
    model, tok = iid_model
    H2, steps = 4, 6
    res = power_mh_sample(model, tok, ["ab", "b"], 2.0, steps, num_chains=3, max_new_tokens=H2, seed=3)
    S = sum(p * p for p in P)
    assert res.log_accept.shape == (steps, 6)
    L_cur = res.initial_lengths.clone()
    assert torch.equal(res.model_calls, L_cur + (res.proposal_lengths - res.positions).sum(0))
    assert bool(((L_cur >= 1) & (L_cur <= H2)).all())
    for s in range(steps):
        t, Lp = res.positions[s], res.proposal_lengths[s]
        assert bool(((t >= 0) & (t < L_cur) & (Lp > t) & (Lp <= H2)).all())
        expected = (Lp - L_cur).double() * math.log(S) + torch.log(L_cur.double()) - torch.log(Lp.double())
        torch.testing.assert_close(res.log_accept[s].double(), expected, atol=1e-4, rtol=0)
        L_cur = torch.where(res.accepted_steps[s], Lp, L_cur)
    assert torch.equal(L_cur, res.samples.lengths)  # replaying the decisions gives the final lengths
    assert torch.equal(res.accepted, res.accepted_steps.long().sum(0))
    assert res.accepted_steps.any() and not res.accepted_steps.all()


@pytest.mark.parametrize("kwargs, name", [
    (dict(alpha=0.0), "alpha"), (dict(alpha=float("nan")), "alpha"), (dict(num_steps=-1), "num_steps"),
    (dict(num_chains=0), "num_chains"), (dict(max_new_tokens=0), "max_new_tokens"), (dict(seed=-1), "seed"),
])
def test_bad_arguments_name_the_argument(iid_model, kwargs, name):
    model, tok = iid_model
    args = dict(alpha=2.0, num_steps=1) | kwargs
    with pytest.raises(ValueError, match=name):
        power_mh_sample(model, tok, ["a"], args.pop("alpha"), args.pop("num_steps"), **args)
