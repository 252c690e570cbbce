"""Augmentations torchvision lacks in a size-agnostic form (the rest come from transforms.v2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RandomShift(nn.Module):
    """Pad by `fraction` of each side and crop back at a random offset (pad-and-crop).

    CIFAR's standard augmentation for any image size: torchvision's RandomCrop needs the
    size up front, and RandomAffine(translate=...) resamples the image (about 30x slower on
    small uint8 images). Works on a (C, H, W) tensor of any dtype.
    """

    def __init__(self, fraction: float = 0.125, fill: int = 0) -> None:
        super().__init__()
        if not 0 <= fraction < 1:
            raise ValueError(f"RandomShift fraction={fraction} must be in [0, 1)")
        self.fraction, self.fill = fraction, fill

    def forward(self, image: Tensor) -> Tensor:
        h, w = image.shape[-2:]
        ph, pw = round(h * self.fraction), round(w * self.fraction)
        padded = F.pad(image, [pw, pw, ph, ph], value=self.fill)
        top = int(torch.randint(0, 2 * ph + 1, ()))
        left = int(torch.randint(0, 2 * pw + 1, ()))
        return padded[..., top : top + h, left : left + w]
