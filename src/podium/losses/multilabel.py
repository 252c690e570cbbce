"""Multi-label losses: one sigmoid per label, multi-hot float targets (N, C).

Kept beside `podium.losses.multiclass` (whose losses take one class index per row): the
two families never mix (`build.check_loss_task` refuses one on the other's data).

Every loss takes raw logits (N, C) and float targets of the same shape (0/1, or soft values
in [0, 1]: each formula is linear in the target), returns the mean over rows and labels,
works from `logsigmoid` (log p and log(1 - p) without computing 1 - p), and upcasts
fp16/bf16 logits to float32, so losses and gradients stay finite on saturated logits and in
half precision. Per-label constants are non-persistent buffers, as in `podium.losses.multiclass`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from podium.losses.multiclass import CountsLike, _fmt, _to_1d, _upcast

POS_WEIGHTS = ("balanced", "sqrt")


def _check_multilabel(logits: Tensor, target: Tensor, num_labels: int | None, owner: str) -> None:
    """Targets must be multi-hot like the logits: a vector of class indices means multiclass
    data reached a multi-label loss (build.check_loss_task stops that from the config)."""
    if logits.ndim != 2 or target.shape != logits.shape:
        raise ValueError(
            f"{owner} expects logits (N, C) and multi-hot targets of the same shape, got "
            f"{tuple(logits.shape)} and {tuple(target.shape)}; class-index targets need a "
            "multiclass loss (loss=ce)"
        )
    if num_labels is not None and logits.shape[1] != num_labels:
        raise ValueError(f"{owner}: logits have C={logits.shape[1]} labels but {num_labels} "
                         "per-label values were given (pos_weight/class_counts)")


def pos_weights(pos_weight: Any, class_counts: CountsLike | None, train_rows: int) -> Tensor | None:
    """BCE's weight on each label's positive term: None, `balanced` (negatives/positives on
    the training split, so a label's positives and negatives weigh the same in total),
    `sqrt` (its square root, milder) or one number per label."""
    if pos_weight is None:
        return None
    if isinstance(pos_weight, str):
        if pos_weight not in POS_WEIGHTS:
            raise ValueError(f"pos_weight={pos_weight!r} is not understood; use None, "
                             f"{', '.join(POS_WEIGHTS)} or a list with one weight per label")
        if class_counts is None:
            raise ValueError(f"pos_weight={pos_weight} got class_counts=None; pass the training "
                             "split's positives per label, e.g. class_counts=[500, 50, 5]")
        positives = _to_1d(class_counts, "class_counts").clamp_min(1.0)  # 0 in a small split
        if train_rows < positives.max():
            raise ValueError(f"pos_weight={pos_weight} needs train_rows (got {train_rows}) >= "
                             f"every label's positives {_fmt(class_counts)}")
        ratio = ((train_rows - positives) / positives).clamp_min(1e-3)
        return (ratio.sqrt() if pos_weight == "sqrt" else ratio).float()
    weights = _to_1d(pos_weight, "pos_weight")
    if not bool(torch.isfinite(weights).all()) or bool((weights <= 0).any()):
        raise ValueError(f"pos_weight={_fmt(pos_weight)} must be finite and > 0")
    return weights.float()


class MultilabelBCE(nn.Module):
    """Binary cross-entropy with logits, one per label (torch's `binary_cross_entropy_with_
    logits`), optionally with `pos_weight` (see `pos_weights`) for rare labels."""

    pos_weight: Tensor | None

    def __init__(self, pos_weight: str | Sequence[float] | None = None,
                 class_counts: CountsLike | None = None, train_rows: int = 0) -> None:
        super().__init__()
        weight = pos_weights(pos_weight, class_counts, train_rows)
        self.register_buffer("pos_weight", weight, persistent=False)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        n = None if self.pos_weight is None else self.pos_weight.numel()
        _check_multilabel(logits, target, n, type(self).__name__)
        x = _upcast(logits)
        weight = None if self.pos_weight is None else self.pos_weight.to(x.dtype)
        return F.binary_cross_entropy_with_logits(x, target.to(x.dtype), pos_weight=weight)


class FocalBCE(nn.Module):
    """Sigmoid focal loss (Lin et al. 2017) per label:
    `-[a y (1-p)^gamma log p + (1-a)(1-y) p^gamma log(1-p)]` (a = `alpha`; None: no a).

    The modulating factors are `exp(gamma * logsigmoid(-/+x))`: no power of a value that can
    be exactly 0, so gradients stay finite for any gamma >= 0; gamma=0 is plain BCE.
    """

    def __init__(self, gamma: float = 2.0, alpha: float | None = None) -> None:
        super().__init__()
        if not gamma >= 0:
            raise ValueError(f"gamma={gamma!r} must be >= 0 (0 = BCE, 2 = paper default)")
        if alpha is not None and not 0 <= alpha <= 1:
            raise ValueError(f"alpha={alpha!r} must be in [0, 1] or None (RetinaNet: 0.25)")
        self.gamma, self.alpha = float(gamma), alpha

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        _check_multilabel(logits, target, None, type(self).__name__)
        x = _upcast(logits)
        y = target.to(x.dtype)
        log_p, log_q = F.logsigmoid(x), F.logsigmoid(-x)
        pos = -y * torch.exp(self.gamma * log_q) * log_p
        neg = -(1 - y) * torch.exp(self.gamma * log_p) * log_q
        if self.alpha is not None:
            pos, neg = self.alpha * pos, (1 - self.alpha) * neg
        return (pos + neg).mean()


class AsymmetricLoss(nn.Module):
    """Asymmetric loss (Ridnik et al. 2021, "Asymmetric Loss For Multi-Label Classification").

    Positives: `-(1-p)^gamma_pos log p`; negatives: `-p_m^gamma_neg log(1 - p_m)` with the
    shifted probability `p_m = max(p - clip, 0)`: easy negatives (p < clip) are discarded
    and the many negatives of a multi-label image are down-weighted more than positives.
    Defaults are the paper's (gamma_neg 4, gamma_pos 0, clip 0.05). The mean over rows and
    labels replaces the reference code's sum, so learning rates tuned with BCE carry over.
    """

    def __init__(self, gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05) -> None:
        super().__init__()
        for name, value in (("gamma_neg", gamma_neg), ("gamma_pos", gamma_pos)):
            if not value >= 0:
                raise ValueError(f"{name}={value!r} must be >= 0 (paper: gamma_neg=4, gamma_pos=0)")
        if not 0 <= clip < 1:
            raise ValueError(f"clip={clip!r} must be in [0, 1) (paper: 0.05)")
        self.gamma_neg, self.gamma_pos, self.clip = float(gamma_neg), float(gamma_pos), float(clip)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        _check_multilabel(logits, target, None, type(self).__name__)
        x = _upcast(logits)
        y = target.to(x.dtype)
        log_p = F.logsigmoid(x)
        pos = -y * torch.exp(self.gamma_pos * F.logsigmoid(-x)) * log_p
        if self.clip > 0:  # 1 - p_m = min(1 - p + clip, 1) >= clip: its log is finite
            log_not_pm = torch.log((torch.sigmoid(-x) + self.clip).clamp(max=1.0))
            p_m = (torch.sigmoid(x) - self.clip).clamp_min(torch.finfo(x.dtype).tiny)
            focus = p_m.pow(self.gamma_neg)
        else:
            log_not_pm = F.logsigmoid(-x)
            focus = torch.exp(self.gamma_neg * log_p)
        neg = -(1 - y) * focus * log_not_pm
        return (pos + neg).mean()


class SoftF1Multilabel(nn.Module):
    """`1 - soft F1` over the batch from sigmoid probabilities (+ `bce_weight * BCE`).

    TP = sum p*y, FP = sum p*(1-y), FN = sum (1-p)*y. `average="micro"`: one F1 from the
    sums over every row and label; `"macro"`: one F1 per label (sums over rows), averaged
    over the labels with a positive in the batch (the others have no recall). Its gradient
    fades for confident predictions: a little BCE helps early training; use large batches.
    """

    def __init__(self, average: str = "macro", bce_weight: float = 0.0) -> None:
        super().__init__()
        if average not in ("micro", "macro"):
            raise ValueError(f"average={average!r} must be micro or macro")
        if not bce_weight >= 0:
            raise ValueError(f"bce_weight={bce_weight!r} must be >= 0 (0 = pure soft-F1)")
        self.average, self.bce_weight = average, float(bce_weight)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        _check_multilabel(logits, target, None, type(self).__name__)
        x = _upcast(logits)
        y = target.to(x.dtype)
        p = torch.sigmoid(x)
        tp, fp, fn = (p * y).sum(0), (p * (1 - y)).sum(0), (torch.sigmoid(-x) * y).sum(0)
        if self.average == "micro":
            tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
            loss = 1 - 2 * tp / (2 * tp + fp + fn).clamp_min(torch.finfo(x.dtype).tiny)
        else:
            present = (y.sum(0) > 0).to(x.dtype)
            # a present label has 2TP + FP + FN >= its positives > 0; absent ones get +1
            f1 = 2 * tp / (2 * tp + fp + fn + (1 - present))
            loss = 1 - (f1 * present).sum() / present.sum().clamp_min(1)
        if self.bce_weight:
            loss = loss + self.bce_weight * F.binary_cross_entropy_with_logits(x, y)
        return loss
