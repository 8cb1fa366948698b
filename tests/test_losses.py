import pytest
import torch
import torch.nn.functional as F

from toolkit.train.config import TrainConfig
from toolkit.train.losses import alpha_divergence, one_hot_smooth, soft_cross_entropy
from toolkit.train.trainer import adaptive_clip_grad, lr_at


def test_soft_ce_equals_cross_entropy_with_label_smoothing():
    logits = torch.randn(8, 10)
    y = torch.randint(0, 10, (8,))
    assert torch.allclose(soft_cross_entropy(logits, one_hot_smooth(y, 10, 0.1)),
                          F.cross_entropy(logits, y, label_smoothing=0.1), atol=1e-6)


@pytest.mark.parametrize("alpha", [-1.0, -0.5, 0.0, 0.5, 1.0])
def test_alpha_divergence_gradient_is_the_true_gradient(alpha):
    torch.manual_seed(0)
    logits = torch.randn(4, 6, requires_grad=True)
    p = F.softmax(torch.randn(4, 6) * 0.5, -1)
    alpha_divergence(logits, p, alpha, alpha, clip=1e9).backward()
    got = logits.grad.clone()
    lg = logits.detach().clone().requires_grad_(True)
    q = F.softmax(lg, -1)
    t = p / q
    if abs(alpha) < 1e-3:
        d = (q * -t.log()).sum(-1)
    elif abs(alpha - 1) < 1e-3:
        d = (p * (p / q).log()).sum(-1)
    else:
        d = (q * (t.pow(alpha) - 1)).sum(-1) / (alpha * (alpha - 1))
    d.mean().backward()
    assert torch.allclose(got, lg.grad, atol=1e-5)


def test_alpha_divergence_picks_the_larger_side_and_vanishes_at_the_target():
    logits = torch.randn(5, 10, requires_grad=True)
    p = F.softmax(logits.detach(), -1)
    loss = alpha_divergence(logits, p)
    loss.backward()
    assert logits.grad.abs().max() < 1e-6
    with pytest.raises(ValueError, match="alpha_min"):
        alpha_divergence(logits, p, 0.5, -0.5)


def test_agc_limits_the_unitwise_gradient_norm():
    w = torch.nn.Parameter(torch.ones(3, 4))
    w.grad = torch.tensor([[100.0] * 4, [0.01] * 4, [1.0] * 4])
    adaptive_clip_grad([w], 0.1)
    row_norm = w.grad.norm(dim=1)
    assert torch.allclose(row_norm[0], torch.tensor(0.2), atol=1e-5)  # clip * ||w_row|| = 0.1*2
    assert torch.allclose(w.grad[1], torch.full((4,), 0.01))  # small grads untouched


def test_lr_schedule_warms_up_then_decays_to_min_lr():
    c = TrainConfig(steps=100, lr=1e-3, min_lr=1e-5, warmup_lr=1e-6, warmup_steps=10)
    lrs = [lr_at(t, c) for t in range(101)]
    assert lrs[0] == pytest.approx(1e-6) and lrs[10] == pytest.approx(1e-3)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:11]))
    assert all(a >= b for a, b in zip(lrs[10:-1], lrs[11:]))
    assert lrs[100] == pytest.approx(1e-5)
