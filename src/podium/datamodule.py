"""A competition folder as a LightningDataModule: CSVs read once, images decoded once.

Contract (see README): `<root>/train.csv` (id + target column), `<root>/train/<id>.<ext>`,
`<root>/test/<id>.<ext>` for every row of `<root>/sample_submission.csv`. Images are
decoded once into one uint8 tensor (N, C, H, W), saved as a cache file that later runs load
in a blink, and held in memory (memory-mapped from the file when larger than
`cache_ram_gb`). Augmentation runs on batches of those tensors inside the model, on the
device, as do the float conversion and normalisation (per-image transforms in the loader
remain possible: `sample_transform`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, Sampler

from podium.errors import PodiumError
from podium.samplers import EpochSeeded

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class TensorImageDataset(Dataset):
    """Cached uint8 images (N, C, H, W), optional labels, optional per-sample transform.

    `index` selects the rows of `images` this dataset serves, lazily (the train and
    validation splits share one tensor; a memory-mapped cache is never copied into RAM);
    without it every row. `labels` has one entry per item served.
    """

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor | None = None,
        transform: Callable | None = None, index: np.ndarray | None = None,
    ) -> None:
        self.images, self.labels, self.transform, self.index = images, labels, transform, index

    def __len__(self) -> int:
        return len(self.images) if self.index is None else len(self.index)

    def __getitem__(self, i: int):
        image = self.images[i if self.index is None else int(self.index[i])]
        if self.transform is not None:
            image = self.transform(image)
        return image if self.labels is None else (image, self.labels[i])

    def __getitems__(self, items: list[int]):
        """A whole batch in one indexing operation (the DataLoader calls this instead of
        `__getitem__` per item, then `collate_batch`)."""
        rows = torch.as_tensor(items if self.index is None else self.index[items])
        images = self.images[rows]
        if self.transform is not None:
            images = torch.stack([self.transform(image) for image in images])
        return images if self.labels is None else (images, self.labels[items])


def collate_batch(batch):
    """TensorImageDataset.__getitems__ returns the batch already stacked."""
    return batch


def read_csv(path: Path, columns: Sequence[str], what: str) -> pd.DataFrame:
    """Read a competition CSV with string ids; fail with one line if a column is missing."""
    if not path.is_file():
        raise PodiumError(f"{path} not found: {what} (set data.root to your competition folder)")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        reason = str(err).strip().splitlines()[-1]
        raise PodiumError(f"{path} is not a readable CSV ({reason}): fix or re-export it") from err
    frame.columns = [c.strip() for c in frame.columns]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise PodiumError(
            f"{path}: column '{missing[0]}' not found (columns: {', '.join(frame.columns)}); "
            f"set data.id_col / data.target_col to the right names"
        )
    return frame


def sort_labels(values: Sequence[str]) -> list[str]:
    """Sorted unique labels: numerically when every label is a number, else as text."""
    unique = sorted(set(values))
    try:
        return sorted(unique, key=float)
    except ValueError:
        return unique


def encode_target(values: Sequence[str], task: str, path: Path,
                  target_col: str) -> tuple[np.ndarray, list[str]]:
    """Targets as class indices + sorted class names, or (regression) float32 values with
    `["prediction"]` as the one "class" (test_probs.csv/oof.csv column of the output)."""
    from podium.metrics import check_task

    check_task(task)
    if task == "regression":
        numbers = pd.to_numeric(pd.Series(list(values)), errors="coerce").to_numpy(float)
        bad = np.flatnonzero(~np.isfinite(numbers))
        if len(bad):
            raise PodiumError(
                f"{path}: data.task=regression needs a numeric {target_col} column, but row "
                f"{bad[0] + 1} holds '{values[bad[0]]}' ({len(bad)} bad value(s)); fix the "
                f"values or use data.task=multiclass"
            )
        return numbers.astype(np.float32), ["prediction"]
    class_names = sort_labels(values)
    if task == "binary" and len(class_names) != 2:
        raise PodiumError(
            f"{path}: data.task=binary needs exactly 2 classes in {target_col}, found "
            f"{len(class_names)} ({', '.join(class_names[:5])}); use data.task=multiclass"
        )
    index = {name: i for i, name in enumerate(class_names)}
    return np.array([index[v] for v in values], dtype=np.int64), class_names


def find_images(
    root: Path, ids: Sequence[str], folder: str, pattern: str | None, paths: Sequence[str] | None
) -> list[Path]:
    """Image path per id: explicit path column, `pattern` with `{id}`, or `<folder>/<id>.<ext>`."""
    if paths is not None:
        found = [root / p for p in paths]
    elif pattern is not None:
        found = [root / pattern.format(id=i) for i in ids]
    else:
        directory = root / folder
        if not directory.is_dir():
            raise PodiumError(f"{directory} not found: put one image per id there")
        by_stem = {}
        for entry in os.scandir(directory):
            stem, ext = os.path.splitext(entry.name)
            if ext.lower() in IMAGE_EXTENSIONS:
                by_stem.setdefault(stem, entry.path)
        found = [Path(by_stem.get(i, directory / f"{i}.<ext>")) for i in ids]
    missing = [i for i, p in zip(ids, found, strict=False) if not p.is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise PodiumError(
            f"{len(missing)} image(s) missing in {root / folder} for ids: {shown} "
            f"(expected e.g. {found[ids.index(missing[0])]}; set data.{folder}_images to the "
            f"path pattern, e.g. '{folder}/{{id}}.jpg')"
        )
    return found


def load_image(path: Path, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    with Image.open(path) as image:
        image = image.convert(mode)
        if size is not None and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def decode_images(
    paths: Sequence[Path], channels: int, size: tuple[int, int] | None
) -> torch.Tensor:
    """Decode every image once (threads: PIL releases the GIL) into uint8 (N, C, H, W)."""
    mode = "L" if channels == 1 else "RGB"

    def load(path: Path) -> np.ndarray | None:
        try:
            return load_image(path, mode, size)
        except (UnidentifiedImageError, OSError, ValueError):
            return None

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        arrays = list(pool.map(load, paths, chunksize=64))
    bad = [str(p) for p, a in zip(paths, arrays, strict=False) if a is None]
    if bad:
        raise PodiumError(
            f"{len(bad)} unreadable image(s): {', '.join(bad[:3])}"
            f"{' ...' if len(bad) > 3 else ''} (replace or remove them from the CSV)"
        )
    check_same_size({a.shape[:2] for a in arrays})
    stacked = np.stack(arrays)  # (N, H, W, C)
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()


def check_same_size(sizes: set[tuple[int, int]]) -> None:
    if len(sizes) > 1:
        (h1, w1), (h2, w2) = sorted(sizes)[:2]
        raise PodiumError(
            f"images differ in size ({h1}x{w1}, {h2}x{w2}, ...): set data.image_size=<H> "
            f"or [H,W] to resize them on load"
        )


CACHE_VERSION = 1  # bump when the decoding changes, so old cache files are not reused
CACHE_CHUNK = 4096  # images decoded at a time while a cache file is written


def cache_key(paths: Sequence[Path], settings: str) -> str:
    """Hash of every image's path, size and modification time, and the decode settings:
    an edited, added, removed or reordered image gives a new key."""
    digest = hashlib.sha1(f"v{CACHE_VERSION} {settings}".encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"\0{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def cached_decode(
    paths: Sequence[Path], channels: int, size: tuple[int, int] | None, cache_dir: Path,
    ram_limit_gb: float,
) -> torch.Tensor:
    """decode_images through a cache file `<cache_dir>/images-<key>.npy`.

    The first run decodes in chunks straight into the file (written aside, then renamed:
    a killed run leaves no half file); later runs load it. A file larger than
    `ram_limit_gb` is memory-mapped (read-only) instead of loaded: pages come from disk
    as batches need them.
    """
    if not paths:
        return decode_images(paths, channels, size)
    file = cache_dir / f"images-{cache_key(paths, f'{channels} {size}')}.npy"
    if not file.exists():
        file.parent.mkdir(parents=True, exist_ok=True)
        aside = file.with_name(f"{file.stem}.{os.getpid()}.partial")
        try:
            out = None
            for start in range(0, len(paths), CACHE_CHUNK):
                block = decode_images(paths[start : start + CACHE_CHUNK], channels, size).numpy()
                if out is None:
                    out = np.lib.format.open_memmap(aside, mode="w+", dtype=np.uint8,
                                                    shape=(len(paths), *block.shape[1:]))
                check_same_size({out.shape[2:], block.shape[2:]})
                out[start : start + len(block)] = block
            out.flush()
            del out
            os.replace(aside, file)
        finally:
            aside.unlink(missing_ok=True)
        log.info("decoded %d images into %s", len(paths), file)
    array = np.load(file, mmap_mode="r")
    if array.nbytes <= ram_limit_gb * 2**30:
        return torch.from_numpy(np.load(file))
    log.info("%s is %.1f GB > data.cache_ram_gb=%s: memory-mapped", file,
             array.nbytes / 2**30, ram_limit_gb)
    with warnings.catch_warnings():  # read-only: podium never writes into cached images
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def first_image_channels(paths: Sequence[Path]) -> int:
    """1 when the first readable image is grayscale, else 3 (unreadable ones are reported
    by decode_images with their names)."""
    for path in paths[:16]:
        try:
            with Image.open(path) as image:
                return 1 if image.mode in ("L", "1", "I;16") else 3
        except (UnidentifiedImageError, OSError, ValueError):
            continue
    return 3


def channel_stats(images: torch.Tensor, index: np.ndarray | None = None, chunk: int = 4096
                  ) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units of `images` (the rows in `index`), in
    chunks to keep memory flat."""
    rows = np.arange(len(images)) if index is None else index
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, len(rows), chunk):
        block = images[torch.from_numpy(rows[start : start + chunk])].to(torch.float64) / 255.0
        total += block.sum(dim=(0, 2, 3))
        squares += block.square().sum(dim=(0, 2, 3))
    n = len(rows) * images[0].numel() / images.shape[1]
    mean = total / n
    std = (squares / n - mean.square()).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()


def split_indices(
    labels: np.ndarray, class_names: Sequence[str], val_fraction: float, seed: int,
    n_folds: int | None = None, fold: int | None = None, groups: Sequence[str] | None = None,
    stratify: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified hold-out split, or fold `fold` of a seeded StratifiedKFold.

    With `groups` (e.g. a patient id), StratifiedGroupKFold keeps each group in one fold.
    `stratify=False` (regression targets): plain shuffled KFold / GroupKFold / hold-out.
    """
    from sklearn.model_selection import (
        GroupKFold,
        KFold,
        StratifiedGroupKFold,
        StratifiedKFold,
        train_test_split,
    )

    if n_folds and (fold is None or not 0 <= fold < n_folds):
        raise PodiumError(f"data.fold={fold} must be in 0..{n_folds - 1} for "
                          f"data.n_folds={n_folds}")
    if not n_folds and not 0 < val_fraction < 1:
        raise PodiumError(f"data.val_fraction={val_fraction} must be between 0 and 1")
    if stratify:
        counts = np.bincount(labels, minlength=len(class_names))
        need = n_folds if n_folds else 2
        if counts.min() < need:
            name = class_names[int(counts.argmin())]
            raise PodiumError(
                f"class '{name}' has {counts.min()} example(s); a stratified split needs at "
                f"least {need} (add examples, merge the class, or lower data.n_folds)"
            )
    index = np.arange(len(labels))
    if n_folds:
        kinds = {(True, False): StratifiedKFold, (True, True): StratifiedGroupKFold,
                 (False, False): KFold, (False, True): GroupKFold}
        folds = kinds[(stratify, groups is not None)](n_folds, shuffle=True, random_state=seed)
        return list(folds.split(index, labels, groups))[fold]
    n_val = max(int(round(val_fraction * len(labels))), len(class_names) if stratify else 1)
    train_idx, val_idx = train_test_split(index, test_size=n_val, random_state=seed,
                                          stratify=labels if stratify else None)
    return np.sort(train_idx), np.sort(val_idx)


class CompetitionDataModule(L.LightningDataModule):
    """Reads a competition folder, splits it, caches decoded images, serves DataLoaders.

    After `setup()`: `class_names` (original label values, index order), `class_counts`
    (training split), `mean`/`std` (per channel, from the training split), `test_ids`
    (sample-submission order). These are what the model and the submission need.
    """

    def __init__(
        self,
        root: str,
        id_col: str = "id",
        target_col: str = "label",
        train_csv: str = "train.csv",
        sample_submission: str = "sample_submission.csv",
        train_images: str | None = None,
        test_images: str | None = None,
        path_col: str | None = None,
        group_col: str | None = None,
        image_size: int | Sequence[int] | None = None,
        channels: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        val_fraction: float = 0.2,
        n_folds: int | None = None,
        fold: int | None = None,
        seed: int = 42,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        cache_dir: str | None = None,
        cache_ram_gb: float = 8.0,
        demo_root: str | None = None,
        answers: str | None = None,
        sample_transform: Callable | None = None,
        sampler: Callable[..., Sampler] | None = None,
        task: str = "multiclass",
    ) -> None:
        super().__init__()
        self.task = task
        self.root = Path(root)
        self.id_col, self.target_col, self.path_col = id_col, target_col, path_col
        self.group_col = group_col
        self.train_csv, self.sample_submission_path = train_csv, sample_submission
        self.train_images, self.test_images = train_images, test_images
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        self.image_size = tuple(image_size) if image_size is not None else None
        self.channels, self.fixed_mean, self.fixed_std = channels, mean, std
        self.val_fraction, self.n_folds, self.fold, self.seed = val_fraction, n_folds, fold, seed
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or 2 * batch_size
        self.num_workers = num_workers
        self.demo_root = Path(demo_root) if demo_root else None
        self.answers = Path(answers) if answers else None
        self.sample_transform, self.sampler = sample_transform, sampler
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.cache_ram_gb = cache_ram_gb
        self.train_set = self.val_set = self.test_set = None

    # -- reading the folder ---------------------------------------------------------------
    def prepare_data(self) -> None:
        """Build the embedded demo on first use (only at its own path, never elsewhere)."""
        if self.demo_root and self.root.resolve() == self.demo_root.resolve():
            if not (self.root / self.train_csv).exists():
                from podium.demo import build_demo

                log.info("building the demo competition in %s", self.root)
                build_demo(self.root)

    def read_folder(self) -> None:
        """Read and check both CSVs and find every image path; no decoding yet."""
        if not self.root.is_dir():
            raise PodiumError(
                f"data.root={self.root} is not a folder: set data.root=<competition folder> "
                f"holding {self.train_csv}, train/, test/ and {self.sample_submission_path}"
            )
        columns = [self.id_col, self.target_col] + [c for c in (self.path_col, self.group_col) if c]
        train = read_csv(self.root / self.train_csv, columns, "the training labels")
        sample = read_csv(
            self.root / self.sample_submission_path, [self.id_col], "the sample submission"
        )
        check_values(train, self.root / self.train_csv, self.id_col, self.target_col)

        self.labels, self.class_names = encode_target(
            train[self.target_col].tolist(), self.task, self.root / self.train_csv,
            self.target_col,
        )
        self.train_ids = train[self.id_col].tolist()
        self.groups = train[self.group_col].tolist() if self.group_col else None
        self.test_ids = sample[self.id_col].tolist()
        self.sample = sample
        paths = train[self.path_col].tolist() if self.path_col else None
        self.train_paths = find_images(
            self.root, self.train_ids, "train", self.train_images, paths
        )
        self.test_paths = find_images(self.root, self.test_ids, "test", self.test_images, None)

    def setup(self, stage: str | None = None) -> None:
        """Split and decode once; safe to call again (Lightning calls it per stage)."""
        if self.train_set is None:
            self.read_folder()
            train_idx, val_idx = split_indices(
                self.labels, self.class_names, self.val_fraction, self.seed,
                self.n_folds, self.fold, self.groups, stratify=self.task != "regression",
            )
            self.train_idx, self.val_idx = train_idx, val_idx
            if self.channels is None:
                self.channels = first_image_channels(self.train_paths)
            images = self.decode(self.train_paths, self.image_size)
            labels = torch.from_numpy(self.labels)
            self.image_shape = tuple(images.shape[1:])
            self.train_set = TensorImageDataset(images, labels[train_idx],
                                                self.sample_transform, index=train_idx)
            self.val_set = TensorImageDataset(images, labels[val_idx], index=val_idx)
            self.class_counts = [] if self.task == "regression" else np.bincount(
                self.labels[train_idx], minlength=len(self.class_names)
            ).tolist()
            mean, std = channel_stats(images, train_idx)
            self.mean = list(self.fixed_mean or mean)
            self.std = list(self.fixed_std or std)
        if stage == "predict" and self.test_set is None:
            size = self.image_size or self.image_shape[1:]
            self.test_set = TensorImageDataset(self.decode(self.test_paths, size))

    def decode(self, paths: Sequence[Path], size: tuple[int, int] | None) -> torch.Tensor:
        if self.cache_dir is None:
            return decode_images(paths, self.channels, size)
        return cached_decode(paths, self.channels, size, self.cache_dir, self.cache_ram_gb)

    # -- loaders ---------------------------------------------------------------------------
    def loader(self, dataset: Dataset, batch_size: int, **kwargs) -> DataLoader:
        return DataLoader(
            dataset, batch_size=batch_size, num_workers=self.num_workers,
            collate_fn=collate_batch,
            persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available(),
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        base = self.sampler(labels=self.train_set.labels, seed=self.seed) if self.sampler else None
        epoch = self.trainer.current_epoch if self.trainer is not None else 0  # resumed runs
        sampler = EpochSeeded(len(self.train_set), self.seed, epoch, base)
        return self.loader(self.train_set, self.batch_size, sampler=sampler,
                           drop_last=len(self.train_set) > self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.val_set, self.eval_batch_size)

    def test_images_dataloader(self) -> DataLoader:
        return self.loader(self.test_set, self.eval_batch_size)

    def predict_dataloader(self) -> list[DataLoader]:
        """The test images, then the validation split (its predictions are the OOF file)."""
        return [self.test_images_dataloader(), self.val_dataloader()]

    @property
    def val_ids(self) -> list[str]:
        return [self.train_ids[i] for i in self.val_idx]

    @property
    def val_labels(self) -> list[str]:
        if self.task == "regression":
            return self.labels[self.val_idx].tolist()
        return [self.class_names[i] for i in self.labels[self.val_idx]]


def check_values(frame: pd.DataFrame, path: Path, id_col: str, target_col: str) -> None:
    """Empty targets and duplicate ids break training silently: stop with the first one."""
    empty = frame[frame[target_col].str.strip() == ""]
    if len(empty):
        raise PodiumError(
            f"{path}: empty {target_col} for id {empty[id_col].iloc[0]} "
            f"({len(empty)} row(s)); fill or drop those rows"
        )
    duplicated = frame[frame[id_col].duplicated()]
    if len(duplicated):
        raise PodiumError(
            f"{path}: id {duplicated[id_col].iloc[0]} appears more than once "
            f"({len(duplicated)} duplicate(s)); ids must be unique"
        )
