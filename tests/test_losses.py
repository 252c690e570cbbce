"""Losses against independent references: torch's F.cross_entropy, hand-written numpy formulas,
finite differences, and hypothesis property tests for finiteness in fp32/fp16/bf16."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from omegaconf import OmegaConf
from torch import nn

from podium.losses import loss_factory, losses_for
from podium.losses.multiclass import (
    BalancedSoftmaxLoss,
    FocalLoss,
    LDAMLoss,
    SoftF1Loss,
    WeightedCrossEntropy,
    class_weights,
)

CONF = Path(__file__).resolve().parents[1] / "conf"

# Fixed small batch: 5 samples, 3 classes, every class present.
LOGITS = np.array(
    [[2.0, -1.0, 0.5], [0.1, 0.3, -0.2], [-1.5, 2.5, 1.0], [0.0, 0.0, 3.0], [1.0, 2.0, -3.0]]
)
TARGET = np.array([0, 1, 1, 2, 0])
COUNTS = [500, 50, 5]


def np_log_softmax(x: np.ndarray) -> np.ndarray:
    """Reference log-softmax in float64 numpy, independent of torch."""
    z = x - x.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def np_weighted_ce(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> float:
    """sum_i w_{y_i} (-log p_{i, y_i}) / sum_i w_{y_i}; w=None means plain mean."""
    w = np.ones(x.shape[1]) if w is None else w
    nll = -np_log_softmax(x)[np.arange(len(y)), y]
    return float((w[y] * nll).sum() / w[y].sum())


def t(x: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.tensor(x, dtype=dtype)


def tl(y: np.ndarray) -> torch.Tensor:
    return torch.tensor(y, dtype=torch.long)


# -- class_weights --------------------------------------------------------------------------


def test_class_weights_match_formulas() -> None:
    n = np.array(COUNTS, dtype=np.float64)
    beta = 0.99
    expected = {
        "inverse": 1 / n,
        "sqrt_inverse": 1 / np.sqrt(n),
        "effective": (1 - beta) / (1 - beta**n),
    }
    for scheme, w in expected.items():
        w = w * len(n) / w.sum()
        got = class_weights(COUNTS, scheme, beta=beta)
        np.testing.assert_allclose(got.numpy(), w, rtol=1e-6, err_msg=scheme)
        assert got.sum().item() == pytest.approx(3.0)


def test_effective_weights_interpolate_between_uniform_and_inverse() -> None:
    assert torch.allclose(class_weights(COUNTS, "effective", beta=0.0), torch.ones(3))
    inv = class_weights(COUNTS, "inverse")
    near = class_weights(COUNTS, "effective", beta=1 - 1e-9)
    assert torch.allclose(near, inv, rtol=1e-4)


def test_class_weights_accept_tensor_and_numpy() -> None:
    ref = class_weights(COUNTS)
    assert torch.equal(class_weights(torch.tensor(COUNTS)), ref)
    assert torch.equal(class_weights(np.array(COUNTS)), ref)


# -- weighted CE ------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["inverse", "sqrt_inverse", "effective"])
def test_weighted_ce_equals_torch_weighted_ce(scheme: str) -> None:
    x, y = t(LOGITS, torch.float32), tl(TARGET)
    w = class_weights(COUNTS, scheme)
    ref = F.cross_entropy(x, y, weight=w)
    assert WeightedCrossEntropy(COUNTS, scheme)(x, y).item() == pytest.approx(ref.item(), rel=1e-6)


def test_weighted_ce_equals_hand_formula() -> None:
    n = np.array(COUNTS, dtype=np.float64)
    w = (1 / n) * 3 / (1 / n).sum()
    got = WeightedCrossEntropy(COUNTS)(t(LOGITS), tl(TARGET)).item()
    assert got == pytest.approx(np_weighted_ce(LOGITS, TARGET, w), rel=1e-6)


# -- focal ------------------------------------------------------------------------------------


def np_focal(x: np.ndarray, y: np.ndarray, gamma: float, alpha: np.ndarray | None) -> float:
    """-alpha_y (1 - p_t)^gamma log p_t, mean divided by sum alpha_y (plain mean if None)."""
    logp = np_log_softmax(x)[np.arange(len(y)), y]
    p = np.exp(logp)
    a = np.ones(len(y)) if alpha is None else alpha[y]
    return float((-a * (1 - p) ** gamma * logp).sum() / a.sum())


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 3.5])
@pytest.mark.parametrize("alpha", [None, [0.25, 1.0, 2.0]])
def test_focal_equals_hand_formula(gamma: float, alpha: list[float] | None) -> None:
    loss = FocalLoss(gamma=gamma, alpha=alpha)
    got = loss(t(LOGITS), tl(TARGET)).item()
    a = None if alpha is None else np.array(alpha)
    assert got == pytest.approx(np_focal(LOGITS, TARGET, gamma, a), rel=1e-9)


def test_focal_balanced_alpha_is_inverse_frequency() -> None:
    n = np.array(COUNTS, dtype=np.float64)
    a = (1 / n) * 3 / (1 / n).sum()
    got = FocalLoss(gamma=2.0, alpha="balanced", class_counts=COUNTS)(t(LOGITS), tl(TARGET))
    assert got.item() == pytest.approx(np_focal(LOGITS, TARGET, 2.0, a), rel=1e-6)


def test_focal_gamma0_equals_cross_entropy() -> None:
    x, y = t(LOGITS, torch.float32), tl(TARGET)
    assert FocalLoss(gamma=0.0)(x, y).item() == pytest.approx(F.cross_entropy(x, y).item(), 1e-7)
    alpha = [0.3, 1.0, 2.5]
    ref = F.cross_entropy(x, y, weight=torch.tensor(alpha))
    got = FocalLoss(gamma=0.0, alpha=alpha)(x, y)
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    ref_bal = F.cross_entropy(x, y, weight=class_weights(COUNTS, "inverse"))
    got_bal = FocalLoss(gamma=0.0, alpha="balanced", class_counts=COUNTS)(x, y)
    assert got_bal.item() == pytest.approx(ref_bal.item(), rel=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_focal_finite_gradient_at_pt_equal_one(gamma: float, dtype: torch.dtype) -> None:
    x = torch.tensor([[100.0, 0.0, -5.0], [0.0, 60.0, 1.0]], dtype=dtype, requires_grad=True)
    y = torch.tensor([0, 1])
    # The point of the test: p_t is exactly 1 in float32 (log p_t == 0).
    assert torch.all(F.log_softmax(x.float(), -1).gather(1, y[:, None]) == 0)
    loss = FocalLoss(gamma=gamma)(x, y)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() == 0.0
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 5.0])
def test_focal_saturated_wrong_prediction_has_gradient(gamma: float) -> None:
    x = torch.tensor([[-100.0, 100.0, 0.0]], requires_grad=True)
    loss = FocalLoss(gamma=gamma)(x, torch.tensor([0]))
    loss.backward()
    assert loss.item() == pytest.approx(200.0, rel=1e-4)  # -log p_t, (1-p_t)^gamma == 1
    # d/dx_t = softmax_t - 1 ~ -1 and d/dx_wrong ~ +1: the model is pushed to fix it.
    assert x.grad[0, 0].item() == pytest.approx(-1.0, abs=1e-3)
    assert x.grad[0, 1].item() == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_focal_accurate_near_pt_equal_one(gamma: float) -> None:
    # 1 - p_t ~ 1e-9: computing it as 1 - clamp(p_t, eps, 1 - eps) would be off by orders.
    x = np.array([[0.0, -20.7, -25.0]])
    got = FocalLoss(gamma=gamma)(t(x), tl(np.array([0]))).item()
    ref = np_focal(x, np.array([0]), gamma, None)
    assert 0 < ref < 1e-8
    assert got == pytest.approx(ref, rel=1e-5, abs=0)  # default abs=1e-12 would hide it


def test_focal_downweights_easy_examples() -> None:
    easy = torch.tensor([[4.0, 0.0, 0.0]])
    ce = F.cross_entropy(easy, torch.tensor([0])).item()
    focal = FocalLoss(gamma=2.0)(easy, torch.tensor([0])).item()
    p = math.exp(4) / (math.exp(4) + 2)
    assert focal == pytest.approx((1 - p) ** 2 * ce, rel=1e-5)


# -- soft F1 ----------------------------------------------------------------------------------


def np_soft_f1_loss(x: np.ndarray, y: np.ndarray) -> float:
    """1 - mean over present classes of 2TP / (2TP + FP + FN), from softmax probabilities."""
    p = np.exp(np_log_softmax(x))
    onehot = np.eye(x.shape[1])[y]
    tp = (p * onehot).sum(0)
    fp = (p * (1 - onehot)).sum(0)
    fn = ((1 - p) * onehot).sum(0)
    present = onehot.sum(0) > 0
    f1 = 2 * tp[present] / (2 * tp[present] + fp[present] + fn[present])
    return float(1 - f1.mean())


def test_soft_f1_equals_hand_formula_three_classes() -> None:
    got = SoftF1Loss()(t(LOGITS), tl(TARGET)).item()
    assert got == pytest.approx(np_soft_f1_loss(LOGITS, TARGET), rel=1e-9)


def test_soft_f1_averages_only_present_classes() -> None:
    x = np.concatenate([LOGITS, np.full((5, 1), 0.7)], axis=1)  # class 3 never a target
    got = SoftF1Loss()(t(x), tl(TARGET)).item()
    ref = np_soft_f1_loss(x, TARGET)
    assert got == pytest.approx(ref, rel=1e-9)
    all_four = 1 - 0.75 * (1 - ref)  # averaging in the absent class with F1 = 0
    assert abs(got - all_four) > 1e-3


def test_soft_f1_perfect_logits_near_zero_and_ce_term() -> None:
    y = torch.tensor([0, 2, 1, 2, 3])
    x = 50.0 * F.one_hot(y, 4).float()
    assert SoftF1Loss()(x, y).item() < 1e-6
    z = t(LOGITS, torch.float32)
    yy = tl(TARGET)
    ref = SoftF1Loss()(z, yy) + 0.3 * F.cross_entropy(z, yy)
    assert SoftF1Loss(ce_weight=0.3)(z, yy).item() == pytest.approx(ref.item(), rel=1e-6)


@pytest.mark.parametrize("num_classes", [1, 2, 7])
def test_soft_f1_any_number_of_classes(num_classes: int) -> None:
    x = torch.randn(6, num_classes, generator=torch.Generator().manual_seed(0))
    y = torch.arange(6) % num_classes
    got = SoftF1Loss()(x.double(), y).item()
    assert got == pytest.approx(np_soft_f1_loss(x.double().numpy(), y.numpy()), rel=1e-9)


# -- balanced softmax -------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [1.0, 0.5, 0.0])
def test_balanced_softmax_equals_ce_on_adjusted_logits(tau: float) -> None:
    x, y = t(LOGITS, torch.float32), tl(TARGET)
    prior = torch.tensor(COUNTS, dtype=torch.float32) / sum(COUNTS)
    ref = F.cross_entropy(x + tau * prior.log(), y)
    got = BalancedSoftmaxLoss(COUNTS, tau=tau)(x, y)
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)


# -- LDAM -------------------------------------------------------------------------------------


def np_ldam(
    x: np.ndarray, y: np.ndarray, counts: list[int], max_margin: float, s: float, beta: float | None
) -> float:
    """CE(s * (x - m_y onehot)), m_c = n_c^-1/4 rescaled to max max_margin; beta -> DRW weights."""
    n = np.array(counts, dtype=np.float64)
    m = n**-0.25
    m = m * max_margin / m.max()
    z = x.copy()
    z[np.arange(len(y)), y] -= m[y]
    w = None
    if beta is not None:
        w = (1 - beta) / (1 - beta**n)
        w = w * len(n) / w.sum()
    return np_weighted_ce(s * z, y, w)


def test_ldam_equals_hand_formula() -> None:
    loss = LDAMLoss(COUNTS, max_margin=0.5, s=30.0)
    got = loss(t(LOGITS / 10), tl(TARGET)).item()
    assert got == pytest.approx(np_ldam(LOGITS / 10, TARGET, COUNTS, 0.5, 30.0, None), rel=1e-6)
    loss2 = LDAMLoss(COUNTS, max_margin=0.3, s=2.0, drw_epoch=0, beta=0.999)
    got2 = loss2(t(LOGITS), tl(TARGET)).item()
    assert got2 == pytest.approx(np_ldam(LOGITS, TARGET, COUNTS, 0.3, 2.0, 0.999), rel=1e-6)


def test_ldam_drw_switches_at_80_percent_by_default() -> None:
    x, y = t(LOGITS / 10), tl(TARGET)
    plain = np_ldam(LOGITS / 10, TARGET, COUNTS, 0.5, 30.0, None)
    drw = np_ldam(LOGITS / 10, TARGET, COUNTS, 0.5, 30.0, 0.9999)
    assert abs(plain - drw) > 1e-3  # the switch is observable
    loss = LDAMLoss(COUNTS)
    assert loss(x, y).item() == pytest.approx(plain, rel=1e-6)  # before any set_epoch
    for epoch in range(10):
        loss.set_epoch(epoch, 10)
        loss.set_epoch(epoch, 10)  # idempotent
        expected = drw if epoch >= 8 else plain
        assert loss(x, y).item() == pytest.approx(expected, rel=1e-6), epoch
    loss.set_epoch(3, 10)  # state depends on the arguments only
    assert loss(x, y).item() == pytest.approx(plain, rel=1e-6)


def test_ldam_explicit_drw_epoch() -> None:
    x, y = t(LOGITS / 10), tl(TARGET)
    plain = np_ldam(LOGITS / 10, TARGET, COUNTS, 0.5, 30.0, None)
    drw = np_ldam(LOGITS / 10, TARGET, COUNTS, 0.5, 30.0, 0.9999)
    loss = LDAMLoss(COUNTS, drw_epoch=3)
    loss.set_epoch(2, 100)
    assert loss(x, y).item() == pytest.approx(plain, rel=1e-6)
    loss.set_epoch(3, 100)
    assert loss(x, y).item() == pytest.approx(drw, rel=1e-6)


# -- gradients by finite differences ----------------------------------------------------------


GRADCHECK_LOSSES: dict[str, Callable[[], nn.Module]] = {
    "weighted_ce": lambda: WeightedCrossEntropy(COUNTS, "effective", beta=0.99),
    "focal_g2_alpha": lambda: FocalLoss(2.0, alpha="balanced", class_counts=COUNTS),
    "focal_g0.5": lambda: FocalLoss(0.5),
    "soft_f1_ce": lambda: SoftF1Loss(ce_weight=0.5),
    "balanced_softmax": lambda: BalancedSoftmaxLoss(COUNTS, tau=0.7),
    "ldam_drw": lambda: LDAMLoss(COUNTS, s=5.0, drw_epoch=0),
}


@pytest.mark.parametrize("name", sorted(GRADCHECK_LOSSES))
def test_gradcheck_float64(name: str) -> None:
    loss = GRADCHECK_LOSSES[name]().to(torch.float64)
    x = t(LOGITS).requires_grad_(True)
    y = tl(TARGET)
    assert torch.autograd.gradcheck(lambda z: loss(z, y), (x,), eps=1e-6, atol=1e-6)


# -- buffers ----------------------------------------------------------------------------------


BUFFERED: dict[str, tuple[Callable[[], nn.Module], set[str]]] = {
    "weighted_ce": (lambda: WeightedCrossEntropy(COUNTS), {"weight"}),
    "focal": (lambda: FocalLoss(alpha="balanced", class_counts=COUNTS), {"alpha"}),
    "balanced_softmax": (lambda: BalancedSoftmaxLoss(COUNTS), {"log_prior"}),
    "ldam": (lambda: LDAMLoss(COUNTS), {"margins", "drw_weight"}),
}


@pytest.mark.parametrize("name", sorted(BUFFERED))
def test_buffers_follow_to(name: str) -> None:
    build, names = BUFFERED[name]
    loss = build()
    assert set(dict(loss.named_buffers())) == names
    assert all(b.dtype == torch.float32 for b in loss.buffers())
    loss.to(torch.float64)
    assert all(b.dtype == torch.float64 for b in loss.buffers())
    out = loss(t(LOGITS), tl(TARGET))
    assert out.dtype == torch.float64
    loss.to("meta")  # a second device that exists on every machine
    assert all(b.device.type == "meta" for b in loss.buffers())


def test_focal_without_alpha_and_soft_f1_have_no_state() -> None:
    assert list(FocalLoss().buffers()) == [] and list(SoftF1Loss().buffers()) == []


# -- validation -------------------------------------------------------------------------------


BAD: list[tuple[Callable[[], object], str]] = [
    (lambda: class_weights(COUNTS, scheme="inverted"), "'inverted'"),
    (lambda: WeightedCrossEntropy(COUNTS, scheme="log"), "'log'"),
    (lambda: class_weights(COUNTS, "effective", beta=1.0), "beta=1.0"),
    (lambda: WeightedCrossEntropy([5, 0, 3]), "[5, 0, 3]"),
    (lambda: BalancedSoftmaxLoss([5, -2, 3]), "[5, -2, 3]"),
    (lambda: LDAMLoss(torch.tensor([0, 4])), "[0, 4]"),
    (lambda: FocalLoss(class_counts=[3, 0]), "[3, 0]"),
    (lambda: WeightedCrossEntropy(None), "class_counts=None"),
    (lambda: BalancedSoftmaxLoss(None), "class_counts=None"),
    (lambda: LDAMLoss(None), "class_counts=None"),
    (lambda: FocalLoss(alpha="balanced"), "class_counts=None"),
    (lambda: FocalLoss(gamma=-1.0), "gamma=-1.0"),
    (lambda: FocalLoss(gamma=float("nan")), "gamma=nan"),
    (lambda: FocalLoss(alpha=[1.0, 2.0], class_counts=COUNTS), "[1.0, 2.0]"),
    (lambda: FocalLoss(alpha="banana"), "'banana'"),
    (lambda: FocalLoss(alpha=0.25), "alpha=0.25"),
    (lambda: FocalLoss(alpha=[1.0, 0.0]), "[1.0, 0.0]"),
    (lambda: SoftF1Loss(ce_weight=-0.5), "ce_weight=-0.5"),
    (lambda: BalancedSoftmaxLoss(COUNTS, tau=-1.0), "tau=-1.0"),
    (lambda: LDAMLoss(COUNTS, max_margin=0.0), "max_margin=0.0"),
    (lambda: LDAMLoss(COUNTS, s=-3.0), "s=-3.0"),
    (lambda: LDAMLoss(COUNTS, drw_epoch=-1), "drw_epoch=-1"),
    (lambda: LDAMLoss(COUNTS, beta=1.5), "beta=1.5"),
    (lambda: WeightedCrossEntropy(["a", "b"]), "['a', 'b']"),
    (lambda: WeightedCrossEntropy([]), "[]"),
    # Forward-time: the number of classes is only known from the logits.
    (lambda: WeightedCrossEntropy(COUNTS)(torch.zeros(2, 5), torch.zeros(2).long()), "C=5"),
    (lambda: FocalLoss(alpha=[1, 2, 3])(torch.zeros(2, 2), torch.zeros(2).long()), "C=2"),
    (lambda: LDAMLoss(COUNTS)(torch.zeros(2, 4), torch.zeros(2).long()), "C=4"),
    (lambda: BalancedSoftmaxLoss(COUNTS)(torch.zeros(2, 2), torch.zeros(2).long()), "C=2"),
    (lambda: SoftF1Loss()(torch.zeros(2, 3, 4), torch.zeros(2).long()), "(2, 3, 4)"),
]


@pytest.mark.parametrize("make,needle", BAD, ids=[needle for _, needle in BAD])
def test_bad_input_raises_one_line_value_error(make: Callable[[], object], needle: str) -> None:
    with pytest.raises(ValueError) as info:
        make()
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_hydra_list_config_accepted() -> None:
    cfg = OmegaConf.create({"alpha": [1.0, 2.0, 3.0], "counts": COUNTS})
    loss = FocalLoss(alpha=cfg.alpha, class_counts=cfg.counts)
    assert torch.equal(loss.alpha, torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(WeightedCrossEntropy(cfg.counts).weight, class_weights(COUNTS))


# -- property tests ---------------------------------------------------------------------------


PROPERTY_LOSSES: dict[str, Callable[[list[int]], nn.Module]] = {
    "weighted_ce_inverse": lambda c: WeightedCrossEntropy(c),
    "weighted_ce_effective": lambda c: WeightedCrossEntropy(c, "effective"),
    "focal_g0": lambda c: FocalLoss(0.0, class_counts=c),
    "focal_g0.5": lambda c: FocalLoss(0.5, class_counts=c),
    "focal_g2_balanced": lambda c: FocalLoss(2.0, alpha="balanced", class_counts=c),
    "soft_f1": lambda c: SoftF1Loss(),
    "soft_f1_ce": lambda c: SoftF1Loss(ce_weight=1.0),
    "balanced_softmax": lambda c: BalancedSoftmaxLoss(c),
    "ldam": lambda c: LDAMLoss(c),
    "ldam_drw": lambda c: LDAMLoss(c, drw_epoch=0),
}
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@st.composite
def batches(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, list[int]]:
    n = draw(st.integers(1, 8))
    c = draw(st.integers(1, 6))
    logits = draw(arrays(np.float32, (n, c), elements=st.floats(-1e4, 1e4, width=32)))
    target = draw(arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    counts = draw(st.lists(st.integers(1, 10**6), min_size=c, max_size=c))
    return logits, target, counts


@settings(max_examples=400, deadline=None)
@given(
    batch=batches(), name=st.sampled_from(sorted(PROPERTY_LOSSES)), dtype=st.sampled_from(DTYPES)
)
def test_loss_and_gradients_always_finite(
    batch: tuple[np.ndarray, np.ndarray, list[int]], name: str, dtype: torch.dtype
) -> None:
    logits, target, counts = batch
    x = torch.tensor(logits).to(dtype).requires_grad_(True)
    loss = PROPERTY_LOSSES[name](counts)(x, torch.tensor(target))
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert loss.item() >= -1e-6  # all of these losses are non-negative
    assert x.grad is not None and x.grad.dtype == dtype and torch.isfinite(x.grad).all()


@settings(max_examples=100, deadline=None)
@given(batch=batches())
def test_focal_gamma0_matches_weighted_ce_property(
    batch: tuple[np.ndarray, np.ndarray, list[int]],
) -> None:
    logits, target, counts = batch
    x, y = torch.tensor(logits), torch.tensor(target)
    w = class_weights(counts, "inverse")
    ref = F.cross_entropy(x, y, weight=w)
    got = FocalLoss(0.0, alpha="balanced", class_counts=counts)(x, y)
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-5)


# -- Hydra configs ----------------------------------------------------------------------------

EXPECTED_LOSS_CONFIGS = {
    "ce",
    "label_smoothing",
    "weighted_ce",
    "focal",
    "soft_f1",
    "balanced_softmax",
    "ldam_drw",
}


def test_expected_loss_configs_exist() -> None:
    found = {p.stem for p in (CONF / "loss").glob("*.yaml")}
    assert EXPECTED_LOSS_CONFIGS <= found


def test_every_loss_config_declares_the_tasks_it_fits() -> None:
    """Every conf/loss file says which data.task values it fits (what `check_loss_task` and
    the no-`loss=` default read), and the families are the ones their targets need:
    predictions against floats, one sigmoid per label, or class scores."""
    regression, multilabel = {"mse", "l1", "huber"}, {"bce", "focal_bce", "asymmetric",
                                                      "soft_f1_multilabel"}
    for path in sorted((CONF / "loss").glob("*.yaml")):
        declared = OmegaConf.load(path).get("tasks")
        expected = ({"regression"} if path.stem in regression else {"multilabel"}
                    if path.stem in multilabel else {"multiclass", "binary"})
        assert declared is not None and set(declared) == expected, path.stem
    assert losses_for("multilabel") == ["bce", "asymmetric", "focal_bce", "soft_f1_multilabel"]
    assert losses_for("regression") == ["mse", "huber", "l1"]


CLASSIFICATION_LOSS_CONFIGS = [  # regression: test_tasks; multi-label: test_multilabel_losses
    p for p in sorted((CONF / "loss").glob("*.yaml")) if p.stem in losses_for("multiclass")]


@pytest.mark.parametrize("path", CLASSIFICATION_LOSS_CONFIGS, ids=lambda p: p.stem)
def test_loss_config_instantiates_and_gives_finite_loss(path: Path) -> None:
    factory = loss_factory(OmegaConf.load(path))
    kwargs = {}
    if "class_counts" in inspect.signature(factory).parameters:
        kwargs["class_counts"] = [100, 10, 3, 1]
    loss = factory(**kwargs)
    assert isinstance(loss, nn.Module)
    gen = torch.Generator().manual_seed(0)
    x = (3 * torch.randn(16, 4, generator=gen)).requires_grad_(True)
    y = torch.randint(0, 4, (16,), generator=gen)
    if hasattr(loss, "set_epoch"):
        loss.set_epoch(0, 10)
    out = loss(x, y)
    out.backward()
    assert out.ndim == 0 and torch.isfinite(out) and torch.isfinite(x.grad).all()


def test_label_smoothing_config_matches_torch() -> None:
    loss = loss_factory(OmegaConf.load(CONF / "loss" / "label_smoothing.yaml"))()
    x, y = t(LOGITS, torch.float32), tl(TARGET)
    ref = F.cross_entropy(x, y, label_smoothing=0.1)
    assert loss(x, y).item() == pytest.approx(ref.item(), rel=1e-6)
    assert loss(x, y).item() != pytest.approx(F.cross_entropy(x, y).item(), rel=1e-3)
