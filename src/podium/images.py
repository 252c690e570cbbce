"""Images from disk to one cached uint8 tensor (N, C, H, W).

Every image is decoded once (threads: PIL releases the GIL), resized on load when
`data.image_size` is set, and saved as a cache file keyed by every file's path, size and
mtime and the decode settings, so later runs load it in a blink (memory-mapped when larger
than `data.cache_ram_gb`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from podium.errors import PodiumError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

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
