"""Multi-label losses against independent references (numpy formulas written from the papers,
torchvision's sigmoid_focal_loss, plain loops), finite differences, and finiteness in
fp32/fp16/bf16 on saturated logits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from omegaconf import OmegaConf
from torch import nn
from torchvision.ops import sigmoid_focal_loss

from podium.losses import loss_factory, losses_for
from podium.losses.multilabel import (
    AsymmetricLoss,
    FocalBCE,
    MultilabelBCE,
    SoftF1Multilabel,
    pos_weights,
)

CONF = Path(__file__).resolve().parents[1] / "conf"
# 4 rows, 3 labels; row 3 has no label, label 2 is rare
LOGITS = np.array([[2.0, -1.0, 0.5], [0.1, 0.3, -2.2], [-1.5, 2.5, 1.0], [0.7, -0.4, -3.0]])
TARGET = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=float)
COUNTS, ROWS = [50, 30, 5], 100


def sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def t(x: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.tensor(x, dtype=dtype)


def test_bce_equals_hand_formula_with_and_without_pos_weight() -> None:
    p = sig(LOGITS)
    plain = -(TARGET * np.log(p) + (1 - TARGET) * np.log(1 - p)).mean()
    assert MultilabelBCE()(t(LOGITS), t(TARGET)).item() == pytest.approx(plain, rel=1e-9)
    w = np.array([(ROWS - n) / n for n in COUNTS])  # negatives / positives: 1, 7/3, 19
    weighted = -(w * TARGET * np.log(p) + (1 - TARGET) * np.log(1 - p)).mean()
    loss = MultilabelBCE("balanced", COUNTS, ROWS).to(torch.float64)
    assert loss(t(LOGITS), t(TARGET)).item() == pytest.approx(weighted, rel=1e-6)
    assert pos_weights("sqrt", COUNTS, ROWS).numpy() == pytest.approx(np.sqrt(w), rel=1e-6)
    assert pos_weights([2, 3, 4], None, 0).tolist() == [2.0, 3.0, 4.0]


def test_pos_weight_survives_a_label_absent_from_the_training_split() -> None:
    weight = pos_weights("balanced", [10, 0], 20)  # 0 positives counted as 1
    assert weight.tolist() == pytest.approx([1.0, 19.0])


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha", [None, 0.25])
def test_focal_bce_equals_torchvision(gamma: float, alpha: float | None) -> None:
    ref = sigmoid_focal_loss(t(LOGITS), t(TARGET), alpha=-1 if alpha is None else alpha,
                             gamma=gamma, reduction="mean")
    got = FocalBCE(gamma, alpha)(t(LOGITS), t(TARGET))
    assert got.item() == pytest.approx(ref.item(), rel=1e-9)


def np_asymmetric(x: np.ndarray, y: np.ndarray, gamma_neg: float, gamma_pos: float,
                  clip: float) -> float:
    """The reference implementation's formula (Ridnik et al. 2021, AsymmetricLoss.forward),
    divided by the number of elements (the reference sums)."""
    xs_pos = sig(x)
    xs_neg = np.minimum(1 - xs_pos + clip, 1.0) if clip > 0 else 1 - xs_pos
    loss = y * np.log(np.maximum(xs_pos, 1e-8)) + (1 - y) * np.log(np.maximum(xs_neg, 1e-8))
    pt = xs_pos * y + xs_neg * (1 - y)
    gamma = gamma_pos * y + gamma_neg * (1 - y)
    return float(-(loss * (1 - pt) ** gamma).sum() / x.size)


@pytest.mark.parametrize("gamma_neg,gamma_pos,clip", [(4, 0, 0.05), (2, 1, 0.0), (0, 0, 0.0),
                                                      (3, 1, 0.2)])
def test_asymmetric_equals_reference_formula(gamma_neg, gamma_pos, clip) -> None:
    got = AsymmetricLoss(gamma_neg, gamma_pos, clip)(t(LOGITS), t(TARGET))
    assert got.item() == pytest.approx(np_asymmetric(LOGITS, TARGET, gamma_neg, gamma_pos, clip),
                                       rel=1e-9)


def test_asymmetric_without_focusing_or_clip_is_bce() -> None:
    x, y = t(LOGITS), t(TARGET)
    assert AsymmetricLoss(0, 0, 0)(x, y).item() == pytest.approx(MultilabelBCE()(x, y).item())


def test_asymmetric_discards_easy_negatives() -> None:
    """A negative whose probability is below clip contributes nothing."""
    x = torch.tensor([[-4.0, 2.0]], dtype=torch.float64)  # p = 0.018 < 0.05, p = 0.88
    y = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    only_positive = AsymmetricLoss(4, 0, 0.05)(x[:, 1:], y[:, 1:]).item() / 2
    assert AsymmetricLoss(4, 0, 0.05)(x, y).item() == pytest.approx(only_positive)


def loop_soft_f1(x: np.ndarray, y: np.ndarray, average: str) -> float:
    """Plain loops over rows and labels."""
    p = sig(x)
    n, c = x.shape
    tp, fp, fn = np.zeros(c), np.zeros(c), np.zeros(c)
    for i in range(n):
        for j in range(c):
            tp[j] += p[i, j] * y[i, j]
            fp[j] += p[i, j] * (1 - y[i, j])
            fn[j] += (1 - p[i, j]) * y[i, j]
    if average == "micro":
        return 1 - 2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum())
    f1s = [2 * tp[j] / (2 * tp[j] + fp[j] + fn[j]) for j in range(c) if y[:, j].sum() > 0]
    return 1 - sum(f1s) / len(f1s)


@pytest.mark.parametrize("average", ["micro", "macro"])
def test_soft_f1_equals_loops(average: str) -> None:
    y = TARGET.copy()
    y[:, 2] = 0  # an absent label: left out of the macro average
    got = SoftF1Multilabel(average)(t(LOGITS), t(y)).item()
    assert got == pytest.approx(loop_soft_f1(LOGITS, y, average), rel=1e-9)
    with_bce = SoftF1Multilabel(average, bce_weight=0.5)(t(LOGITS), t(y)).item()
    assert with_bce == pytest.approx(got + 0.5 * MultilabelBCE()(t(LOGITS), t(y)).item())


def test_soft_f1_micro_and_macro_differ_and_perfect_logits_score_zero() -> None:
    x, y = t(LOGITS), t(TARGET)
    assert SoftF1Multilabel("micro")(x, y).item() != pytest.approx(
        SoftF1Multilabel("macro")(x, y).item(), abs=1e-3)
    perfect = 40 * (2 * y - 1)
    for average in ("micro", "macro"):
        assert SoftF1Multilabel(average)(perfect, y).item() == pytest.approx(0, abs=1e-12)


LOSSES: dict[str, Callable[[], nn.Module]] = {
    "bce": lambda: MultilabelBCE(),
    "bce_balanced": lambda: MultilabelBCE("balanced", COUNTS, ROWS),
    "focal_g2": lambda: FocalBCE(2.0, 0.25),
    "focal_g0.5": lambda: FocalBCE(0.5),
    "asymmetric": lambda: AsymmetricLoss(),
    "asymmetric_g0.5": lambda: AsymmetricLoss(0.5, 0.5, 0.05),
    "asymmetric_noclip": lambda: AsymmetricLoss(4, 1, 0.0),
    "soft_f1_micro": lambda: SoftF1Multilabel("micro"),
    "soft_f1_macro_bce": lambda: SoftF1Multilabel("macro", bce_weight=0.5),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradcheck_float64(name: str) -> None:
    loss = LOSSES[name]().to(torch.float64)
    x = t(LOGITS).requires_grad_(True)
    y = t(np.where(TARGET == 1, 0.9, TARGET))  # soft targets too (MixUp)
    assert torch.autograd.gradcheck(lambda z: loss(z, y), (x,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_saturated_logits_in_half_precision(name: str, dtype: torch.dtype) -> None:
    """Confident right and confident wrong predictions: finite loss and gradient, and the
    wrong ones still get a gradient that lowers them (BCE-like losses)."""
    x = torch.tensor([[60000.0, -60000.0, 30.0], [-30.0, 60000.0, -60000.0]],
                     dtype=dtype).requires_grad_(True)
    y = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])  # (0,2) and (1,0) are wrong
    out = LOSSES[name]()(x, y)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(x.grad).all() and x.grad.dtype == dtype
    if name.startswith(("bce", "focal")) or name == "asymmetric_noclip":
        assert x.grad[0, 2] > 0 and x.grad[1, 0] < 0


@st.composite
def batches(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n, c = draw(st.integers(1, 8)), draw(st.integers(1, 6))
    logits = draw(arrays(np.float32, (n, c), elements=st.floats(-1e4, 1e4, width=32)))
    target = draw(arrays(np.float32, (n, c), elements=st.sampled_from([0.0, 1.0, 0.3])))
    return logits, target


@settings(max_examples=300, deadline=None)
@given(batch=batches(), name=st.sampled_from(sorted(n for n in LOSSES if "balanced" not in n)),
       dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]))
def test_loss_and_gradients_always_finite(batch, name: str, dtype: torch.dtype) -> None:
    logits, target = batch
    x = torch.tensor(logits).to(dtype).requires_grad_(True)
    loss = LOSSES[name]()(x, torch.tensor(target))
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.item() >= -1e-6
    assert torch.isfinite(x.grad).all()


def test_pos_weight_is_a_buffer_that_follows_to() -> None:
    loss = MultilabelBCE("balanced", COUNTS, ROWS)
    assert set(dict(loss.named_buffers())) == {"pos_weight"} and loss.state_dict() == {}
    assert loss.to(torch.float64).pos_weight.dtype == torch.float64


BAD: list[tuple[Callable[[], object], str]] = [
    (lambda: MultilabelBCE("inverse", COUNTS, ROWS), "'inverse'"),
    (lambda: MultilabelBCE("balanced", None, ROWS), "class_counts=None"),
    (lambda: MultilabelBCE("balanced", COUNTS, 10), "train_rows (got 10)"),
    (lambda: MultilabelBCE([1.0, -1.0]), "[1.0, -1.0]"),
    (lambda: FocalBCE(gamma=-1), "gamma=-1"),
    (lambda: FocalBCE(alpha=1.5), "alpha=1.5"),
    (lambda: AsymmetricLoss(clip=1.0), "clip=1.0"),
    (lambda: AsymmetricLoss(gamma_neg=-2), "gamma_neg=-2"),
    (lambda: SoftF1Multilabel("weighted"), "'weighted'"),
    (lambda: SoftF1Multilabel(bce_weight=-1), "bce_weight=-1"),
    # class indices (multiclass targets) reaching a multi-label loss
    (lambda: MultilabelBCE()(torch.zeros(2, 3), torch.zeros(2).long()), "loss=ce"),
    (lambda: MultilabelBCE([1, 2])(torch.zeros(2, 3), torch.zeros(2, 3)), "C=3"),
]


@pytest.mark.parametrize("make,needle", BAD, ids=[needle for _, needle in BAD])
def test_bad_input_is_one_line(make: Callable[[], object], needle: str) -> None:
    with pytest.raises(ValueError) as info:
        make()
    assert needle in str(info.value) and "\n" not in str(info.value)


MULTILABEL_CONFIGS = losses_for("multilabel")


@pytest.mark.parametrize("name", MULTILABEL_CONFIGS)
def test_loss_config_instantiates_and_gives_finite_loss(name: str) -> None:
    loss = loss_factory(OmegaConf.load(CONF / "loss" / f"{name}.yaml"))()
    gen = torch.Generator().manual_seed(0)
    x = (3 * torch.randn(16, 4, generator=gen)).requires_grad_(True)
    y = (torch.rand(16, 4, generator=gen) < 0.3).float()
    out = loss(x, y)
    out.backward()
    assert out.ndim == 0 and torch.isfinite(out) and torch.isfinite(x.grad).all()
