"""Reading competition folders: the real CIFAR-10-LT one and small hand-made ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import CIFAR, needs_cifar
from podium.datamodule import CompetitionDataModule, sort_labels
from podium.errors import PodiumError


@needs_cifar
def test_cifar10_lt_folder():
    dm = CompetitionDataModule(root=str(CIFAR), val_fraction=0.2, seed=0)
    dm.setup("predict")
    train = pd.read_csv(CIFAR / "train.csv", dtype=str)
    sample = pd.read_csv(CIFAR / "sample_submission.csv", dtype=str)

    assert dm.class_names == sorted(train.label.unique())
    full_counts = sorted(train.label.value_counts().tolist(), reverse=True)
    assert full_counts == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    # The stratified hold-out keeps every class's share (within one image).
    expected = train.label.value_counts()[dm.class_names].to_numpy() * 0.8
    assert np.abs(np.array(dm.class_counts) - expected).max() <= 1
    assert len(dm.train_set) + len(dm.val_set) == 12406

    assert dm.test_ids == list(sample.id) and len(dm.test_set) == 10000
    assert dm.test_set.images.shape == (10000, 3, 32, 32)
    assert dm.test_set.images.dtype == torch.uint8
    # Cached pixels are the decoded JPEG, untouched.
    first = np.asarray(Image.open(CIFAR / "test" / f"{sample.id[0]}.jpg").convert("RGB"))
    assert torch.equal(dm.test_set.images[0], torch.from_numpy(first).permute(2, 0, 1))
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
    dm = CompetitionDataModule(root=str(root), val_fraction=0.5)
    dm.setup("predict")
    assert dm.train_ids == ["007", "008", "009", "010"]  # leading zeros survive
    assert dm.channels == 3 and dm.image_shape == (3, 6, 6)


def test_path_pattern_and_resize(tmp_path):
    root = write_folder(tmp_path, ext="jpg", size=(10, 6))
    dm = CompetitionDataModule(root=str(root), val_fraction=0.5, train_images="train/{id}.jpg",
                               image_size=[4, 5])
    dm.setup("fit")
    assert dm.image_shape == (3, 4, 5)


def test_grayscale_images_give_one_channel(tmp_path):
    dm = CompetitionDataModule(root=str(write_folder(tmp_path, mode="L")), val_fraction=0.5)
    dm.setup("fit")
    assert dm.channels == 1 and dm.mean == pytest.approx([7 / 255])


def test_numeric_labels_sort_as_numbers():
    assert sort_labels(["10", "2", "1", "2"]) == ["1", "2", "10"]
    assert sort_labels(["b", "a"]) == ["a", "b"]


def test_mixed_image_sizes_need_image_size(tmp_path):
    root = write_folder(tmp_path)
    Image.new("RGB", (9, 9)).save(root / "train" / "a.png")
    dm = CompetitionDataModule(root=str(root), val_fraction=0.5)
    with pytest.raises(PodiumError, match="data.image_size"):
        dm.setup("fit")


def test_folds_partition_the_data(tmp_path):
    root = write_folder(tmp_path, ids=tuple("abcdefgh"), labels=tuple("xyxyxyxy"))
    seen = []
    for fold in range(2):
        dm = CompetitionDataModule(root=str(root), n_folds=2, fold=fold, seed=3)
        dm.setup("fit")
        seen += list(dm.val_idx)
        assert not set(dm.train_idx) & set(dm.val_idx)
    assert sorted(seen) == list(range(8))


def test_class_with_one_example_names_the_class(tmp_path):
    root = write_folder(tmp_path, labels=("x", "y", "x", "x"))
    dm = CompetitionDataModule(root=str(root), val_fraction=0.5)
    with pytest.raises(PodiumError, match="class 'y' has 1 example"):
        dm.setup("fit")


def test_group_folds_keep_each_group_in_one_fold(tmp_path):
    ids = tuple("abcdefghijkl")
    root = write_folder(tmp_path, ids=ids, labels=tuple("xyxyxyxyxyxy"))
    train = pd.read_csv(root / "train.csv", dtype=str)
    train["patient"] = ["p1", "p1", "p2", "p2", "p3", "p3", "p4", "p4", "p5", "p5", "p6", "p6"]
    train.to_csv(root / "train.csv", index=False)
    for fold in range(3):
        dm = CompetitionDataModule(root=str(root), n_folds=3, fold=fold, group_col="patient")
        dm.setup("fit")
        val_groups = {train.patient[i] for i in dm.val_idx}
        train_groups = {train.patient[i] for i in dm.train_idx}
        assert val_groups and not val_groups & train_groups
