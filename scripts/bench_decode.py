"""First-run decode speed on large photos: today's decoder against podium's.

Builds a folder of photo-like JPEGs in a temporary directory (never kept): CIFAR-10-LT
training images (or smooth random images when ../shared/data/cifar10-lt is absent)
upscaled to a shorter side of 1536-3000 px (4:3, 3:4 or square), plus sensor-like noise of
+-`--noise` grey levels (more noise: more bits per pixel, slower entropy decoding, which
no scaled decode can skip), saved as quality-90 `IMG_nnnn.JPG`. Then, for each target
`data.image_size`, interleaved `--repeats` times so all see the same machine speed:

  before         the previous decoder, as it was: Pillow's full decode + BILINEAR resize,
                 a pool of min(8, cores) threads (Pillow releases the GIL: both cores work)
  before_serial  the same in one thread (one image at a time)
  draft_serial   podium.data.decode.load_image (JPEG draft decode, torchvision's resize), one
                 image at a time
  draft_threads  the same, a pool of `--workers` threads (default: every core)
  draft_procs    the same, `--workers` forked processes
  podium         podium's default: pool="auto" (threads for such photos)

It reports images/s (median over repeats), each variant's speed-up over `before` (median of
the per-repeat ratios), CPU seconds per image, and how far the draft pixels are from the
full decode + resize (mean and max absolute difference in grey levels), and the floor:
libjpeg's decode at 1/8 scale alone, one image at a time (the entropy decoding every
scaled decode still does, plus an eighth of the rest); then the same
pools on the 12,406 CIFAR-10-LT training JPEGs (32 px), where a pool of threads stalls on
the GIL. Prints JSON.

    python scripts/bench_decode.py [--images 200] [--sizes 64,224,384] [--noise 6] [--small N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
CIFAR = ROOT.parent / "shared" / "data" / "cifar10-lt" / "train"
SHORT_SIDE = (1536, 3000)  # px: >= 4x every target size benchmarked (<= 384)

from podium.data.decode import decode_images, decode_workers  # noqa: E402


def make_photo(index: int, source: Path | None, out: Path, noise: int, seed: int) -> int:
    """One photo-like JPEG; returns its size in bytes."""
    rng = np.random.default_rng([seed, index])
    short = int(rng.integers(SHORT_SIDE[0], SHORT_SIDE[1] + 1))
    width, height = short, int(short * rng.choice([1.0, 4 / 3]))
    if rng.random() < 0.5:
        width, height = height, width
    if source is not None:
        small = Image.open(source).convert("RGB")
    else:
        small = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    pixels = np.asarray(small.resize((width, height), Image.BICUBIC), dtype=np.int16)
    tile = rng.integers(-noise, noise + 1, (256, 256, 3), dtype=np.int16)
    pixels = pixels + np.tile(tile, (-(-height // 256), -(-width // 256), 1))[:height, :width]
    path = out / f"IMG_{index:04d}.JPG"
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)
    return path.stat().st_size


def make_photos(out: Path, n: int, noise: int, seed: int = 0) -> list[Path]:
    sources = sorted(CIFAR.iterdir())[:n] if CIFAR.is_dir() else [None] * n
    make = partial(make_photo, out=out, noise=noise, seed=seed)
    with ProcessPoolExecutor(mp_context=mp.get_context("fork")) as pool:
        list(pool.map(make, range(n), sources, chunksize=8))
    return sorted(out.glob("*.JPG"))


def bits_per_pixel(paths: list[Path]) -> float:
    pixels = sum(np.prod(Image.open(p).size) for p in paths)
    return 8 * sum(p.stat().st_size for p in paths) / pixels


def cpu_seconds() -> float:
    """This process and its finished children (the forked decode workers)."""
    own, children = (resource.getrusage(w) for w in (resource.RUSAGE_SELF,
                                                     resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def before_load(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """One image as the previous decoder read it."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        return np.asarray(image if size is None else image.resize(size[::-1], Image.BILINEAR))


def before(paths: list[Path], channels: int, size: tuple[int, int] | None,
           workers: int = min(8, os.cpu_count() or 1)) -> torch.Tensor:
    """The previous decoder: full decodes + Pillow resizes in min(8, cores) threads."""
    assert channels == 3
    with ThreadPoolExecutor(max_workers=workers) as pool:
        arrays = list(pool.map(partial(before_load, size=size), paths))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def variants(workers: int) -> dict:
    """name -> decode(paths, channels, size)."""
    return {
        "before": before,
        "before_serial": partial(before, workers=1),
        "draft_serial": partial(decode_images, workers=1),
        "draft_threads": partial(decode_images, workers=workers, pool="threads"),
        "draft_procs": partial(decode_images, workers=workers, pool="processes"),
        "podium": partial(decode_images, workers=workers),  # pool="auto": threads for photos
    }


def bench_size(paths: list[Path], size: int, workers: int, repeats: int) -> dict:
    rates: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {}
    outputs = {}
    for _ in range(repeats):
        for name, decode in variants(workers).items():
            start_cpu, start = cpu_seconds(), time.perf_counter()
            outputs[name] = decode(paths, 3, (size, size))
            wall = time.perf_counter() - start
            rates.setdefault(name, []).append(len(paths) / wall)
            cpu.setdefault(name, []).append((cpu_seconds() - start_cpu) / len(paths))
        for name in rates:
            ratios.setdefault(name, []).append(rates[name][-1] / rates["before"][-1])
    diff = (outputs["draft_threads"].float() - outputs["before"].float()).abs()
    assert all(outputs[n].equal(outputs["draft_threads"]) for n in ("draft_serial", "draft_procs",
                                                                     "podium"))
    return {
        "image_size": size,
        "img_s": {n: round(statistics.median(r), 1) for n, r in rates.items()},
        "speedup_vs_before": {n: round(statistics.median(r), 2) for n, r in ratios.items()},
        "cpu_ms_per_image": {n: round(1000 * statistics.median(c), 1) for n, c in cpu.items()},
        "draft_mean_abs_diff": round(float(diff.mean()), 3),
        "draft_max_abs_diff": int(diff.max()),
    }


def one_eighth_ms(paths: list[Path], repeats: int) -> float:
    """libjpeg's decode at 1/8 scale, ms per photo (median of repeats, one at a time)."""
    def decode(path: Path) -> None:
        with Image.open(path) as image:
            image.draft("RGB", (image.size[0] // 8, image.size[1] // 8))
            image.load()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for path in paths:
            decode(path)
        times.append((time.perf_counter() - start) / len(paths))
    return round(1000 * statistics.median(times), 1)


def bench_small(workers: int, repeats: int, limit: int = 12406) -> dict:
    """Small images, where PIL's Python part (held GIL) is most of each image's time: the
    CIFAR-10-LT training JPEGs (32 px) at their size, each pool against one process."""
    paths = sorted(CIFAR.iterdir())[:limit]
    pools = dict(zip(["before", "before_serial", "serial", "threads", "processes", "podium"],
                     variants(workers).values(), strict=True))  # podium: processes here
    rates: dict[str, list[float]] = {}
    for _ in range(repeats):
        for name, decode in pools.items():
            start = time.perf_counter()
            decode(paths, 3, None)
            rates.setdefault(name, []).append(len(paths) / (time.perf_counter() - start))
    return {"images": len(paths), "img_s": {n: round(statistics.median(r)) for n, r in
                                            rates.items()}}


def run(images: int, sizes: list[int], noise: int, workers: int | None, repeats: int,
        small: int = 12406) -> dict:
    workers = decode_workers(workers)
    with tempfile.TemporaryDirectory(prefix="podium-photos-") as tmp:
        start = time.perf_counter()
        paths = make_photos(Path(tmp), images, noise)
        built_s = time.perf_counter() - start
        sides = [min(Image.open(p).size) for p in paths]
        results = [bench_size(paths, size, workers, repeats) for size in sizes]
        return {
            "photos": len(paths), "source": "cifar10-lt" if CIFAR.is_dir() else "random",
            "shorter_side_px": [min(sides), max(sides)], "noise": noise,
            "bits_per_pixel": round(bits_per_pixel(paths), 2), "built_s": round(built_s, 1),
            "cores": len(os.sched_getaffinity(0)), "workers": workers, "repeats": repeats,
            "libjpeg_one_eighth_ms": one_eighth_ms(paths, repeats), "results": results,
            "cifar10_lt_32px": bench_small(workers, repeats, small) if CIFAR.is_dir() else None,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--sizes", default="64,224,384", help="data.image_size values")
    parser.add_argument("--noise", type=int, default=6, help="+- grey levels of noise")
    parser.add_argument("--workers", type=int, default=None, help="default: every core")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small", type=int, default=12406,
                        help="CIFAR-10-LT training JPEGs in the 32 px part (12,406: all)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(json.dumps(run(args.images, sizes, args.noise, args.workers, args.repeats,
                         args.small), indent=2))


if __name__ == "__main__":
    main()
