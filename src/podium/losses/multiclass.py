"""Classification losses for imbalanced data.

Every loss takes raw logits ``(N, C)`` and integer targets ``(N,)`` and returns a scalar mean;
every one also takes soft targets ``(N, C)`` (class probabilities per row, what MixUp/CutMix
give), and then equals its hard-label value on one-hot rows (`soft_targets` below).
They work in log-space (``log_softmax``) and upcast fp16/bf16 logits to float32 (float64 stays
float64, so ``gradcheck`` works), because probabilities computed in half precision saturate to
exactly 0/1 and turn ``log`` and ``pow`` into ``inf``/``NaN``. Per-class constants (weights,
priors, margins) are registered buffers so they follow ``module.to(device)``; they are
non-persistent because they derive from config + data, not training: keeping them out of the
state_dict lets a checkpoint load under a different loss configuration.

Plain cross-entropy and label smoothing need no code here: use ``torch.nn.CrossEntropyLoss``.
A loss that moves the class prior its logits carry (class weights, a logit-adjusted loss)
says how in ``prior_factor``: a per-class factor on the training prior (podium.prior).
Multi-label losses (one sigmoid per label, multi-hot targets) are in ``podium.losses.multilabel``.
Why one module of ~330 lines: it is the whole `loss` config group (six losses of ~40 lines
each, sharing the soft-target and class-weight helpers), so a reader finds every option of
`conf/loss/` in one file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from podium.losses.soft_targets import soft_cross_entropy, soft_focal, soft_targets

CountsLike = Sequence[float] | Tensor
SCHEMES = ("inverse", "sqrt_inverse", "effective")


def _fmt(values: Any) -> str:
    """Render a user-supplied value for an error message (tensors as plain lists)."""
    if isinstance(values, Tensor):
        return str(values.tolist())
    try:
        return str(list(values))
    except TypeError:
        return repr(values)


def _to_1d(values: Any, name: str) -> Tensor:
    """Convert a list / ListConfig / ndarray / tensor of numbers to a 1-D float64 CPU tensor."""
    if isinstance(values, Tensor):
        t = values.detach().to("cpu", torch.float64)
    else:
        try:
            t = torch.tensor([float(v) for v in values], dtype=torch.float64)
        except (TypeError, ValueError) as err:
            msg = f"{name}={values!r} is not a list of numbers; pass e.g. {name}=[500, 50, 5]"
            raise ValueError(msg) from err
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(f"{name}={_fmt(values)} must be a non-empty 1-D list, one entry per class")
    return t


def _counts(class_counts: CountsLike | None, owner: str) -> Tensor:
    """Validate class counts: required, finite and strictly positive (they are inverted/logged)."""
    if class_counts is None:
        raise ValueError(
            f"{owner} got class_counts=None; pass the training-set label counts, "
            "e.g. class_counts=[500, 50, 5]"
        )
    counts = _to_1d(class_counts, "class_counts")
    if not bool(torch.isfinite(counts).all()) or bool((counts <= 0).any()):
        raise ValueError(
            f"class_counts={_fmt(class_counts)} must be finite and > 0; "
            "drop empty classes or add 1 to every count"
        )
    return counts


def _check_beta(beta: float) -> None:
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta={beta!r} must be in [0, 1); Cui et al. use 0.9999 or 0.999")


def _upcast(logits: Tensor) -> Tensor:
    """fp16/bf16 -> float32, float32/float64 unchanged: half-precision softmax saturates."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def _check_logits(logits: Tensor, num_classes: int | None, owner: str) -> None:
    """Shape checks done at forward time, when the number of classes is finally known."""
    if logits.ndim != 2:
        raise ValueError(
            f"{owner} expects logits of shape (N, C), got shape {tuple(logits.shape)}; "
            "flatten extra dimensions first"
        )
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ValueError(
            f"{owner}: logits have C={logits.shape[1]} classes but {num_classes} per-class "
            "values were given (class_counts/alpha); pass one value per class"
        )


def class_weights(
    class_counts: CountsLike, scheme: str = "inverse", beta: float = 0.9999
) -> Tensor:
    """Per-class loss weights from label counts, normalised to sum to the number of classes.

    Normalising to ``C`` keeps the loss on the same scale as unweighted CE, so learning rates
    tuned with plain CE stay sensible. Schemes: ``inverse`` (1/n), ``sqrt_inverse``
    (1/sqrt(n), milder), ``effective`` ((1-beta)/(1-beta^n), Cui et al. 2019: accounts for
    diminishing returns of extra samples; beta -> 0 gives uniform, beta -> 1 gives 1/n).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme={scheme!r}; use one of {', '.join(SCHEMES)}")
    counts = _counts(class_counts, "class_weights")
    if scheme == "inverse":
        w = 1.0 / counts
    elif scheme == "sqrt_inverse":
        w = counts.rsqrt()
    else:
        _check_beta(beta)
        w = (1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), counts))
    return (w * (counts.numel() / w.sum())).float()


class WeightedCrossEntropy(nn.Module):
    """Cross-entropy with class weights from :func:`class_weights`.

    Uses torch's weighted-mean convention: ``sum_i w_{y_i} l_i / sum_i w_{y_i}``, so the loss
    scale does not depend on the batch's class mix.
    """

    weight: Tensor

    def __init__(
        self, class_counts: CountsLike, scheme: str = "inverse", beta: float = 0.9999
    ) -> None:
        super().__init__()
        self.register_buffer("weight", class_weights(class_counts, scheme, beta), persistent=False)

    @property
    def prior_factor(self) -> Tensor:
        """What the class weights multiply the training prior by (podium.prior.score_prior)."""
        return self.weight

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        _check_logits(logits, self.weight.numel(), type(self).__name__)
        x = _upcast(logits)
        if target.ndim == 2:
            return soft_cross_entropy(x, soft_targets(target, x), self.weight.to(x.dtype))
        return F.cross_entropy(x, target, weight=self.weight.to(x.dtype))


def _alpha(alpha: Any, class_counts: CountsLike | None) -> Tensor | None:
    """Resolve FocalLoss's alpha: None, 'balanced' (inverse-frequency) or a per-class list."""
    if alpha is None:
        return None
    if isinstance(alpha, str):
        if alpha != "balanced":
            raise ValueError(f"alpha={alpha!r} is not understood; use None, 'balanced' or a list")
        return class_weights(_counts(class_counts, "FocalLoss(alpha='balanced')"), "inverse")
    if isinstance(alpha, int | float):
        raise ValueError(
            f"alpha={alpha!r} is a scalar (binary focal-loss convention); "
            "pass one weight per class or 'balanced'"
        )
    a = _to_1d(alpha, "alpha")
    if not bool(torch.isfinite(a).all()) or bool((a <= 0).any()):
        raise ValueError(f"alpha={_fmt(alpha)} must be finite and > 0; use a small value, not 0")
    return a.float()


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017) on logits: ``-alpha_y (1 - p_t)^gamma log p_t``.

    Down-weights easy, well-classified examples so rare/hard ones dominate the gradient.
    ``gamma=0`` is exactly (weighted) cross-entropy. ``alpha``: None, a per-class list, or
    ``"balanced"`` (inverse-frequency weights from ``class_counts``); with alpha the mean is
    divided by ``sum_i alpha_{y_i}`` like torch's weighted CE.

    Numerics: ``1 - p_t`` is ``-expm1(log p_t)`` (accurate near p_t = 1) clamped to the dtype's
    smallest normal number, so ``d/dx x^gamma`` at x = 0 never produces ``inf * 0 = NaN`` for
    gamma < 1. Working from log-probabilities keeps the gradient of a saturated *wrong*
    prediction non-zero (a probability-based implementation clamps it to zero).
    """

    alpha: Tensor | None

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: Sequence[float] | str | None = None,
        class_counts: CountsLike | None = None,
    ) -> None:
        super().__init__()
        if not gamma >= 0:  # also rejects NaN
            raise ValueError(f"gamma={gamma!r} must be >= 0 (0 = cross-entropy, 2 = paper default)")
        self.gamma = float(gamma)
        num = None if class_counts is None else _counts(class_counts, "FocalLoss").numel()
        a = _alpha(alpha, class_counts)
        if a is not None and num is not None and a.numel() != num:
            raise ValueError(
                f"alpha={_fmt(alpha)} has {a.numel()} entries but class_counts has {num}; "
                "pass one alpha per class"
            )
        self.num_classes = num if a is None else a.numel()
        self.register_buffer("alpha", a, persistent=False)

    @property
    def prior_factor(self) -> Tensor | None:
        """What alpha multiplies the training prior by (podium.prior.score_prior)."""
        return self.alpha

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        _check_logits(logits, self.num_classes, type(self).__name__)
        x = _upcast(logits)
        if target.ndim == 2:
            return soft_focal(x, soft_targets(target, x), self.gamma, self.alpha)
        logp_t = F.log_softmax(x, dim=-1).gather(1, target.unsqueeze(1)).squeeze(1)
        loss = -logp_t
        if self.gamma != 0.0:
            tiny = torch.finfo(x.dtype).tiny
            one_minus_pt = (-torch.expm1(logp_t)).clamp_min(tiny)
            loss = one_minus_pt.pow(self.gamma) * loss
        if self.alpha is None:
            return loss.mean()
        a = self.alpha.to(x.dtype)[target]
        return (a * loss).sum() / a.sum()


class SoftF1Loss(nn.Module):
    """``1 - macro soft-F1`` (+ ``ce_weight * CE``), optimising the competition metric directly.

    TP/FP/FN are summed over the batch from softmax probabilities and one-hot targets;
    F1_c = 2TP / (2TP + FP + FN), averaged over the classes present in the batch's targets
    (absent classes have no well-defined recall). Its gradient vanishes for confident
    predictions, so a little CE (``ce_weight``) helps early training. Use large batches.
    """

    def __init__(self, ce_weight: float = 0.0) -> None:
        super().__init__()
        if not ce_weight >= 0:
            raise ValueError(f"ce_weight={ce_weight!r} must be >= 0 (0 = pure soft-F1)")
        self.ce_weight = float(ce_weight)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        _check_logits(logits, None, type(self).__name__)
        x = _upcast(logits)
        logp = F.log_softmax(x, dim=-1)
        probs = logp.exp()
        soft = target.ndim == 2
        onehot = soft_targets(target, x) if soft else F.one_hot(target, x.shape[1]).to(x.dtype)
        tp = (probs * onehot).sum(0)
        fp = (probs * (1 - onehot)).sum(0)
        fn = ((1 - probs) * onehot).sum(0)
        present = (onehot.sum(0) > 0).to(x.dtype)
        # Present classes have 2TP + FP + FN >= support >= 1; absent ones get +1 to avoid 0/0.
        f1 = 2 * tp / (2 * tp + fp + fn + (1 - present))
        loss = 1 - (f1 * present).sum() / present.sum()
        if self.ce_weight:
            ce = soft_cross_entropy(x, onehot) if soft else F.nll_loss(logp, target)
            loss = loss + self.ce_weight * ce
        return loss


class BalancedSoftmaxLoss(nn.Module):
    """Balanced softmax / logit-adjusted CE (Ren et al. 2020, Menon et al. 2021).

    Trains on ``logits + tau * log(prior)`` so the raw logits estimate the *balanced*
    posterior: predict with the raw logits (argmax), nothing else to change at inference.
    """

    log_prior: Tensor

    def __init__(self, class_counts: CountsLike, tau: float = 1.0) -> None:
        super().__init__()
        if not tau >= 0:
            raise ValueError(f"tau={tau!r} must be >= 0 (1.0 = Bayes-optimal for balanced error)")
        counts = _counts(class_counts, "BalancedSoftmaxLoss")
        self.tau = float(tau)
        self.register_buffer("log_prior", (counts / counts.sum()).log().float(), persistent=False)

    @property
    def prior_factor(self) -> Tensor:
        """prior^-tau: the raw logits carry prior^(1 - tau) (podium.prior.score_prior)."""
        return (-self.tau * self.log_prior).exp()

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        _check_logits(logits, self.log_prior.numel(), type(self).__name__)
        x = _upcast(logits)
        if target.ndim == 2:  # torch's CE takes class probabilities as they are
            target = soft_targets(target, x)
        return F.cross_entropy(x + self.tau * self.log_prior.to(x.dtype), target)


class LDAMLoss(nn.Module):
    """LDAM loss with deferred re-weighting (Cao et al. 2019).

    Subtracts a margin ``m_c ∝ n_c^(-1/4)`` (largest = ``max_margin``) from the true-class logit,
    scales by ``s`` and applies CE: rare classes must win by a larger margin. ``s`` assumes
    cosine-similarity logits in [-1, 1] as in the paper; with a plain linear head use s ~ 1.

    DRW: from epoch ``drw_epoch`` on (default ``int(0.8 * max_epochs)``) CE uses
    effective-number class weights (``beta``). Contract: the LightningModule calls
    ``loss.set_epoch(self.current_epoch, self.trainer.max_epochs)`` at every train-epoch start
    when the loss has ``set_epoch``; the call is idempotent (state depends only on arguments).
    """

    margins: Tensor
    drw_weight: Tensor

    def __init__(
        self,
        class_counts: CountsLike,
        max_margin: float = 0.5,
        s: float = 30.0,
        drw_epoch: int | None = None,
        beta: float = 0.9999,
    ) -> None:
        super().__init__()
        counts = _counts(class_counts, "LDAMLoss")
        if not max_margin > 0:
            raise ValueError(f"max_margin={max_margin!r} must be > 0 (paper: 0.5)")
        if not s > 0:
            raise ValueError(f"s={s!r} must be > 0 (paper: 30 with cosine logits)")
        if drw_epoch is not None and drw_epoch < 0:
            raise ValueError(f"drw_epoch={drw_epoch!r} must be >= 0 or None (= 80% of max_epochs)")
        _check_beta(beta)
        margins = counts.pow(-0.25)
        self.register_buffer(
            "margins", (margins * (max_margin / margins.max())).float(), persistent=False
        )
        self.register_buffer(
            "drw_weight", class_weights(counts, "effective", beta), persistent=False
        )
        self.s = float(s)
        self.drw_epoch = drw_epoch
        self.drw_active = drw_epoch == 0

    @property
    def prior_factor(self) -> Tensor:
        """What the loss multiplies the training prior by now (podium.prior.score_prior): the
        deferred re-weighting once it is on (``set_epoch``), nothing before: a model
        checkpointed before ``drw_epoch`` carries the plain training shares."""
        return self.drw_weight if self.drw_active else torch.ones_like(self.drw_weight)

    def set_epoch(self, epoch: int, max_epochs: int) -> None:
        """Switch re-weighting on iff ``epoch >= drw_epoch`` (or ``int(0.8 * max_epochs)``)."""
        start = self.drw_epoch if self.drw_epoch is not None else int(0.8 * max_epochs)
        self.drw_active = epoch >= start

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        _check_logits(logits, self.margins.numel(), type(self).__name__)
        x = _upcast(logits)
        weight = self.drw_weight.to(x.dtype) if self.drw_active else None
        if target.ndim == 2:  # each class's margin scaled by its share of the row
            probs = soft_targets(target, x)
            adjusted = x - probs * self.margins.to(x.dtype)
            return soft_cross_entropy(self.s * adjusted, probs, weight)
        margin = self.margins.to(x.dtype)[target].unsqueeze(1)
        adjusted = x - F.one_hot(target, x.shape[1]).to(x.dtype) * margin
        return F.cross_entropy(self.s * adjusted, target, weight=weight)

