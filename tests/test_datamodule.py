"""Reading competition folders: the real CIFAR-10-LT one and small hand-made ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import CIFAR, needs_cifar
from podium.data.image import ImageDataModule
from podium.data.labels import sort_labels
from podium.errors import PodiumError


@needs_cifar
def test_cifar10_lt_folder():
    dm = ImageDataModule(root=str(CIFAR), val_fraction=0.2, seed=0)
    dm.setup("predict")
    train = pd.read_csv(CIFAR / "train.csv", dtype=str)
    sample = pd.read_csv(CIFAR / "sample_submission.csv", dtype=str)

    assert dm.class_names == sorted(train.label.unique())
    full_counts = sorted(train.label.value_counts().tolist(), reverse=True)
    assert full_counts == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    # The stratified hold-out keeps every class's share (within one image).
    expected = train.label.value_counts()[dm.class_names].to_numpy() * 0.8
    assert np.abs(np.array(dm.spec.class_counts) - expected).max() <= 1
    assert len(dm.train_set) + len(dm.val_set) == 12406

    assert dm.test_ids == list(sample.id) and len(dm.test_set) == 10000
    assert dm.test_set.inputs.shape == (10000, 3, 32, 32)
    assert dm.test_set.inputs.dtype == torch.uint8
    # Cached pixels are the decoded JPEG, untouched.
    first = np.asarray(Image.open(CIFAR / "test" / f"{sample.id[0]}.jpg").convert("RGB"))
    assert torch.equal(dm.test_set.inputs[0], torch.from_numpy(first).permute(2, 0, 1))
    batch, labels = next(iter(dm.train_dataloader()))
    assert batch.shape == (dm.batch_size, 3, 32, 32) and labels.dtype == torch.int64


def write_folder(root, ids=("a", "b", "c", "d"), labels=("x", "y", "x", "y"), ext="png",
                 size=(6, 6), mode="RGB"):
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    for i in ids:
        Image.new(mode, size, color=7).save(root / "train" / f"{i}.{ext}")
    Image.new(mode, size).save(root / "test" / f"t1.{ext}")
    pd.DataFrame({"id": list(ids), "label": list(labels)}).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"id": ["t1"], "label": ["x"]}).to_csv(root / "sample_submission.csv",
                                                       index=False)
    return root


def test_any_image_extension_and_string_ids_are_kept(tmp_path):
    root = write_folder(tmp_path, ids=("007", "008", "009", "010"), ext="jpeg")
    dm = ImageDataModule(root=str(root), val_fraction=0.5)
    dm.setup("predict")
    assert dm.train_ids == ["007", "008", "009", "010"]  # leading zeros survive
    assert dm.spec.net_inputs == {"in_chans": 3} and dm.spec.image_size == (6, 6)


def test_path_pattern_and_resize(tmp_path):
    root = write_folder(tmp_path, ext="jpg", size=(10, 6))
    dm = ImageDataModule(root=str(root), val_fraction=0.5, train_images="train/{id}.jpg",
                               image_size=[4, 5])
    dm.setup("fit")
    assert dm.spec.image_size == (4, 5)


def test_grayscale_images_give_one_channel(tmp_path):
    dm = ImageDataModule(root=str(write_folder(tmp_path, mode="L")), val_fraction=0.5)
    dm.setup("fit")
    assert dm.spec.net_inputs == {"in_chans": 1} and dm.spec.mean == pytest.approx([7 / 255])


def test_numeric_labels_sort_as_numbers():
    assert sort_labels(["10", "2", "1", "2"]) == ["1", "2", "10"]
    assert sort_labels(["b", "a"]) == ["a", "b"]


def test_mixed_image_sizes_need_image_size(tmp_path):
    root = write_folder(tmp_path)
    Image.new("RGB", (9, 9)).save(root / "train" / "a.png")
    dm = ImageDataModule(root=str(root), val_fraction=0.5)
    with pytest.raises(PodiumError, match="data.image_size"):
        dm.setup("fit")


def test_folds_partition_the_data(tmp_path):
    root = write_folder(tmp_path, ids=tuple("abcdefgh"), labels=tuple("xyxyxyxy"))
    seen = []
    for fold in range(2):
        dm = ImageDataModule(root=str(root), n_folds=2, fold=fold, seed=3)
        dm.setup("fit")
        seen += list(dm.oof_idx)
        assert not set(dm.train_idx) & set(dm.oof_idx)
    assert sorted(seen) == list(range(8))


def test_class_with_one_example_names_the_class(tmp_path):
    root = write_folder(tmp_path, labels=("x", "y", "x", "x"))
    dm = ImageDataModule(root=str(root), val_fraction=0.5)
    with pytest.raises(PodiumError, match="class 'y' has 1 example"):
        dm.setup("fit")


def test_group_folds_keep_each_group_in_one_fold(tmp_path):
    ids = tuple("abcdefghijkl")
    root = write_folder(tmp_path, ids=ids, labels=tuple("xyxyxyxyxyxy"))
    train = pd.read_csv(root / "train.csv", dtype=str)
    train["patient"] = ["p1", "p1", "p2", "p2", "p3", "p3", "p4", "p4", "p5", "p5", "p6", "p6"]
    train.to_csv(root / "train.csv", index=False)
    for fold in range(3):
        dm = ImageDataModule(root=str(root), n_folds=3, fold=fold, group_col="patient")
        dm.setup("fit")
        oof_groups = {train.patient[i] for i in dm.oof_idx}
        fold_groups = {train.patient[i] for i in [*dm.train_idx, *dm.val_idx]}
        assert oof_groups and not oof_groups & fold_groups


def pixels(path) -> torch.Tensor:
    """One image as PIL decodes it, (C, H, W): the reference for cached pixels."""
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"))).permute(2, 0, 1)


def noisy_folder(root, n=6):
    rng = np.random.default_rng(0)
    ids = [f"i{k}" for k in range(n)]
    write_folder(root, ids=ids, labels=["x", "y"] * (n // 2))
    for i in ids:
        Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(
            root / "train" / f"{i}.png")
    return ids


def test_decoded_images_are_cached_and_a_changed_image_is_decoded_again(tmp_path):
    root, cache = tmp_path / "comp", tmp_path / "cache"
    ids = noisy_folder(root)
    first = ImageDataModule(root=str(root), val_fraction=0.5, cache_dir=str(cache))
    first.setup("predict")
    files = sorted(cache.glob("*.npy"))
    assert len(files) == 2  # train and test images
    served = [first.train_set[k][0] for k in range(len(first.train_set))]
    expected = [pixels(root / "train" / f"{ids[j]}.png") for j in first.train_idx]
    assert all(torch.equal(a, b) for a, b in zip(served, expected, strict=True))

    # a second run loads the file instead of decoding (the decoder is not called)
    import podium.data.decode as images

    calls = []
    original = images.decode_images
    images.decode_images = lambda *a, **k: calls.append(a) or original(*a, **k)
    try:
        again = ImageDataModule(root=str(root), val_fraction=0.5, cache_dir=str(cache))
        again.setup("predict")
        assert calls == [] and sorted(cache.glob("*.npy")) == files
        assert torch.equal(again.train_set.inputs, first.train_set.inputs)

        # an edited image (new content and mtime) makes a new cache file with its pixels
        Image.new("RGB", (6, 6), color=(1, 2, 3)).save(root / "train" / f"{ids[0]}.png")
        edited = ImageDataModule(root=str(root), val_fraction=0.5, cache_dir=str(cache))
        edited.setup("fit")
        assert len(calls) == 1 and len(list(cache.glob("*.npy"))) == 3
        assert torch.equal(edited.train_set.inputs[0], pixels(root / "train" / f"{ids[0]}.png"))
    finally:
        images.decode_images = original


def test_a_failed_cache_write_leaves_no_file(tmp_path, monkeypatch):
    import podium.data.decode as images

    root, cache = tmp_path / "comp", tmp_path / "cache"
    ids = noisy_folder(root)
    (root / "train" / f"{ids[-1]}.png").write_text("not a png")  # in the last chunk
    monkeypatch.setattr(images, "CACHE_CHUNK", 2)
    dm = ImageDataModule(root=str(root), val_fraction=0.5, cache_dir=str(cache))
    with pytest.raises(PodiumError, match=f"unreadable image.*{ids[-1]}.png"):
        dm.setup("fit")
    assert list(cache.iterdir()) == []


def test_a_cache_over_the_ram_limit_is_memory_mapped(tmp_path):
    root, cache = tmp_path / "comp", tmp_path / "cache"
    ids = noisy_folder(root)
    dm = ImageDataModule(root=str(root), val_fraction=0.5, cache_dir=str(cache),
                               cache_ram_gb=0)
    dm.setup("fit")
    train = torch.stack([pixels(root / "train" / f"{ids[j]}.png") for j in dm.train_idx])
    assert torch.equal(dm.train_set[0][0], train[0])
    # normalisation statistics of the training split only
    assert np.allclose(dm.spec.mean, (train.double() / 255).mean(dim=(0, 2, 3)))
    assert np.allclose(dm.spec.std, (train.double() / 255).std(dim=(0, 2, 3), unbiased=False))
    # the served tensor reads the file: a change on disk shows through
    (file,) = cache.glob("*.npy")
    on_disk = np.load(file, mmap_mode="r+")
    on_disk[dm.train_idx[0]] = 255
    on_disk.flush()
    assert bool((dm.train_set[0][0] == 255).all())
