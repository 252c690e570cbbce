"""MixUp/CutMix: soft-target losses against hand-computed numpy references, the batch mixer
against the definitions of MixUp and CutMix, and the module feeding the loss soft targets
while its training metrics see the hard labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import CONF, image_spec, make_cfg
from podium.losses import loss_factory, losses_for
from podium.losses.multiclass import (
    BalancedSoftmaxLoss,
    FocalLoss,
    LDAMLoss,
    SoftF1Loss,
    WeightedCrossEntropy,
    class_weights,
)
from podium.model.augment import BatchMix

LOGITS = np.array([[2.0, -1.0, 0.5], [0.1, 0.3, -0.2], [-1.5, 2.5, 1.0], [0.0, 0.0, 3.0]])
SOFT = np.array([[0.7, 0.3, 0.0], [0.0, 1.0, 0.0], [0.2, 0.0, 0.8], [0.5, 0.25, 0.25]])
COUNTS = [500, 50, 5]


def np_log_softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def t(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


# -- every loss against its soft-target formula, written out in numpy ------------------------
def ref_ce(x, q, w=None):
    w = np.ones(x.shape[1]) if w is None else w
    return float((q * w * -np_log_softmax(x)).sum() / (q * w).sum())


def ref_focal(x, q, gamma, alpha=None):
    logp = np_log_softmax(x)
    per_class = (1 - np.exp(logp)) ** gamma * -logp
    if alpha is None:
        return float((q * per_class).sum() / len(x))
    return float((alpha * q * per_class).sum() / (alpha * q).sum())


def ref_soft_f1(x, q, ce_weight):
    p = np.exp(np_log_softmax(x))
    tp, fp, fn = (p * q).sum(0), (p * (1 - q)).sum(0), ((1 - p) * q).sum(0)
    f1 = 2 * tp / (2 * tp + fp + fn)  # every class has some target mass in SOFT
    return float(1 - f1.mean() + ce_weight * ref_ce(x, q))


def ref_ldam(x, q, counts, max_margin, s, weight):
    m = np.asarray(counts, dtype=np.float64) ** -0.25
    m = m * max_margin / m.max()
    return ref_ce(s * (x - q * m), q, weight)


def test_weighted_ce_soft_targets_match_the_formula():
    w = class_weights(COUNTS).double().numpy()
    got = WeightedCrossEntropy(COUNTS)(t(LOGITS), t(SOFT))
    assert got.item() == pytest.approx(ref_ce(LOGITS, SOFT, w), rel=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha", [None, [1.0, 2.0, 0.5]])
def test_focal_soft_targets_match_the_formula(gamma, alpha):
    got = FocalLoss(gamma=gamma, alpha=alpha)(t(LOGITS), t(SOFT))
    a = None if alpha is None else np.array(alpha)
    assert got.item() == pytest.approx(ref_focal(LOGITS, SOFT, gamma, a), rel=1e-6)


@pytest.mark.parametrize("ce_weight", [0.0, 0.3])
def test_soft_f1_soft_targets_match_the_formula(ce_weight):
    got = SoftF1Loss(ce_weight=ce_weight)(t(LOGITS), t(SOFT))
    assert got.item() == pytest.approx(ref_soft_f1(LOGITS, SOFT, ce_weight), rel=1e-6)


@pytest.mark.parametrize("tau", [0.5, 1.0])
def test_balanced_softmax_soft_targets_match_the_formula(tau):
    log_prior = np.log(np.array(COUNTS) / sum(COUNTS))
    got = BalancedSoftmaxLoss(COUNTS, tau=tau)(t(LOGITS), t(SOFT))
    assert got.item() == pytest.approx(ref_ce(LOGITS + tau * log_prior, SOFT), rel=1e-6)


@pytest.mark.parametrize("drw", [False, True])
def test_ldam_soft_targets_match_the_formula(drw):
    loss = LDAMLoss(COUNTS, max_margin=0.5, s=2.0, drw_epoch=0 if drw else 99, beta=0.99)
    weight = class_weights(COUNTS, "effective", 0.99).double().numpy() if drw else None
    got = loss(t(LOGITS), t(SOFT))
    assert got.item() == pytest.approx(ref_ldam(LOGITS, SOFT, COUNTS, 0.5, 2.0, weight),
                                       rel=1e-6)


def test_torch_cross_entropy_and_label_smoothing_take_soft_targets():
    """loss=ce and loss=label_smoothing are torch's own CE, which takes probabilities."""
    for name, eps in (("ce", 0.0), ("label_smoothing", 0.1)):
        loss = loss_factory(OmegaConf.load(CONF / "loss" / f"{name}.yaml"))()
        smoothed = SOFT * (1 - eps) + eps / SOFT.shape[1]
        got = loss(t(LOGITS), t(SOFT))
        assert got.item() == pytest.approx(ref_ce(LOGITS, smoothed), rel=1e-6), name


MULTILABEL = set(losses_for("multilabel"))  # (N, C) multi-hot targets: soft rows as they are
CLASSIFICATION_LOSSES = [p for p in sorted((CONF / "loss").glob("*.yaml"))
                         if p.stem in losses_for("multiclass")]


@pytest.mark.parametrize("path", CLASSIFICATION_LOSSES, ids=lambda p: p.stem)
def test_every_classification_loss_takes_soft_targets_equal_to_hard_on_one_hot(path: Path):
    """One-hot rows give exactly the hard-label loss (and its gradient), for every option of
    the loss group; any other soft row is a finite loss."""
    factory = loss_factory(OmegaConf.load(path))
    try:
        loss = factory(class_counts=COUNTS)
    except TypeError:
        loss = factory()
    if hasattr(loss, "set_epoch"):
        loss.set_epoch(9, 10)  # LDAM: deferred re-weighting on
    target = torch.tensor([0, 1, 2, 2])
    x_hard, x_soft = t(LOGITS).requires_grad_(), t(LOGITS).requires_grad_()
    hard = loss(x_hard, target)
    soft = loss(x_soft, torch.nn.functional.one_hot(target, 3).double())
    assert soft.item() == pytest.approx(hard.item(), rel=1e-9)
    hard.backward()
    soft.backward()
    assert torch.allclose(x_hard.grad, x_soft.grad)
    assert torch.isfinite(loss(t(LOGITS), t(SOFT)))


@pytest.mark.parametrize("name", sorted(MULTILABEL))
def test_multilabel_losses_take_soft_rows(name):
    """Multi-label losses score each label on its own: a mixed row is a per-label target."""
    factory = loss_factory(OmegaConf.load(CONF / "loss" / f"{name}.yaml"))
    try:
        loss = factory(class_counts=COUNTS)
    except TypeError:
        loss = factory()
    assert torch.isfinite(loss(t(LOGITS), t(SOFT)))


def test_soft_targets_of_the_wrong_shape_are_a_one_line_error():
    with pytest.raises(ValueError, match=r"soft targets must be float \(N, C\)"):
        FocalLoss()(t(LOGITS), t(SOFT[:, :2]))


# -- the mixer -----------------------------------------------------------------------------
def batch(n=8, size=16):
    torch.manual_seed(0)
    return (torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8),
            torch.arange(n) % 4)


def test_mixup_blends_each_image_with_its_neighbour_by_the_targets_lambda():
    images, labels = batch()
    mixed, soft = BatchMix(num_classes=4, mixup_alpha=0.4, cutmix_alpha=0.0)(images, labels)
    lam = soft[0, labels[0]].item()  # the row's own label's weight
    assert 0 < lam < 1
    expected = lam * images.float() + (1 - lam) * images.float().roll(1, 0)
    assert torch.allclose(mixed, expected, atol=1e-3)
    expected_soft = lam * torch.eye(4)[labels] + (1 - lam) * torch.eye(4)[labels.roll(1)]
    assert torch.allclose(soft, expected_soft, atol=1e-6)


def test_cutmix_pastes_a_box_whose_area_is_the_target_share():
    images, labels = batch(size=32)
    torch.manual_seed(3)
    mixed, soft = BatchMix(num_classes=4, mixup_alpha=0.0, cutmix_alpha=1.0)(images, labels)
    from_neighbour = (mixed == images.roll(1, 0).float()).all(1) & \
        (mixed != images.float()).any(1)  # pixels taken from the neighbour
    share = from_neighbour[0].float().mean().item()
    assert 0 < share < 1
    assert soft[0, labels[0]].item() == pytest.approx(1 - share, abs=0.01)
    assert torch.allclose(soft.sum(1), torch.ones(len(soft)))


def test_unmixed_batches_get_one_hot_targets_and_clean_images():
    images, labels = batch()
    mix = BatchMix(num_classes=4, prob=0.0)
    out, soft = mix(images, labels)
    assert torch.equal(out, images.float()) and torch.equal(soft, torch.eye(4)[labels])


@pytest.mark.parametrize(("stop", "clean_from"), [(3, 3), (0.8, 8), (None, 99)])
def test_batches_are_clean_from_stop_epoch_on(stop, clean_from):
    mix = BatchMix(num_classes=4, stop_epoch=stop)
    images, labels = batch()
    for epoch in range(10):
        mix.set_epoch(epoch, 10)
        _, soft = mix(images, labels)
        assert torch.equal(soft, torch.eye(4)[labels]) == (epoch >= clean_from), epoch


def test_switch_prob_picks_cutmix_or_mixup():
    images, labels = batch()
    mixup_only = BatchMix(num_classes=4, mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=0.0)
    for _ in range(5):  # MixUp changes every pixel (lambda in (0, 1)), CutMix only a box
        mixed, soft = mixup_only(images, labels)
        if 0.01 < soft[0, labels[0]] < 0.99:
            assert (mixed != images.float()).float().mean() > 0.9


# -- the module ----------------------------------------------------------------------------
def test_loss_gets_soft_targets_and_training_metrics_the_hard_labels():
    from podium.model.module import CompetitionModule
    from podium.model.nets import CifarResNet

    seen = []

    def loss(logits, target):
        seen.append(target)
        return torch.nn.functional.cross_entropy(logits, target)

    module = CompetitionModule(CifarResNet(depth=8, width=4, num_classes=4, in_chans=3),
                               spec=image_spec("abcd", mean=(0.5,) * 3, std=(0.5,) * 3),
                               loss=loss, mix=BatchMix(num_classes=4, mixup_alpha=1.0,
                                                       cutmix_alpha=0.0))
    images, labels = batch()

    class Trainer:  # the two attributes training_step reads
        log_every_n_steps = 1000
        global_step = 0
    module._trainer = Trainer()
    module.training_step((images, labels), 0)
    assert seen[0].shape == (8, 4) and seen[0].dtype == torch.float32
    assert torch.allclose(seen[0].sum(1), torch.ones(8))
    _, metric_targets, _ = module.train_batches[0]
    assert torch.equal(metric_targets, labels)


def test_mix_on_a_regression_task_is_a_one_line_error(tmp_path):
    from podium.build import build_mix
    from podium.errors import PodiumError
    from podium.spec import DataSpec

    cfg = make_cfg(tmp_path, ["augment/mix=mixup"])
    spec = DataSpec(task="regression", class_names=("y",), class_counts=(),
                    net_inputs={"in_chans": 1}, mean=(0.5,), std=(0.5,))
    with pytest.raises(PodiumError, match="augment.mix mixes class labels"):
        build_mix(cfg, spec)


@pytest.mark.parametrize("option", ["mixup", "cutmix", "both"])
def test_mix_options_train_on_the_demo(option, tmp_path, demo_root):
    from podium.train import train

    cfg = make_cfg(tmp_path, [f"augment/mix={option}", "augment=flip", "debug=limit",
                              "model.net.depth=8", "model.net.width=4",
                              f"data.root={demo_root}", f"data.demo_root={demo_root}"])
    if option != "both":  # the order of group and subgroup overrides does not matter
        assert cfg.augment.mix.cutmix_alpha == (1.0 if option == "cutmix" else 0.0)
    metrics = train(cfg).metrics
    assert np.isfinite(metrics["val/loss"])
