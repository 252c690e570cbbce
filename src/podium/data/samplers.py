"""Class-balanced (and, for multi-label data, rarest-label) sampling that is reproducible
and safe under DDP."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """Sampling with replacement whose order is a pure function of ``seed + epoch``: every
    DDP rank draws the same list (Lightning's wrapper shards it), a resumed run the same
    epochs. ``set_epoch(e)`` makes the next iteration epoch ``e``; each iteration advances it."""

    num_samples: int
    seed: int
    _epoch: int

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``__iter__`` produce epoch ``epoch``'s order."""
        self._epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def next_generator(self) -> torch.Generator:
        generator = torch.Generator().manual_seed(self.seed + self._epoch)
        self._epoch += 1
        return generator


class ClassBalancedSampler(EpochSampler):
    """Draw sample ``i`` with replacement with probability ∝ ``n_{y_i}^(-power)``.

    ``power=1`` gives balanced classes, ``0.5`` square-root sampling, ``0`` the natural
    distribution. Sampling is two-stage (class ∝ ``n_c^(1-power)``, then uniform within the
    class), which is the same distribution but avoids ``torch.multinomial``'s 2^24-category
    limit on large datasets.

    Epochs: the order is a pure function of ``seed + epoch``. ``set_epoch(e)`` makes the next
    iteration use epoch ``e``; every iteration then advances the epoch by one, so the order
    still changes when nobody calls ``set_epoch``. Under DDP, Lightning wraps this sampler in
    ``DistributedSamplerWrapper``, which materialises ``list(sampler)`` on every rank and takes
    a strided shard; since every rank builds the same generator, the lists are identical and
    the shards disjoint. ``__len__`` is finite, as the wrapper requires.
    """

    def __init__(
        self,
        labels: Tensor | Sequence[int],
        power: float = 1.0,
        num_samples: int | None = None,
        seed: int = 0,
    ) -> None:
        y = torch.as_tensor(labels)
        if y.ndim != 1 or y.numel() == 0 or y.is_floating_point() or y.is_complex():
            raise ValueError(
                f"labels with shape {tuple(y.shape)} and dtype {y.dtype} are not usable; "
                "pass a non-empty 1-D integer tensor of training labels"
            )
        if not torch.isfinite(torch.tensor(float(power))):
            raise ValueError(f"power={power!r} must be finite (1.0 = balanced, 0.5 = sqrt)")
        n = y.numel() if num_samples is None else int(num_samples)
        if n <= 0:
            raise ValueError(f"num_samples={num_samples!r} must be > 0 or None (= len(labels))")
        self.power = float(power)
        self.num_samples = n
        self.seed = int(seed)
        self._epoch = 0
        self._build_index(y.cpu().long())

    def _build_index(self, y: Tensor) -> None:
        """Group sample indices by class: ``_order[_starts[c] : _starts[c] + _sizes[c]]``."""
        _, inverse, sizes = torch.unique(y, return_inverse=True, return_counts=True)
        self._order = torch.argsort(inverse, stable=True)
        self._sizes = sizes
        self._starts = torch.cumsum(sizes, 0) - sizes
        probs = sizes.double().pow(1.0 - self.power)
        self._class_probs = probs / probs.sum()

    def __iter__(self) -> Iterator[int]:
        g = self.next_generator()
        cls = torch.multinomial(self._class_probs, self.num_samples, True, generator=g)
        sizes = self._sizes[cls]
        u = torch.rand(self.num_samples, generator=g, dtype=torch.float64)
        offset = torch.minimum((u * sizes).long(), sizes - 1)
        return iter(self._order[self._starts[cls] + offset].tolist())


class RarestLabelSampler(EpochSampler):
    """Multi-label sampling: draw image ``i`` with replacement with probability ∝
    ``m_i^(-power)``, ``m_i`` = the training positives of its rarest label.

    A class-balanced sampler needs one class per image; with label sets, the rarest label is
    what an image is worth most for (an image holding a rare label and a common one is drawn
    as often as the rare label asks). Images without any label count as one more "label"
    (the empty set). Multi-hot labels (N, C); class indices (N,) are taken as one-hot, which
    makes ``power=1`` class-balanced. Epochs, seeding and DDP as in ``ClassBalancedSampler``.
    """

    def __init__(self, labels: Tensor | Sequence, power: float = 1.0,
                 num_samples: int | None = None, seed: int = 0) -> None:
        y = torch.as_tensor(labels)
        if y.ndim == 1 and not y.is_floating_point() and y.numel():
            y = torch.nn.functional.one_hot(y.long() - y.min())
        if y.ndim != 2 or y.numel() == 0:
            raise ValueError(f"labels with shape {tuple(y.shape)} are not usable; pass a "
                             "non-empty multi-hot (N, C) tensor of training labels")
        if not torch.isfinite(torch.tensor(float(power))):
            raise ValueError(f"power={power!r} must be finite (1.0 = rarest label balanced)")
        positive = y > 0.5
        counts = positive.sum(dim=0).double()
        rarest = torch.where(positive, counts, torch.inf).amin(dim=1)
        empty = ~positive.any(dim=1)
        rarest[empty] = float(empty.sum())
        self.weights = rarest.pow(-float(power))
        self.num_samples = len(y) if num_samples is None else int(num_samples)
        if self.num_samples <= 0:
            raise ValueError(f"num_samples={num_samples!r} must be > 0 or None (= len(labels))")
        self.power, self.seed, self._epoch = float(power), int(seed), 0

    def __iter__(self) -> Iterator[int]:
        g = self.next_generator()
        return iter(torch.multinomial(self.weights, self.num_samples, True, generator=g).tolist())


def seed_generators(seed: int) -> None:
    """Lightning's seed_everything (python, numpy, torch), minus its ~1 ms per call when CUDA
    is not in use: torch.manual_seed then queues a CUDA seeding with a stack trace."""
    random.seed(seed)
    np.random.seed(seed)
    if torch.cuda.is_initialized():
        torch.manual_seed(seed)  # every device's generator
        return
    torch.default_generator.manual_seed(seed)
    if torch.backends.mps.is_available():
        torch.mps.manual_seed(seed)


class EpochSeeded(Sampler[int]):
    """Make each epoch's randomness a function of `seed + epoch` alone.

    When an epoch's first index is drawn, every global generator (torch, numpy, random:
    augmentation, dropout) is reseeded with `seed + epoch`, and the order comes from `base`
    (told the epoch) or, without one, from a permutation seeded the same way. A run resumed
    from `last.ckpt` therefore trains exactly as the uninterrupted run did. Lightning calls
    `set_epoch` before each epoch but the first of a process, whose epoch is given here.
    """

    def __init__(self, size: int, seed: int, epoch: int = 0, base: Sampler | None = None) -> None:
        self.size, self.seed, self.epoch, self.base = size, seed, epoch, base

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base) if self.base is not None else self.size

    def __iter__(self) -> Iterator[int]:
        seed = self.seed + self.epoch
        seed_generators(seed)
        if self.base is None:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(seed))
            order = order.tolist()
        else:
            self.base.set_epoch(self.epoch)
            order = list(self.base)
        self.epoch += 1  # the next epoch, also when nobody calls set_epoch
        yield from order
