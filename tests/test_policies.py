"""Augmentation policies drawn per image on a whole batch, against torchvision's own
functional ops applied to one image at a time."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

import podium.model.augment as A
from podium.model.augment import BatchPolicy, RandomErasing, RandomResizedCrop, draw_boxes


def images(n=16, size=32, channels=3, seed=0):
    torch.manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8)


# What torchvision's policies do for each operation, written with its public functional API
# (nearest interpolation and fill 0: the policies' defaults), for one image.
def reference(image, name, m):
    nearest = InterpolationMode.NEAREST
    ops = {
        "Identity": lambda x: x,
        "ShearX": lambda x: TF.affine(x, angle=0.0, translate=[0, 0], scale=1.0,
                                      shear=[math.degrees(math.atan(m)), 0.0],
                                      interpolation=nearest, fill=0, center=[0, 0]),
        "TranslateY": lambda x: TF.affine(x, angle=0.0, translate=[0, int(m)], scale=1.0,
                                          shear=[0.0, 0.0], interpolation=nearest, fill=0),
        "Rotate": lambda x: TF.rotate(x, m, interpolation=nearest, fill=0),
        "Brightness": lambda x: TF.adjust_brightness(x, 1.0 + m),
        "Color": lambda x: TF.adjust_saturation(x, 1.0 + m),
        "Contrast": lambda x: TF.adjust_contrast(x, 1.0 + m),
        "Sharpness": lambda x: TF.adjust_sharpness(x, 1.0 + m),
        "Posterize": lambda x: TF.posterize(x, int(m)),
        "Solarize": lambda x: TF.solarize(x, 255.0 * m),
        "AutoContrast": TF.autocontrast,
        "Equalize": TF.equalize,
    }
    return ops[name](image)


ASSIGNED = [("Identity", 0.0), ("ShearX", 0.2), ("TranslateY", -5.0), ("Rotate", 20.0),
            ("Brightness", -0.4), ("Color", 0.6), ("Contrast", 0.3), ("Sharpness", -0.5),
            ("Posterize", 4.0), ("Solarize", 0.5), ("AutoContrast", 0.0), ("Equalize", 0.0),
            ("Rotate", 20.0), ("Rotate", -10.0), ("Contrast", 0.3), ("Equalize", 0.0)]


@pytest.mark.parametrize("policy", [v2.RandAugment(num_ops=1), v2.TrivialAugmentWide()])
def test_each_image_gets_its_own_operation_as_torchvision_applies_it(policy, monkeypatch):
    batch = images()
    transform = BatchPolicy(policy)
    monkeypatch.setattr(transform, "draw", lambda n, h, w: ASSIGNED[:n])
    out = transform(batch)
    for i, (name, magnitude) in enumerate(ASSIGNED):
        assert torch.equal(out[i], reference(batch[i], name, magnitude)), name


def test_randaugment_draws_per_image_at_its_fixed_magnitude():
    policy = v2.RandAugment(num_ops=2, magnitude=9, num_magnitude_bins=31)
    draws = BatchPolicy(policy).draw(4000, 32, 32)
    rotations = {abs(m) for name, m in draws if name == "Rotate"}
    assert len(rotations) == 1 and rotations.pop() == pytest.approx(9.0)  # linspace(0, 30, 31)[9]
    names = {name for name, _ in draws}
    assert names == set(policy._AUGMENTATION_SPACE)  # every operation, uniformly drawn
    share = sum(name == "Equalize" for name, _ in draws) / len(draws)
    assert share == pytest.approx(1 / len(names), abs=0.015)


def test_trivialaugment_draws_a_magnitude_per_image():
    draws = BatchPolicy(v2.TrivialAugmentWide()).draw(4000, 32, 32)
    rotations = [m for name, m in draws if name == "Rotate"]
    assert len({abs(m) for m in rotations}) == 31  # every bin of linspace(0, 135, 31)
    assert min(rotations) < 0 < max(rotations)  # signed


def test_a_batch_of_one_image_comes_out_different_per_row():
    """torchvision's policy on a batch draws once: every row would be the same."""
    same = images(n=1).expand(32, -1, -1, -1).contiguous()
    assert len({row.sum().item() for row in v2.RandAugment()(same)}) == 1
    out = BatchPolicy(v2.RandAugment())(same)
    assert len({tuple(row.flatten()[:64].tolist()) for row in out}) > 10
    assert out.dtype == torch.uint8 and out.shape == same.shape


# -- random resized crop -------------------------------------------------------------------
BOXES = (torch.tensor([0, 3, 5, 10]), torch.tensor([0, 4, 1, 7]), torch.tensor([32, 20, 17, 9]),
         torch.tensor([32, 25, 13, 11]), torch.ones(4, dtype=torch.bool))


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_resized_crop_equals_torchvision_resized_crop(dtype, monkeypatch):
    batch = images(n=4).to(dtype)
    monkeypatch.setattr(A, "draw_boxes", lambda *args, **kwargs: BOXES)
    out = RandomResizedCrop()(batch)
    for k in range(4):
        top, left, h, w = (int(b[k]) for b in BOXES[:4])
        ref = TF.resized_crop(batch[k].float(), top, left, h, w, [32, 32], antialias=False)
        if dtype == torch.float32:
            torch.testing.assert_close(out[k], ref, atol=1e-4, rtol=0)
        else:  # rounded to uint8: torch's half-way cases may round either way
            assert (out[k].float() - ref.round()).abs().max() <= 1


def test_resized_crop_of_the_whole_image_is_the_image():
    batch = images()
    assert torch.equal(RandomResizedCrop(scale=(1.0, 1.0), ratio=(1.0, 1.0))(batch), batch)


def test_boxes_follow_torchvision_ranges_and_differ_per_image():
    torch.manual_seed(1)
    top, left, h, w, found = draw_boxes(5000, 32, 40, (0.2, 0.6), (0.5, 2.0), torch.device("cpu"))
    assert found.all()
    area = (h * w).float() / (32 * 40)
    assert area.min() > 0.17 and area.max() < 0.64  # the scale range, up to rounding
    assert (w.float() / h).min() > 0.4 and (w.float() / h).max() < 2.3
    assert (top >= 0).all() and (top + h <= 32).all() and (left + w <= 40).all()
    assert len(set(zip(top.tolist(), left.tolist(), strict=True))) > 100


# -- random erasing --------------------------------------------------------------------------
def test_erasing_fills_one_box_per_image_with_the_value():
    batch = images(n=64)
    out = RandomErasing(p=1.0, scale=(0.05, 0.2), value=7)(batch)
    for before, after in zip(batch, out, strict=True):
        erased = (after != before).any(0) | (after == 7).all(0)
        rows, cols = erased.nonzero(as_tuple=True)
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert (after[:, rows.min():rows.max() + 1, cols.min():cols.max() + 1] == 7).all()
        assert 0.04 * 1024 <= box <= 0.21 * 1024
        outside = torch.ones_like(erased)
        outside[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = False
        assert torch.equal(after[:, outside], before[:, outside])


def test_erasing_probability_is_per_image():
    batch = images(n=400)
    out = RandomErasing(p=0.25)(batch)
    share = (out != batch).flatten(1).any(1).float().mean().item()
    assert share == pytest.approx(0.25, abs=0.07)
    assert torch.equal(RandomErasing(p=0.0)(batch), batch)
