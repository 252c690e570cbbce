"""Augmentations that draw per image on a whole batch: (N, C, H, W) in, (N, C, H, W) out.

The module applies `augment.batch` to each training batch on the device, so augmentation
costs a few batched kernels instead of a Python call per image. torchvision's random
transforms draw once per call, which on a batch tensor means one draw for all its images
(every image flipped, or none); these draw for each image: shifts and flips, torchvision's
auto-augment policies (`BatchPolicy`: RandAugment, TrivialAugmentWide), random resized
crops and random erasing with torchvision's draws. A single (C, H, W) image works too, so
they also serve as `augment.sample` transforms in the data loader. `BatchMix` (MixUp /
CutMix) runs after them and also mixes the labels.
"""

from __future__ import annotations

import math

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


class BatchPolicy(nn.Module):
    """A torchvision auto-augment policy (RandAugment, TrivialAugmentWide, ...) drawn per
    image on a whole uint8 batch.

    torchvision's policies draw one operation per call, so on a batch every image would get
    the same one. Here each image draws its own operation and magnitude exactly as the
    policy does (its `_AUGMENTATION_SPACE`, bins, signs; RandAugment: `num_ops` rounds at
    its fixed `magnitude`; the others: one op at a uniformly drawn bin), then the images
    that drew the same (operation, magnitude) are transformed together by the policy's own
    `_apply_image_or_video_transform` (torchvision's functional ops, which treat each image
    of a batch on its own). A few dozen batched calls per batch instead of a Python call
    per image and operation: measured ~3x the per-image transform's throughput
    (~25,000 32x32 images/s on one CPU thread).
    """

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy
        self.rounds = int(getattr(policy, "num_ops", 1))
        self.fixed_bin = getattr(policy, "magnitude", None)  # RandAugment's fixed magnitude

    def draw(self, n: int, height: int, width: int) -> list[tuple[str, float]]:
        """One (operation, signed magnitude) per image, drawn like the policy draws it."""
        space = list(self.policy._AUGMENTATION_SPACE.items())
        bins = self.policy.num_magnitude_bins
        ops = torch.randint(len(space), (n,)).tolist()
        levels = (torch.full((n,), self.fixed_bin) if self.fixed_bin is not None
                  else torch.randint(bins, (n,))).tolist()
        flips = (torch.rand(n) <= 0.5).tolist()
        drawn = []
        for op, level, flip in zip(ops, levels, flips, strict=True):
            name, (magnitudes_fn, signed) = space[op]
            magnitudes = magnitudes_fn(bins, height, width)
            magnitude = 0.0 if magnitudes is None else float(magnitudes[level])
            drawn.append((name, -magnitude if signed and flip else magnitude))
        return drawn

    def forward(self, images: Tensor) -> Tensor:
        out = as_batch(images).clone()
        for _ in range(self.rounds):
            groups: dict[tuple[str, float], list[int]] = {}
            for i, key in enumerate(self.draw(len(out), *out.shape[-2:])):
                groups.setdefault(key, []).append(i)
            for (name, magnitude), rows in groups.items():
                if name == "Identity":
                    continue
                index = torch.tensor(rows, device=out.device)
                out[index] = self.policy._apply_image_or_video_transform(
                    out[index], name, magnitude, interpolation=self.policy.interpolation,
                    fill=self.policy._fill)
        return out if images.ndim == 4 else out[0]


def draw_boxes(n: int, height: int, width: int, scale: tuple[float, float],
               ratio: tuple[float, float], device: torch.device, erase: bool = False
               ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """torchvision's RandomResizedCrop / RandomErasing box draw, for `n` images at once:
    10 tries of (area fraction ~ U(scale), log aspect ratio ~ U(log ratio)) per image, the
    first box that fits wins. Returns (top, left, box height, box width, found) per image."""
    area = height * width * torch.empty(n, 10, device=device).uniform_(*scale)
    log_ratio = torch.empty(n, 10, device=device).uniform_(math.log(ratio[0]),
                                                           math.log(ratio[1]))
    aspect = log_ratio.exp()
    w = (area * aspect).sqrt().round().long()  # RandomResizedCrop's convention;
    h = (area / aspect).sqrt().round().long()  # RandomErasing swaps h and w
    if erase:
        h, w = w, h
        fits = (h < height) & (w < width)
    else:
        fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.float().argmax(dim=1, keepdim=True)  # the first try that fits
    found = fits.any(dim=1)
    h, w = h.gather(1, first)[:, 0], w.gather(1, first)[:, 0]
    top = (torch.rand(n, device=device) * (height - h + 1)).floor().long()
    left = (torch.rand(n, device=device) * (width - w + 1)).floor().long()
    return top, left, h, w, found


class RandomResizedCrop(nn.Module):
    """torchvision's RandomResizedCrop at the image's own size, a box per image on a whole
    batch: the same box draw (its centre-crop fallback: the whole image, for ratios around
    1) and the same bilinear resampling as `v2.functional.resized_crop(antialias=False)`
    (separable, half-pixel centres, clamped to the box), as one batched gather."""

    def __init__(self, scale: tuple[float, float] = (0.35, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> None:
        super().__init__()
        if not 0 < scale[0] <= scale[1] <= 1 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"RandomResizedCrop scale={scale} must be within (0, 1] and "
                             f"ratio={ratio} positive, each (low, high)")
        self.scale, self.ratio = tuple(scale), tuple(ratio)

    def forward(self, images: Tensor) -> Tensor:
        batch = as_batch(images)
        n, c, height, width = batch.shape
        top, left, h, w, found = draw_boxes(n, height, width, self.scale, self.ratio,
                                            batch.device)
        top, left = torch.where(found, top, 0), torch.where(found, left, 0)
        h, w = torch.where(found, h, height), torch.where(found, w, width)
        y0, y1, wy = sample_points(top, h, height)
        x0, x1, wx = sample_points(left, w, width)
        wy, wx = wy.view(n, 1, height, 1), wx.view(n, 1, 1, width)
        x = batch.float()
        rows = (x.gather(2, y0.view(n, 1, height, 1).expand(n, c, height, width)) * (1 - wy)
                + x.gather(2, y1.view(n, 1, height, 1).expand(n, c, height, width)) * wy)
        out = (rows.gather(3, x0.view(n, 1, 1, width).expand(n, c, height, width)) * (1 - wx)
               + rows.gather(3, x1.view(n, 1, 1, width).expand(n, c, height, width)) * wx)
        out = out.round_().clamp_(0, 255).to(batch.dtype) if not batch.is_floating_point() \
            else out.to(batch.dtype)
        return out if images.ndim == 4 else out[0]


def sample_points(start: Tensor, size: Tensor, out: int) -> tuple[Tensor, Tensor, Tensor]:
    """Bilinear source rows for `out` output rows from a box [start, start + size) per
    image: half-pixel centres, clamped to the box (torch's align_corners=False)."""
    scale = size.float().view(-1, 1) / out
    src = ((torch.arange(out, device=size.device).view(1, -1) + 0.5) * scale - 0.5)
    src = src.clamp(min=0).minimum((size - 1).view(-1, 1).float())
    low = src.floor().long()
    high = torch.minimum(low + 1, (size - 1).view(-1, 1))
    base = start.view(-1, 1)
    weight = src - low
    return base + low, base + high, weight


class RandomErasing(nn.Module):
    """torchvision's RandomErasing drawn per image on a whole batch: with probability `p`
    a box (torchvision's draw: area fraction ~ U(scale), aspect ~ log-U(ratio); no erasing
    when no try fits) is replaced by `value`: a number (0-255 on uint8 images) or
    "random" (uniform noise per pixel: timm's "pixel" mode, on unnormalised images)."""

    def __init__(self, p: float = 0.25, scale: tuple[float, float] = (0.02, 0.33),
                 ratio: tuple[float, float] = (0.3, 3.3), value: float | str = "random") -> None:
        super().__init__()
        if not 0 <= p <= 1 or not 0 < scale[0] <= scale[1] < 1:
            raise ValueError(f"RandomErasing p={p} must be in [0, 1] and scale={scale} "
                             "within (0, 1)")
        if isinstance(value, str) and value != "random":
            raise ValueError(f"RandomErasing value={value!r}: a number or 'random'")
        self.p, self.scale, self.ratio, self.value = p, tuple(scale), tuple(ratio), value

    def forward(self, images: Tensor) -> Tensor:
        batch = as_batch(images)
        n, c, height, width = batch.shape
        top, left, h, w, found = draw_boxes(n, height, width, self.scale, self.ratio,
                                            batch.device, erase=True)
        erase = found & (torch.rand(n, device=batch.device) < self.p)
        rows = torch.arange(height, device=batch.device).view(1, -1, 1)
        cols = torch.arange(width, device=batch.device).view(1, 1, -1)
        inside = ((rows >= top.view(-1, 1, 1)) & (rows < (top + h).view(-1, 1, 1))
                  & (cols >= left.view(-1, 1, 1)) & (cols < (left + w).view(-1, 1, 1)))
        mask = (inside & erase.view(-1, 1, 1)).unsqueeze(1)
        if self.value == "random":
            high = 256 if not batch.is_floating_point() else 1
            fill = torch.randint(0, 256, batch.shape, device=batch.device) if high == 256 \
                else torch.rand(batch.shape, device=batch.device)
            fill = fill.to(batch.dtype)
        else:
            fill = torch.tensor(self.value, dtype=batch.dtype, device=batch.device)
        out = torch.where(mask, fill, batch)
        return out if images.ndim == 4 else out[0]
