"""Images from disk to one cached uint8 tensor (N, C, H, W).

Every image is found by id (any-case extension, sub-folders; never outside the competition
folder), decoded once by `data.decode_workers` threads or forked processes (large JPEGs at
a reduced scale straight from libjpeg), resized on load when `data.image_size` is set, and
saved as a cache file keyed by every file's path, size and mtime and the decode settings,
so later runs load it in a blink (memory-mapped when larger than `data.cache_ram_gb`).
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing as mp
import os
import sys
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2.functional import resize as resize_image

from podium.errors import PodiumError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

def find_images(
    root: Path, ids: Sequence[str], folder: str, pattern: str | None,
    paths: Sequence[str] | None, source: str | None = None,
) -> list[Path]:
    """Image path per id: explicit `paths` (relative to root; `source` names where they
    came from), `pattern` with `{id}`, or `<folder>/<id>.<ext>`.

    Extensions match in any case (`IMG_1118.JPG`), ids may hold sub-folders (`a/123` is
    `<folder>/a/123.<ext>`) or their own extension (`123.jpg`). A path that leaves `root`
    is an error, so a CSV cannot point podium at files outside the competition folder.
    """
    if paths is not None:
        found, source = [root / p for p in paths], source or "the image paths"
    elif pattern is not None:
        found = [root / pattern.format(id=i) for i in ids]
        source = f"data.{folder}_images='{pattern}'"
    else:
        found, source = find_by_id(root / folder, ids), f"the ids of {folder}/"
    check_inside(root, ids, found, source)
    found = [p if p.is_file() else other_case(p) for p in found]
    missing = [i for i, p in zip(ids, found, strict=False) if not p.is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise PodiumError(
            f"{len(missing)} image(s) missing in {root / folder} for ids: {shown} "
            f"(expected e.g. {found[ids.index(missing[0])]}; set data.{folder}_images to the "
            f"path pattern, e.g. '{folder}/{{id}}.jpg')"
        )
    return found

def find_by_id(directory: Path, ids: Sequence[str]) -> list[Path]:
    """`<directory>/<id>.<any image extension>`, each sub-folder listed once."""
    if not directory.is_dir():
        raise PodiumError(f"{directory} not found: put one image per id there")
    listings: dict[str, dict[str, str]] = {}
    found = []
    for i in ids:
        sub, name = os.path.split(i)
        if sub not in listings:
            listings[sub] = list_images(directory / sub)
        found.append(Path(listings[sub].get(name) or directory / f"{i}.<ext>"))
    return found

def list_images(directory: Path) -> dict[str, str]:
    """The image files of one folder by file name and by stem (the name wins: an id may
    carry its extension; of `a.jpg` and `a.png` the first by name is `a`)."""
    try:
        names = sorted(entry.name for entry in os.scandir(directory))
    except OSError:  # no such folder: its ids are reported missing
        return {}
    images = [n for n in names if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS]
    by_stem = {}
    for name in images:
        by_stem.setdefault(os.path.splitext(name)[0], str(directory / name))
    return {**by_stem, **{name: str(directory / name) for name in images}}

def other_case(path: Path) -> Path:
    """`path` with its extension upper- or lower-cased when only that one exists."""
    for suffix in (path.suffix.lower(), path.suffix.upper()):
        candidate = path.with_suffix(suffix) if suffix else path
        if candidate.is_file():
            return candidate
    return path

def check_inside(root: Path, ids: Sequence[str], paths: Sequence[Path], source: str) -> None:
    """One line for the first path outside `root` (`../x.png`, `/elsewhere/x.png`);
    compared as written, so folders symlinked into the competition folder still count
    as inside."""
    top = os.path.abspath(root)
    outside = [(i, p) for i, p in zip(ids, paths, strict=False)
               if os.path.commonpath([top, os.path.abspath(p)]) != top]
    if outside:
        i, p = outside[0]
        raise PodiumError(
            f"{source}: image path {p} (id {i}) is outside data.root={root} "
            f"({len(outside)} path(s)): give paths relative to data.root, inside it"
        )

def load_image(path: Path, mode: str, size: tuple[int, int] | None,
               interpolation: str = "bilinear") -> np.ndarray:
    """One image as uint8 (H, W, C), resized to `size` (H, W) when given.

    A JPEG at least twice the target size in both sides is decoded by libjpeg at 1/2, 1/4
    or 1/8 scale (`Image.draft`: the largest reduction still >= `size`), so most of a large
    photo's decoding and resizing is skipped; the pixels stay within about a grey level of
    a full decode + resize on average (tests/test_decode.py states the tolerance).
    """
    with Image.open(path) as image:
        if size is not None and image.format == "JPEG" and (
                image.size[0] >= 2 * size[1] and image.size[1] >= 2 * size[0]):
            image.draft(image.mode, (size[1], size[0]))  # the colour conversion as before
        if image.mode != mode:
            image = image.convert(mode)
        array = np.array(image, dtype=np.uint8)
    array = array[:, :, None] if array.ndim == 2 else array
    if size is None or array.shape[:2] == tuple(size):
        return array
    return resize(array, size, interpolation)

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def resize(array: np.ndarray, size: tuple[int, int], interpolation: str = "bilinear"
           ) -> np.ndarray:
    """torchvision's antialiased resize of uint8 (H, W, C) (`data.interpolation`): bilinear
    is within one grey level of Pillow's BILINEAR, ~5x quicker on photos (its SIMD uint8
    kernel); bicubic is what most pretrained networks were trained with (timm's
    `pretrained_cfg`), rounded and clamped back to uint8."""
    image = torch.from_numpy(array).permute(2, 0, 1)
    mode = InterpolationMode(interpolation)
    resized = resize_image(image, list(size), interpolation=mode,
                           antialias=mode != InterpolationMode.NEAREST)
    return resized.permute(1, 2, 0).numpy()

def try_load(path: Path, mode: str, size: tuple[int, int] | None,
             interpolation: str = "bilinear") -> np.ndarray | None:
    """load_image, or None for a file that is not a readable image (reported together)."""
    try:
        return load_image(path, mode, size, interpolation)
    except (UnidentifiedImageError, OSError, ValueError):
        return None

def decode_workers(workers: int | None) -> int:
    """`data.decode_workers`, default every core this process may run on."""
    if workers is not None:
        return max(1, int(workers))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

def decode_images(
    paths: Sequence[Path], channels: int, size: tuple[int, int] | None,
    workers: int | None = None, pool: str = "auto", interpolation: str = "bilinear",
) -> torch.Tensor:
    """Decode every image once, `workers` at a time, into uint8 (N, C, H, W).

    PIL and torch release the GIL while they decode, convert and resize, and hold it for
    the Python part of every image (open, header, dispatch, ~0.1 ms). `pool="auto"` times the
    second image: a job under SERIAL_BELOW_S in all runs in this process (forking a process
    with torch loaded costs ~0.15 s); images slower than THREADS_ABOVE_S (large photos) go
    to threads, which scale on them and copy nothing; smaller ones (CIFAR-sized) to forked
    processes, since threads stall on the GIL there (`make bench` measures all three).
    """
    if not paths:
        return torch.zeros(0, channels, *(size or (0, 0)), dtype=torch.uint8)
    load = partial(try_load, mode="L" if channels == 1 else "RGB", size=size,
                   interpolation=interpolation)
    arrays = [load(paths[0])]  # PIL's plugins load here: the next image is timed alone
    start = time.perf_counter()
    arrays += [load(p) for p in paths[1:2]]
    seconds, rest = time.perf_counter() - start, paths[2:]
    n = min(decode_workers(workers), len(rest))
    if n <= 1 or seconds * len(rest) < SERIAL_BELOW_S:
        arrays += [load(p) for p in rest]
    else:
        if pool == "auto":
            pool = "threads" if seconds > THREADS_ABOVE_S else "processes"
        with executor(pool, n) as running:
            chunk = max(1, min(64, len(rest) // (4 * n)))  # fewer round trips, balanced
            arrays += running.map(load, rest, chunksize=chunk)
    bad = [str(p) for p, a in zip(paths, arrays, strict=True) if a is None]
    if bad:
        raise PodiumError(
            f"{len(bad)} unreadable image(s): {', '.join(bad[:3])}"
            f"{' ...' if len(bad) > 3 else ''} (replace or remove them from the CSV)"
        )
    check_same_size({a.shape[:2] for a in arrays})
    stacked = np.stack(arrays)  # (N, H, W, C)
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()

SERIAL_BELOW_S = 0.25  # estimated decode time under which no pool is started
THREADS_ABOVE_S = 0.002  # per image: the GIL-held part (~0.1 ms) is then < 5 %


def executor(pool: str, workers: int) -> Executor:
    """`pool`: "threads", or "processes" forked from this one (the workers import nothing
    again; threads where forking is unsafe or impossible: not Linux, a daemon process).

    A forked worker runs torch on one thread, as DataLoader workers do: an OpenMP pool
    this process started before the fork does not exist there, and waiting on it hangs.
    """
    if pool not in ("processes", "threads"):
        raise ValueError(f"pool={pool!r}: auto | processes | threads")
    if pool == "processes" and sys.platform == "linux" and not mp.current_process().daemon:
        return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork"),
                                   initializer=torch.set_num_threads, initargs=(1,))
    return ThreadPoolExecutor(max_workers=workers)

def check_same_size(sizes: set[tuple[int, int]]) -> None:
    if len(sizes) > 1:
        (h1, w1), (h2, w2) = sorted(sizes)[:2]
        raise PodiumError(
            f"images differ in size ({h1}x{w1}, {h2}x{w2}, ...): set data.image_size=<H> "
            f"or [H,W] to resize them on load"
        )


CACHE_VERSION = 3  # bump when the decoding changes, so old cache files are not reused
# (2: large JPEGs decoded in draft mode; 3: resized by torchvision instead of Pillow)
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
    ram_limit_gb: float, workers: int | None = None, interpolation: str = "bilinear",
) -> torch.Tensor:
    """decode_images through a cache file `<cache_dir>/images-<key>.npy`.

    The first run decodes in chunks straight into the file (written aside, then renamed:
    a killed run leaves no half file); later runs load it. A file larger than
    `ram_limit_gb` is memory-mapped (read-only) instead of loaded: pages come from disk
    as batches need them.
    """
    if not paths:
        return decode_images(paths, channels, size, workers, interpolation=interpolation)
    settings = f"{channels} {size}" + ("" if interpolation == "bilinear" else f" {interpolation}")
    file = cache_dir / f"images-{cache_key(paths, settings)}.npy"
    if not file.exists():
        file.parent.mkdir(parents=True, exist_ok=True)
        aside = file.with_name(f"{file.stem}.{os.getpid()}.partial")
        try:
            out = None
            for start in range(0, len(paths), CACHE_CHUNK):
                block = decode_images(paths[start : start + CACHE_CHUNK], channels, size,
                                      workers, interpolation=interpolation).numpy()
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
