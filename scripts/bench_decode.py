"""First-run decode speed on large photos: today's decoder against podium's.

Builds a folder of photo-like JPEGs in a temporary directory (never kept): CIFAR-10-LT
training images (or smooth random images when ../shared/data/cifar10-lt is absent)
upscaled to a shorter side of 1536-3000 px (4:3, 3:4 or square), plus sensor-like noise of
+-`--noise` grey levels (more noise: more bits per pixel, slower entropy decoding, which
no scaled decode can skip), saved as quality-90 `IMG_nnnn.JPG`. Then, for each target
`data.image_size`, interleaved `--repeats` times so all see the same machine speed:

  before         the previous decoder: full decode + resize, a pool of min(8, cores) threads
  draft_serial   JPEG draft decode (podium.images.load_image), one image at a time
  draft_threads  draft decode, a pool of `--workers` threads (default: every core)
  draft_procs    draft decode, `--workers` forked processes
  podium         podium's default: draft decode, pool="auto" (threads for such photos)

It reports images/s (median over repeats), each variant's speed-up over `before` (median of
the per-repeat ratios), CPU seconds per image, and how far the draft pixels are from the
full decode + resize (mean and max absolute difference in grey levels); then the same
pools on the 12,406 CIFAR-10-LT training JPEGs (32 px), where a pool of threads stalls on
the GIL. Prints JSON.

    python scripts/bench_decode.py [--images 200] [--sizes 64,224,384] [--noise 6]
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
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
CIFAR = ROOT.parent / "shared" / "data" / "cifar10-lt" / "train"
SHORT_SIDE = (1536, 3000)  # px: >= 4x every target size benchmarked (<= 384)

from podium.images import decode_images, decode_workers  # noqa: E402


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


def variants(workers: int) -> dict[str, dict]:
    return {
        "before": {"workers": min(8, os.cpu_count() or 1), "pool": "threads", "draft": False},
        "draft_serial": {"workers": 1},
        "draft_threads": {"workers": workers, "pool": "threads"},
        "draft_procs": {"workers": workers, "pool": "processes"},
        "podium": {"workers": workers},  # pool="auto": threads for these photos
    }


def bench_size(paths: list[Path], size: int, workers: int, repeats: int) -> dict:
    rates: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {}
    outputs = {}
    for _ in range(repeats):
        for name, kwargs in variants(workers).items():
            start_cpu, start = cpu_seconds(), time.perf_counter()
            outputs[name] = decode_images(paths, 3, (size, size), **kwargs)
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


def bench_small(workers: int, repeats: int, limit: int = 12406) -> dict:
    """Small images, where PIL's Python part (held GIL) is most of each image's time: the
    CIFAR-10-LT training JPEGs (32 px) at their size, each pool against one process."""
    paths = sorted(CIFAR.iterdir())[:limit]
    pools = {"before": {"workers": min(8, os.cpu_count() or 1), "pool": "threads"},
             "serial": {"workers": 1}, "threads": {"workers": workers, "pool": "threads"},
             "processes": {"workers": workers, "pool": "processes"},
             "podium": {"workers": workers}}  # pool="auto": processes for 32 px images
    rates: dict[str, list[float]] = {}
    for _ in range(repeats):
        for name, kwargs in pools.items():
            start = time.perf_counter()
            decode_images(paths, 3, None, **kwargs)
            rates.setdefault(name, []).append(len(paths) / (time.perf_counter() - start))
    return {"images": len(paths), "img_s": {n: round(statistics.median(r)) for n, r in
                                            rates.items()}}


def run(images: int, sizes: list[int], noise: int, workers: int | None, repeats: int) -> dict:
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
            "results": results,
            "cifar10_lt_32px": bench_small(workers, repeats) if CIFAR.is_dir() else None,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--sizes", default="64,224,384", help="data.image_size values")
    parser.add_argument("--noise", type=int, default=6, help="+- grey levels of noise")
    parser.add_argument("--workers", type=int, default=None, help="default: every core")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(json.dumps(run(args.images, sizes, args.noise, args.workers, args.repeats), indent=2))


if __name__ == "__main__":
    main()
