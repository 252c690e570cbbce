"""Soft targets (N, C): the class probabilities MixUp/CutMix give each training row.

The losses in podium.losses.multiclass call these for a 2-D target; each one reduces to its
hard-label formula on one-hot rows, so mixing changes the targets, never the loss's scale.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def soft_targets(target: Tensor, logits: Tensor) -> Tensor:
    """Soft targets (N, C) checked against the logits and cast to their dtype."""
    if target.shape != logits.shape or not target.is_floating_point():
        raise ValueError(f"soft targets must be float (N, C) like the logits "
                         f"{tuple(logits.shape)}, got {target.dtype} {tuple(target.shape)}")
    return target.to(logits.dtype)


def soft_cross_entropy(x: Tensor, probs: Tensor, weight: Tensor | None = None) -> Tensor:
    """``sum_i sum_c w_c q_ic (-log p_ic) / sum_i sum_c w_c q_ic``: on one-hot rows torch's
    weighted mean (``sum_i w_{y_i} l_i / sum_i w_{y_i}``); without weights the plain mean."""
    if weight is None:
        return -(probs * F.log_softmax(x, dim=-1)).sum(1).mean()
    weighted = probs * weight
    return -(weighted * F.log_softmax(x, dim=-1)).sum() / weighted.sum()


def soft_focal(x: Tensor, probs: Tensor, gamma: float, alpha: Tensor | None) -> Tensor:
    """``sum_c alpha_c q_c (1 - p_c)^gamma (-log p_c)``, normalised like the hard loss."""
    logp = F.log_softmax(x, dim=-1)
    loss = -logp
    if gamma != 0.0:
        loss = (-torch.expm1(logp)).clamp_min(torch.finfo(x.dtype).tiny).pow(gamma) * loss
    weight = probs if alpha is None else probs * alpha.to(x.dtype)
    total = (weight * loss).sum()
    return total / len(x) if alpha is None else total / weight.sum()
