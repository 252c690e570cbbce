"""Decoding: large JPEGs in draft mode close to a full decode + resize, other images within
a grey level of Pillow's resize, the same tensor whichever pool decodes them."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin

from podium.data import decode as images
from podium.data.decode import decode_images, decode_workers, load_image
from podium.errors import PodiumError

# Draft pixels against a full decode + bilinear resize, in grey levels of 255: the mean
# absolute difference stays under MEAN_TOLERANCE, no pixel further than MAX_TOLERANCE
# (measured: this test's image mean 0.24-0.33, max 2; `make bench`'s upscaled CIFAR photos,
# sharper edges, mean 0.4-0.5, max 14).
MEAN_TOLERANCE, MAX_TOLERANCE = 1.0, 16
# torchvision's antialiased bilinear resize against Pillow's BILINEAR (measured: mean
# 0-0.006, max 1, from 32 px upscaled to 224 px to 1024 px down to 64 px).
RESIZE_MEAN_TOLERANCE, RESIZE_MAX_TOLERANCE = 0.05, 1


def photo(path, width: int, height: int, seed: int = 0, fmt: str = "JPEG"):
    """Smooth random colours upscaled + sensor-like noise: a photo's texture, not a flat
    test card (a flat image would decode identically at every scale)."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    pixels = np.asarray(small.resize((width, height), Image.BICUBIC), dtype=np.int16)
    pixels = pixels + rng.integers(-6, 7, pixels.shape)
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, fmt, quality=90)
    return path


def full_decode(path, mode: str, size) -> np.ndarray:
    """The reference: PIL's full decode, converted, resized (what podium did before)."""
    with Image.open(path) as image:
        array = np.asarray(image.convert(mode).resize((size[1], size[0]), Image.BILINEAR))
    return array[:, :, None] if array.ndim == 2 else array


@pytest.fixture
def drafts(monkeypatch):
    """The scale libjpeg was asked for, per draft call (None: no draft)."""
    calls = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        before = self.size
        result = original(self, mode, size)
        calls.append(before[0] // self.size[0])
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    return calls


@pytest.mark.parametrize(("size", "scale"), [((64, 64), 8), ((120, 200), 4), ((300, 260), 2)])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_large_jpegs_decode_in_draft_mode_close_to_a_full_decode(tmp_path, drafts, size, scale,
                                                                  mode):
    path = photo(tmp_path / "IMG_0001.JPG", 1024, 768)
    got = load_image(path, mode, size)
    expected = full_decode(path, mode, size)
    assert drafts == [scale]  # libjpeg decoded at 1/scale: the fast path was taken
    assert got.shape == expected.shape == (*size, 1 if mode == "L" else 3)
    diff = np.abs(got.astype(np.int16) - expected.astype(np.int16))
    assert diff.mean() < MEAN_TOLERANCE and diff.max() <= MAX_TOLERANCE
    assert diff.any()  # a different decode indeed, not the full one


@pytest.mark.parametrize(("width", "height", "fmt", "size"), [
    (100, 100, "JPEG", (64, 64)),  # less than twice the target: no draft
    (1024, 768, "PNG", (64, 64)),  # not a JPEG
    (32, 32, "PNG", (224, 160)),  # upscaled
    (1024, 768, "JPEG", None),  # no target size: the image as it is
])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_other_images_are_pillows_full_decode_and_resize(tmp_path, drafts, width, height, fmt,
                                                         size, mode):
    path = photo(tmp_path / f"a.{fmt.lower()}", width, height, fmt=fmt)
    got = load_image(path, mode, size)
    if size is None:
        expected = np.asarray(Image.open(path).convert(mode))
        assert np.array_equal(got.squeeze(-1) if mode == "L" else got, expected)
    else:
        expected = full_decode(path, mode, size)
        assert got.shape == expected.shape
        diff = np.abs(got.astype(np.int16) - expected.astype(np.int16))
        assert diff.mean() < RESIZE_MEAN_TOLERANCE and diff.max() <= RESIZE_MAX_TOLERANCE
    assert drafts == []


@pytest.mark.parametrize(("width", "size"), [(32, (64, 64)), (32, (224, 160)), (300, (64, 96))])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_bicubic_is_pillows_bicubic_and_not_bilinear(tmp_path, width, size, mode):
    """data.interpolation=bicubic (most pretrained networks' own): Pillow's BICUBIC within a
    grey level on average, away from the bilinear resize."""
    path = photo(tmp_path / "a.png", width, width, fmt="PNG")
    got = load_image(path, mode, size, "bicubic").astype(np.int16)
    with Image.open(path) as image:
        expected = np.asarray(image.convert(mode).resize((size[1], size[0]), Image.BICUBIC))
    diff = np.abs(got - (expected[:, :, None] if mode == "L" else expected))
    assert diff.mean() < 0.1 and diff.max() <= 2
    assert np.abs(got - load_image(path, mode, size).astype(np.int16)).mean() > 0.1


@pytest.fixture
def pools(monkeypatch):
    """The executors decode_images starts; every job large enough for a pool."""
    started = []
    original = images.executor
    monkeypatch.setattr(images, "SERIAL_BELOW_S", 0.0)
    monkeypatch.setattr(images, "executor",
                        lambda pool, n: started.append((pool, n)) or original(pool, n))
    return started


@pytest.mark.parametrize(("workers", "pool"), [(1, "processes"), (3, "threads"),
                                               (2, "processes")])
def test_every_pool_gives_the_images_in_order(tmp_path, pools, workers, pool):
    paths = [photo(tmp_path / f"{k}.jpg", 160 + 8 * k, 120, seed=k) for k in range(9)]
    expected = torch.from_numpy(np.stack([full_decode(p, "RGB", (40, 30)) for p in paths]))
    got = decode_images(paths, 3, (40, 30), workers=workers, pool=pool)
    assert got.dtype == torch.uint8 and got.shape == (9, 3, 40, 30)
    diff = (got.float() - expected.permute(0, 3, 1, 2).float()).abs()
    assert diff.mean(dim=(1, 2, 3)).max() < MEAN_TOLERANCE  # each image in its place
    assert torch.equal(got, torch.stack([torch.from_numpy(load_image(p, "RGB", (40, 30)))
                                         .permute(2, 0, 1) for p in paths]))
    assert pools == ([] if workers == 1 else [(pool, workers)])


def test_forked_workers_run_torch_on_one_thread():
    """An OpenMP pool this process started before the fork is missing in a worker: a worker
    resizing with torch's parallel kernels would wait on it forever (DataLoader workers set
    one thread for the same reason)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # a user's process has several (the suite runs on one: conftest)
    try:
        with images.executor("processes", 2) as pool:
            threads = {pool.submit(torch.get_num_threads).result() for _ in range(4)}
    finally:
        torch.set_num_threads(before)
    assert threads == {1} or sys.platform != "linux"


def test_the_process_pool_forks_on_linux():
    with images.executor("processes", 2) as pool:
        kind = type(pool).__name__
        assert list(pool.map(abs, [-1, -2])) == [1, 2]
    assert kind == ("ProcessPoolExecutor" if sys.platform == "linux" else "ThreadPoolExecutor")


def test_unreadable_images_are_named_from_a_process_pool_too(tmp_path, pools):
    paths = [photo(tmp_path / f"{k}.jpg", 64, 48, seed=k) for k in range(6)]
    for k in (0, 4):  # one decoded in this process, one in a worker
        paths[k].write_bytes(b"not a jpeg")
    with pytest.raises(PodiumError, match=r"2 unreadable image\(s\): \S*0\.jpg, \S*4\.jpg "):
        decode_images(paths, 3, (16, 16), workers=2, pool="processes")
    assert pools == [("processes", 2)]


@pytest.mark.parametrize(("threads_above", "picked"), [(0.0, "threads"), (60.0, "processes")])
def test_auto_sends_slow_images_to_threads_and_quick_ones_to_processes(
        tmp_path, pools, monkeypatch, threads_above, picked):
    """The second image's decode time decides (the first loads PIL's plugins)."""
    monkeypatch.setattr(images, "THREADS_ABOVE_S", threads_above)
    paths = [photo(tmp_path / f"{k}.jpg", 64, 48, seed=k) for k in range(6)]
    decode_images(paths, 3, (16, 16), workers=2)
    assert pools == [(picked, 2)]


def test_a_small_job_starts_no_pool(tmp_path, monkeypatch):
    paths = [photo(tmp_path / f"{k}.png", 8, 8, seed=k, fmt="PNG") for k in range(5)]
    monkeypatch.setattr(images, "executor", lambda *a: pytest.fail("a pool was started"))
    assert decode_images(paths, 3, None, workers=4).shape == (5, 3, 8, 8)
    assert decode_images([], 3, (4, 4), workers=4).shape == (0, 3, 4, 4)


def test_decode_workers_default_to_every_usable_core():
    assert decode_workers(None) == len(os.sched_getaffinity(0))
    assert decode_workers(3) == 3 and decode_workers(0) == 1
