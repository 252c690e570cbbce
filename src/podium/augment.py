"""Augmentations that draw per image on a whole batch: (N, C, H, W) in, (N, C, H, W) out.

The module applies `augment.batch` to each training batch on the device, so augmentation
costs one batched kernel instead of a Python call per image. torchvision's random
transforms draw once per call, which on a batch tensor means one draw for all its images
(every image flipped, or none); these draw for each image. A single (C, H, W) image works
too, so they also serve as `augment.sample` transforms in the data loader.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def as_batch(images: Tensor) -> Tensor:
    return images if images.ndim == 4 else images.unsqueeze(0)


class RandomShift(nn.Module):
    """Pad each side by `fraction` of the size, crop back at a random offset per image.

    CIFAR's pad-and-crop for any image size: torchvision's RandomCrop needs the size up
    front, and RandomAffine(translate=...) resamples the image (about 30x slower on small
    uint8 images). Any dtype; the result has the channels-last memory layout.
    """

    def __init__(self, fraction: float = 0.125, fill: int = 0) -> None:
        super().__init__()
        if not 0 <= fraction < 1:
            raise ValueError(f"RandomShift fraction={fraction} must be in [0, 1)")
        self.fraction, self.fill = fraction, fill

    def forward(self, images: Tensor) -> Tensor:
        batch = as_batch(images)
        n, _, h, w = batch.shape
        ph, pw = round(h * self.fraction), round(w * self.fraction)
        padded = F.pad(batch, [pw, pw, ph, ph], value=self.fill)
        device = batch.device
        top = torch.randint(0, 2 * ph + 1, (n, 1, 1), device=device)
        left = torch.randint(0, 2 * pw + 1, (n, 1, 1), device=device)
        rows = top + torch.arange(h, device=device).view(1, h, 1)
        cols = left + torch.arange(w, device=device).view(1, 1, w)
        # one gather: (n, h, w, C) viewed as (n, C, h, w)
        shifted = padded[torch.arange(n, device=device).view(n, 1, 1), :, rows, cols]
        shifted = shifted.permute(0, 3, 1, 2)
        return shifted if images.ndim == 4 else shifted[0]


class RandomFlip(nn.Module):
    """Mirror each image left-right (`dim=-1`; -2: upside down) with probability `p`."""

    def __init__(self, p: float = 0.5, dim: int = -1) -> None:
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"RandomFlip p={p} must be in [0, 1]")
        self.p, self.dim = p, dim

    def forward(self, images: Tensor) -> Tensor:
        batch = as_batch(images)
        flip = torch.rand(len(batch), device=batch.device) < self.p
        flipped = torch.where(flip.view(-1, 1, 1, 1), batch.flip(self.dim), batch)
        return flipped if images.ndim == 4 else flipped[0]


class BatchMix(nn.Module):
    """MixUp and CutMix (torchvision.transforms.v2) on a training batch: (images, labels) in,
    (float images, soft targets (N, C)) out.

    The module applies it after `augment.batch`, before normalisation (mixing commutes with
    it). A fraction `prob` of the batches is mixed; of those, a share `switch_prob` gets
    CutMix, the rest MixUp (an alpha of 0 turns that one off). Unmixed batches get one-hot
    targets, so the loss sees one kind of target. From `stop_epoch` on (an epoch index, or
    a fraction of the run's epochs when below 1) batches are clean again: the last epochs
    train on the images the test set looks like. The pairing is torchvision's: each image
    with its neighbour in the (shuffled) batch, one lambda per batch.
    """

    def __init__(self, num_classes: int, mixup_alpha: float = 0.2, cutmix_alpha: float = 1.0,
                 prob: float = 1.0, switch_prob: float = 0.5,
                 stop_epoch: float | None = None) -> None:
        super().__init__()
        from torchvision.transforms import v2

        if mixup_alpha < 0 or cutmix_alpha < 0 or not mixup_alpha + cutmix_alpha > 0:
            raise ValueError(f"augment.mix: mixup_alpha={mixup_alpha}, cutmix_alpha="
                             f"{cutmix_alpha}: both >= 0 and one > 0 (0 turns one off)")
        if not 0 <= prob <= 1 or not 0 <= switch_prob <= 1:
            raise ValueError(f"augment.mix: prob={prob} and switch_prob={switch_prob} must be "
                             "in [0, 1]")
        self.num_classes, self.prob = num_classes, prob
        self.switch_prob = switch_prob if mixup_alpha and cutmix_alpha else float(cutmix_alpha > 0)
        self.mixup = v2.MixUp(alpha=mixup_alpha, num_classes=num_classes) if mixup_alpha else None
        self.cutmix = v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes) \
            if cutmix_alpha else None
        self.stop_epoch, self.active = stop_epoch, True

    def set_epoch(self, epoch: int, max_epochs: int) -> None:
        """Mix iff `epoch < stop_epoch` (a fraction below 1: of `max_epochs`)."""
        stop = self.stop_epoch
        if stop is not None and 0 < stop < 1:
            stop = int(stop * max_epochs)
        self.active = stop is None or epoch < stop

    def forward(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        images = images.float()
        if not self.active or torch.rand(()) >= self.prob:
            return images, F.one_hot(labels, self.num_classes).float()
        transform = self.cutmix if torch.rand(()) < self.switch_prob else self.mixup
        return transform(images, labels)
