"""Losses against hand computation; Eq. 8 vanishes at the closed-form optimum π_base^{1+1/β}."""

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from sharpsim.bridge import dpo_logistic_loss, sharpening_squared_loss, xpo_loss  # noqa: E402

pytestmark = [pytest.mark.hf]

BASE = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
PAIRS = [(i, j) for i in range(4) for j in range(4) if i != j]


def _pair_tensors(policy):
    y = torch.tensor([i for i, _ in PAIRS]); y2 = torch.tensor([j for _, j in PAIRS])
    lp, lb = policy.log(), BASE.log()
    return lp[y], lp[y2], lb[y], lb[y2]


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_eq8_zero_at_closed_form_optimum_and_positive_elsewhere(beta):
    opt = BASE ** (1 + 1 / beta)
    opt = opt / opt.sum()
    assert sharpening_squared_loss(*_pair_tensors(opt), beta).item() == pytest.approx(0.0, abs=1e-20)
    assert sharpening_squared_loss(*_pair_tensors(BASE), beta).item() > 1e-3
    other = BASE ** (1 + 0.5 / beta); other = other / other.sum()
    assert sharpening_squared_loss(*_pair_tensors(other), beta).item() > 1e-4


def test_eq8_minimiser_by_gradient_descent_is_the_closed_form():
    beta = 0.5
    logits = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.05)
    for _ in range(1500):
        loss = sharpening_squared_loss(*_pair_tensors(logits.softmax(0)), beta)
        opt.zero_grad(); loss.backward(); opt.step()
    target = BASE ** 3 / (BASE ** 3).sum()
    torch.testing.assert_close(logits.softmax(0).detach(), target, atol=1e-4, rtol=0)


def test_hand_computed_values():
    py, py2, ry, ry2 = (torch.tensor([v]) for v in (-1.0, -2.0, -1.5, -1.0))
    beta = 0.3
    pred = beta * ((-1.0 + 1.5) - (-2.0 + 1.0))
    assert sharpening_squared_loss(py, py2, ry, ry2, beta).item() == pytest.approx((pred - (-0.5)) ** 2)
    rw = sharpening_squared_loss(py, py2, ry, ry2, beta, torch.tensor([2.0]), torch.tensor([0.0])).item()
    assert rw == pytest.approx((pred - 2.0) ** 2)
    dpo = dpo_logistic_loss(py, py2, ry, ry2, beta).item()
    assert dpo == pytest.approx(-math.log(1 / (1 + math.exp(-pred))))
    x = xpo_loss(py, py2, ry, ry2, beta, alpha=0.2).item()
    assert x == pytest.approx(0.2 * (-2.0) + (pred + 0.5) ** 2)


def test_sign_errors_would_be_caught():
    """DPO prefers raising the chosen response: its gradient on log π(chosen) is negative."""
    pc = torch.tensor([-1.0], requires_grad=True)
    dpo_logistic_loss(pc, torch.tensor([-1.0]), torch.tensor([-1.0]), torch.tensor([-1.0]), 1.0).backward()
    assert pc.grad.item() < 0
    pb = torch.tensor([-1.0], requires_grad=True)
    xpo_loss(torch.tensor([-1.0]), pb, torch.tensor([-1.0]), torch.tensor([-1.0]), 1.0, alpha=1.0).backward()
    assert pb.grad.item() > 0  # optimism lowers the mass on base samples
