"""Training losses: soft-target cross-entropy and the adaptive alpha-divergence (AlphaNet).

Alpha-divergence of the student q from the target p, per sample,

    D_α(p ‖ q) = Σ_i q_i · f(p_i / q_i),   f(t) = (t^α − 1) / (α (α − 1)),

is evaluated at α_min and α_max and the larger of the two is minimised (it penalises both
over- and under-estimation of the target's uncertainty). Its gradient with respect to the
student logits is ``−Σ_i q_i · t_i^α / α · ∇ log q_i`` (the constant part of f − t f' drops
out because Σ q ∇log q = 0); ``t^α`` is clipped at ``clip`` to bound the variance, and the
limits α → 0 (reverse KL) and α → 1 (forward KL) are handled in closed form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["soft_cross_entropy", "alpha_divergence", "one_hot_smooth"]


def one_hot_smooth(y: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    off = smoothing / num_classes
    return torch.full((len(y), num_classes), off, device=y.device).scatter_(
        1, y[:, None], 1.0 - smoothing + off)


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of −Σ p · log softmax(logits)."""
    return torch.sum(-target_probs * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def _divergence_and_surrogate(logits: torch.Tensor, p: torch.Tensor, alpha: float,
                              clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    log_q = F.log_softmax(logits.float(), dim=-1)
    q = log_q.exp().detach()
    t = (p / q.clamp_min(1e-12)).clamp_min(1e-12)  # importance ratio p/q
    if abs(alpha) < 1e-3:  # f(t) = −log t  (KL(q‖p))
        t = t.clamp(max=clip)
        value = torch.sum(q * -t.log(), dim=-1)
        rho = t.log() - 1.0
    elif abs(alpha - 1.0) < 1e-3:  # f(t) = t log t  (KL(p‖q))
        value = torch.sum(q * t * t.log(), dim=-1)
        rho = t
    else:
        ta = t.pow(alpha).clamp(max=clip)
        value = torch.sum(q * (ta - 1.0), dim=-1) / (alpha * (alpha - 1.0))
        rho = ta / alpha
    surrogate = -torch.sum(q * rho.detach() * log_q, dim=-1)  # its gradient is ∇D_α
    return value.detach(), surrogate


def alpha_divergence(logits: torch.Tensor, target_probs: torch.Tensor, alpha_min: float = -1.0,
                     alpha_max: float = 1.0, clip: float = 5.0) -> torch.Tensor:
    """Adaptive alpha-divergence loss (batch mean) of ``logits`` from ``target_probs``."""
    if not -1.0 <= alpha_min <= alpha_max <= 1.0:
        raise ValueError(f"need -1 <= alpha_min <= alpha_max <= 1, got {alpha_min}, {alpha_max}")
    p = target_probs.detach().float()
    v_lo, s_lo = _divergence_and_surrogate(logits, p, alpha_min, clip)
    v_hi, s_hi = _divergence_and_surrogate(logits, p, alpha_max, clip)
    surrogate = torch.where(v_lo > v_hi, s_lo, s_hi).mean()
    value = torch.maximum(v_lo, v_hi).mean()
    return surrogate + (value - surrogate).detach()  # value: the divergence; gradient: ∇D_α
