"""An image competition folder as a LightningDataModule (a sibling of the tabular one).

Every image is decoded once into one cached uint8 tensor (podium.data.decode); augmentation and
normalisation run on the device inside the model (per-image transforms in the loader remain
possible: `sample_transform`). Class folders (`train/<class>/`, no train.csv) are read by
podium.data.layouts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import Dataset

from podium.data.base import CompetitionDataModule, TensorRows
from podium.data.decode import (
    INTERPOLATIONS,
    cached_decode,
    channel_stats,
    decode_images,
    find_images,
    first_image_channels,
)
from podium.data.layouts import class_folders, paths_from_test_csv
from podium.errors import PodiumError
from podium.io import check_filled
from podium.spec import DataSpec


def per_channel(values: Sequence[float] | None, channels: int, name: str
                ) -> tuple[float, ...] | None:
    """`data.mean`/`data.std` for images of `channels` channels: one value for every channel,
    or RGB statistics (a pretrained network's) averaged for grey images: timm sums the
    first convolution's RGB weights for one channel, which sees a grey image as (x, x, x)."""
    if values is None:
        return None
    values = tuple(float(v) for v in values)
    if len(values) == channels:
        return values
    if len(values) == 1:
        return values * channels
    if channels == 1:
        return (sum(values) / len(values),)
    raise PodiumError(f"data.{name}={list(values)} has {len(values)} values, the images "
                      f"{channels} channels: give one per channel (or data.channels="
                      f"{len(values)})")


class ImageDataModule(CompetitionDataModule):
    """An image competition folder: every image decoded once into a cached uint8 tensor.

    Image options: `train_images`/`test_images` (path patterns with `{id}`), `path_col`
    (a train.csv column of paths), `test_csv` (a CSV with the test images' `path_col`),
    `image_size` (H or [H, W], resize on load with `interpolation`: bilinear | bicubic |
    nearest; None: bilinear), `channels` (1 or 3; None: from the first
    image), `mean`/`std` (None: from the training split), `cache_dir`/`cache_ram_gb`/
    `decode_workers` (podium.data.decode), `sample_transform` (per image, in the loader).
    Without train.csv, class folders `train/<class>/` are read instead (podium.data.layouts).
    """

    epoch_range = (30, 100)  # an image network wants epochs: 30 at least, more when small

    def __init__(
        self,
        root: str,
        train_images: str | None = None,
        test_images: str | None = None,
        path_col: str | None = None,
        test_csv: str | None = None,
        image_size: int | Sequence[int] | None = None,
        interpolation: str | None = None,
        channels: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        cache_dir: str | None = None,
        cache_ram_gb: float = 8.0,
        decode_workers: int | None = None,
        sample_transform: Callable | None = None,
        **kwargs,
    ) -> None:
        super().__init__(root, **kwargs)
        self.train_images, self.test_images, self.path_col = train_images, test_images, path_col
        self.test_csv = test_csv
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        self.image_size = tuple(image_size) if image_size is not None else None
        self.interpolation = interpolation or "bilinear"
        if self.interpolation not in INTERPOLATIONS:
            raise PodiumError(f"data.interpolation={interpolation!r}: one of "
                              f"{' | '.join(INTERPOLATIONS)}")
        self.channels, self.fixed_mean, self.fixed_std = channels, mean, std
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.cache_ram_gb, self.decode_workers = cache_ram_gb, decode_workers
        self.sample_transform = sample_transform
        self.train_paths: list[Path] = []
        self.test_paths: list[Path] = []

    def read_inputs(self) -> pd.DataFrame:
        """The labels (train.csv, or class folders) and the sample submission read and
        checked, every image path found; no decoding yet."""
        self.check_root("train/, test/")
        layout = class_folders(self.root, self.train_csv, self.id_col, self.target_col)
        if layout is None:
            train = self.read_labels([self.path_col] if self.path_col else [])
            if self.path_col:
                check_filled(train, self.root / self.train_csv, self.path_col, self.id_col,
                             f"give every image its {self.path_col} (relative to data.root)")
            paths = train[self.path_col].tolist() if self.path_col else None
        else:  # no train.csv, train/<class>/ folders: podium.data.layouts
            layout.check_unused(group_col=self.group_col, path_col=self.path_col)
            sample = layout.sample_submission(self.root / self.sample_submission_path)
            train, paths = self.read_labels(layout=layout, sample=sample), layout.paths
        column = f" column '{self.path_col}'"
        self.train_paths = find_images(self.root, self.train_ids, "train", self.train_images,
                                       paths, f"{self.root / self.train_csv}{column}")
        self.find_test()
        return train

    def find_test(self) -> None:
        test_paths = None if self.test_csv is None else paths_from_test_csv(
            self.root / self.test_csv, self.id_col, self.path_col, self.test_ids,
            self.sample_submission_path)
        self.test_paths = find_images(self.root, self.test_ids, "test", self.test_images,
                                      test_paths,
                                      f"{self.root / str(self.test_csv)} column '{self.path_col}'")

    def build_sets(self) -> DataSpec:
        if self.channels is None:
            self.channels = first_image_channels(self.train_paths)
        images = self.decode(self.train_paths, self.image_size)
        labels = torch.from_numpy(self.labels)
        self.train_set = TensorRows(images, labels[self.train_idx], self.sample_transform,
                                    index=self.train_idx)
        self.val_set = TensorRows(images, labels[self.val_idx], index=self.val_idx)
        self.oof_set = TensorRows(images, labels[self.oof_idx], index=self.oof_idx)
        channels = int(images.shape[1])
        mean, std = channel_stats(images, self.train_idx)
        return DataSpec(
            **self.spec_fields(), net_inputs={"in_chans": channels},
            mean=per_channel(self.fixed_mean, channels, "mean") or tuple(mean),
            std=per_channel(self.fixed_std, channels, "std") or tuple(std),
            image_size=tuple(images.shape[2:]), interpolation=self.interpolation,
        )

    def read_test(self) -> Dataset:
        """Decoded with the training images' channels, size and interpolation."""
        self.channels = self.spec.net_inputs["in_chans"]
        self.interpolation = self.spec.interpolation
        return TensorRows(self.decode(self.test_paths, self.spec.image_size))

    def decode(self, paths: Sequence[Path], size: tuple[int, int] | None) -> torch.Tensor:
        if self.cache_dir is None:
            return decode_images(paths, self.channels, size, self.decode_workers,
                                 interpolation=self.interpolation)
        return cached_decode(paths, self.channels, size, self.cache_dir, self.cache_ram_gb,
                             self.decode_workers, interpolation=self.interpolation)
