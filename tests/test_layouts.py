"""Image data as people get it: class folders, nested and upper-case paths, paths that
leave the competition folder, a missing sample submission."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import f1_score
from test_what_happens import assert_says

from conftest import make_cfg
from podium.data.image import ImageDataModule
from podium.errors import PodiumError


def image(path: Path, value: int = 7, size=(6, 6), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color=value if mode == "L" else (value, value, value)).save(path)
    return path


def files_in(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def setup_error(root: Path, **kwargs) -> str:
    with pytest.raises(PodiumError) as err:
        ImageDataModule(root=str(root), val_fraction=0.5, **kwargs).setup("fit")
    assert "\n" not in str(err.value)
    return "error: " + str(err.value).replace(str(root), "<root>")


def to_class_folders(csv_root: Path, out: Path) -> Path:
    """The CSV layout copied as train/<label>/<id>.png + test/ (no CSV but the answers)."""
    train = pd.read_csv(csv_root / "train.csv", dtype=str)
    for i, label in zip(train.id, train.label, strict=True):
        (out / "train" / label).mkdir(parents=True, exist_ok=True)
        shutil.copy2(csv_root / "train" / f"{i}.png", out / "train" / label / f"{i}.png")
    shutil.copytree(csv_root / "test", out / "test")
    shutil.copy2(csv_root / "answers.csv", out / "answers.csv")
    return out


@pytest.fixture
def pets(tmp_path) -> Path:
    """Class folders the way downloads look: upper- and lower-case extensions, a nested
    folder in a class, a notebook checkpoint folder, .DS_Store, a README."""
    root = tmp_path / "pets"
    image(root / "train" / "dog" / "IMG_0002.JPG", 1)
    image(root / "train" / "dog" / "IMG_0004.jpg", 2)
    image(root / "train" / "cat" / "IMG_0001.png", 3)
    image(root / "train" / "cat" / "more" / "IMG_0003.jpeg", 4)
    image(root / "train" / ".ipynb_checkpoints" / "IMG_0001-checkpoint.png", 5)
    (root / "train" / ".DS_Store").write_bytes(b"\0")
    (root / "train" / "README.txt").write_text("pets")
    image(root / "test" / "t2.JPG", 6)
    image(root / "test" / "t1.png", 7)
    return root


# -- class folders ------------------------------------------------------------------------
def test_class_folders_read_as_labels_sorted_by_id(pets, caplog):
    dm = ImageDataModule(root=str(pets), val_fraction=0.5)
    with caplog.at_level(logging.WARNING, logger="podium.data.layouts"):
        dm.setup("predict")
    assert dm.train_ids == ["IMG_0001", "IMG_0002", "IMG_0003", "IMG_0004"]
    assert [dm.class_names[k] for k in dm.labels] == ["cat", "dog", "cat", "dog"]
    assert [p.relative_to(pets).as_posix() for p in dm.train_paths] == [
        "train/cat/IMG_0001.png", "train/dog/IMG_0002.JPG", "train/cat/more/IMG_0003.jpeg",
        "train/dog/IMG_0004.jpg"]
    # served pixels follow the ids (the images were filled with 3, 1, 4, 2)
    first = dm.train_set.inputs[:, 0, 0, 0].tolist()
    assert first == [3, 1, 4, 2]

    # the sample submission is written once, from the test file names, and said so
    written = pets / "sample_submission.csv"
    assert written.read_text() == "id,label\nt1,cat\nt2,cat\n"
    assert dm.test_ids == ["t1", "t2"] and len(dm.test_set) == 2
    assert f"wrote {written}" in caplog.text and "header id,label" in caplog.text
    stamp = written.stat().st_mtime_ns
    again = ImageDataModule(root=str(pets), val_fraction=0.5)
    again.setup("fit")
    assert written.stat().st_mtime_ns == stamp and not (pets / "sample_submission-1.csv").exists()


def test_the_header_follows_id_col_and_target_col(pets):
    dm = ImageDataModule(root=str(pets), val_fraction=0.5, id_col="image_id",
                         target_col="species")
    dm.setup("fit")
    sample = pd.read_csv(pets / "sample_submission.csv", dtype=str)
    assert list(sample.columns) == ["image_id", "species"] and list(sample.image_id) == ["t1", "t2"]


def test_a_sample_submission_of_the_user_is_read_not_replaced(pets):
    text = "id,label\nt2,dog\nt1,dog\n"
    (pets / "sample_submission.csv").write_text(text)
    dm = ImageDataModule(root=str(pets), val_fraction=0.5)
    dm.setup("predict")
    assert dm.test_ids == ["t2", "t1"] and dm.test_set.inputs[0, 0, 0, 0] == 6
    assert (pets / "sample_submission.csv").read_text() == text
    assert sorted(p.name for p in pets.glob("*.csv")) == ["sample_submission.csv"]


def test_a_read_only_folder_keeps_the_sample_submission_in_memory(pets, monkeypatch, caplog):
    def refuse(path, text, replace=False):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("podium.data.layouts.write_atomic", refuse)
    dm = ImageDataModule(root=str(pets), val_fraction=0.5)
    with caplog.at_level(logging.WARNING, logger="podium.data.layouts"):
        dm.setup("predict")
    assert list(dm.sample.id) == ["t1", "t2"] and len(dm.test_set) == 2
    assert not (pets / "sample_submission.csv").exists()
    assert "kept in memory" in caplog.text and "data.sample_submission=" in caplog.text


def test_class_folders_give_the_csv_layouts_ids_order_split_and_pixels(demo_root, tmp_path):
    csv_root = tmp_path / "csv"
    shutil.copytree(demo_root, csv_root)
    train = pd.read_csv(csv_root / "train.csv", dtype=str)
    train.sort_values("id").to_csv(csv_root / "train.csv", index=False)
    folders = to_class_folders(csv_root, tmp_path / "folders")

    by_csv = ImageDataModule(root=str(csv_root), seed=3)
    by_folders = ImageDataModule(root=str(folders), seed=3)
    by_csv.setup("predict")
    by_folders.setup("predict")
    assert by_folders.train_ids == sorted(train.id)
    assert by_folders.train_ids == by_csv.train_ids
    assert by_folders.class_names == by_csv.class_names
    assert np.array_equal(by_folders.labels, by_csv.labels)
    assert np.array_equal(by_folders.val_idx, by_csv.val_idx)
    assert torch.equal(by_folders.train_set.inputs, by_csv.train_set.inputs)
    answers = pd.read_csv(demo_root / "answers.csv", dtype=str)
    assert by_folders.test_ids == sorted(answers.id)


def test_class_folders_train_end_to_end_to_the_csv_layouts_score(demo_root, tmp_path):
    """No CSV written by hand: same seed, same leaderboard score as train.csv (sorted by id,
    the order class folders give)."""
    from podium.train import train

    csv_root = tmp_path / "csv"
    shutil.copytree(demo_root, csv_root)
    labels = pd.read_csv(csv_root / "train.csv", dtype=str)
    labels.sort_values("id").to_csv(csv_root / "train.csv", index=False)
    folders = to_class_folders(csv_root, tmp_path / "folders")
    assert sorted(p.name for p in folders.glob("*.csv")) == ["answers.csv"]

    scores, probs = [], []
    for name, root in (("csv", csv_root), ("folders", folders)):
        cfg = make_cfg(tmp_path / name, [f"data.root={root}", "trainer.max_epochs=2", "seed=5",
                                         "data.decode_workers=2", "model.net.depth=8",
                                         "model.net.width=4"])
        scores.append(train(cfg).metrics["leaderboard/f1_macro"])
        run = Path(cfg.paths.output_dir)
        answers = pd.read_csv(demo_root / "answers.csv", dtype=str).set_index("id")
        submission = pd.read_csv(run / "submission.csv", dtype=str)
        assert scores[-1] == pytest.approx(f1_score(answers.label[submission.id],
                                                    submission.label, average="macro"))
        assert json.loads((run / "metrics.json").read_text())["leaderboard/f1_macro"] == scores[-1]
        probs.append(pd.read_csv(run / "test_probs.csv", dtype={"id": str}).set_index("id"))
    assert (folders / "sample_submission.csv").is_file()
    assert scores[0] == scores[1]
    folder_probs = probs[1].loc[probs[0].index]
    assert np.allclose(folder_probs.to_numpy(), probs[0].to_numpy(), atol=1e-5)


# -- bad layouts: one line, nothing written ---------------------------------------------------
def bad_layout(root: Path, breakage: str) -> None:
    image(root / "train" / "cat" / "a.png")
    image(root / "train" / "dog" / "b.png")
    image(root / "test" / "t.png")
    if breakage == "mixed":
        image(root / "train" / "c.png")
    elif breakage == "empty":
        (root / "train" / "bird").mkdir()
        (root / "train" / "bird" / "notes.txt").write_text("no images")
    elif breakage == "duplicate":
        image(root / "train" / "dog" / "a.jpg")
    elif breakage == "no_test":
        shutil.rmtree(root / "test")
    elif breakage == "flat_test":
        shutil.rmtree(root / "test")
        image(root / "test" / "unknown" / "t.png")


@pytest.mark.parametrize(("breakage", "row"), [
    ("mixed", "`train/` holds class folders and images side by side"),
    ("empty", "a class folder holds no images"),
    ("duplicate", "two images in class folders have the same file name"),
    ("no_test", "class folders without `test/`"),
    ("flat_test", "class folders, `test/` holds only sub-folders"),
])
def test_a_bad_layout_says_one_line_and_writes_nothing(breakage, row, tmp_path):
    root = tmp_path / "comp"
    bad_layout(root, breakage)
    before = files_in(root)
    assert_says(setup_error(root), row)
    assert files_in(root) == before


def test_train_csv_columns_cannot_be_read_from_class_folders(pets):
    message = setup_error(pets, group_col="patient")
    assert message.startswith("error: data.group_col=patient names a train.csv column")
    assert not (pets / "sample_submission.csv").exists()


# -- paths ----------------------------------------------------------------------------------
def csv_folder(root: Path, rows: dict[str, str], test: dict[str, str] | None = None,
               extra: dict[str, list[str]] | None = None) -> Path:
    """train.csv (id, label, + extra columns) and sample_submission.csv (`test`'s ids,
    default t1), an image at every given relative path."""
    test = test or {"t1": "test/t1.png"}
    for k, path in enumerate({**rows, **test}.values()):
        image(root / path, 10 * k)
    ids = list(rows)
    pd.DataFrame({"id": ids, "label": ["x", "y"] * (len(ids) // 2), **(extra or {})}).to_csv(
        root / "train.csv", index=False)
    pd.DataFrame({"id": list(test), "label": "x"}).to_csv(
        root / "sample_submission.csv", index=False)
    return root


def test_ids_with_sub_folders_extensions_and_upper_case_are_found(tmp_path):
    rows = {"a/1": "train/a/1.png", "b/c/2": "train/b/c/2.JPG", "3.jpg": "train/3.jpg",
            "IMG_4": "train/IMG_4.JPEG"}
    root = csv_folder(tmp_path, rows, {"t1": "test/t1.PNG"})
    dm = ImageDataModule(root=str(root))
    dm.read_inputs()  # labels read, every path found (no split, no decoding)
    assert [p.relative_to(root).as_posix() for p in dm.train_paths] == list(rows.values())
    assert [p.relative_to(root).as_posix() for p in dm.test_paths] == ["test/t1.PNG"]


def test_a_pattern_finds_upper_case_extensions_and_nested_ids(tmp_path):
    rows = {"a/1": "images/train/a/1.JPG", "b/2": "images/train/b/2.jpg"}
    root = csv_folder(tmp_path, rows, {"t1": "images/test/t1.JPG"})
    dm = ImageDataModule(root=str(root), train_images="images/train/{id}.jpg",
                         test_images="images/test/{id}.jpg")
    dm.read_inputs()
    assert [p.relative_to(root).as_posix() for p in dm.train_paths] == list(rows.values())
    assert dm.test_paths == [root / "images/test/t1.JPG"]


def test_path_col_for_train_and_test_csv_for_test(tmp_path):
    rows = {"r1": "imgs/one.png", "r2": "imgs/sub/two.png"}
    root = csv_folder(tmp_path, rows, {"t1": "other/t.png"},
                      extra={"path": list(rows.values())})
    pd.DataFrame({"id": ["t0", "t1"], "path": ["unused.png", "other/t.png"]}).to_csv(
        root / "test.csv", index=False)
    dm = ImageDataModule(root=str(root), path_col="path", test_csv="test.csv")
    dm.read_inputs()
    assert dm.train_paths == [root / p for p in rows.values()]
    assert dm.test_ids == ["t1"] and dm.test_paths == [root / "other/t.png"]


def test_test_csv_needs_every_test_id_and_a_path_col(tmp_path):
    root = csv_folder(tmp_path, {"r1": "train/r1.png", "r2": "train/r2.png"},
                      {"t1": "test/t1.png"})
    pd.DataFrame({"id": ["t9"], "path": ["test/t1.png"]}).to_csv(root / "test.csv", index=False)
    assert setup_error(root, test_csv="test.csv").startswith(
        "error: data.test_csv=test.csv needs data.path_col")
    message = setup_error(root, test_csv="test.csv", path_col="path",
                          train_images="train/{id}.png")
    assert message.startswith("error: <root>/train.csv: column 'path' not found")
    train = pd.read_csv(root / "train.csv").assign(path=["train/r1.png", "train/r2.png"])
    train.to_csv(root / "train.csv", index=False)
    assert setup_error(root, test_csv="test.csv", path_col="path") == (
        "error: <root>/test.csv: 1 id(s) of sample_submission.csv have no row, e.g. t1: "
        "give every test image a row with its path")


@pytest.mark.parametrize("where", ["parent", "absolute", "pattern"])
def test_a_path_outside_the_root_is_one_line(where, tmp_path):
    outside = image(tmp_path / "x.png")
    root = csv_folder(tmp_path / "comp", {"1": "train/1.png", "2": "train/2.png"})
    kwargs: dict = {"path_col": "path"}
    paths = {"parent": "../x.png", "absolute": str(outside)}
    train = pd.read_csv(root / "train.csv", dtype=str).assign(
        path=["train/1.png", paths.get(where, "train/2.png")])
    train.to_csv(root / "train.csv", index=False)
    if where == "pattern":
        (root / "train.csv").write_text("id,label\n1,x\n../../x,y\n")
        kwargs = {"train_images": "train/{id}.png"}
    message = setup_error(root, **kwargs)
    if where == "parent":
        assert_says(message, "an image path leaves `data.root`")
    assert "is outside data.root=<root>" in message and f"{os.sep}x.png (id " in message


def test_absolute_paths_inside_the_root_are_fine(tmp_path):
    root = csv_folder(tmp_path, {"r1": "train/r1.png", "r2": "train/r2.png"})
    train = pd.read_csv(root / "train.csv", dtype=str).assign(
        path=[str(root / "train/r1.png"), os.path.join("train", "..", "train", "r2.png")])
    train.to_csv(root / "train.csv", index=False)
    dm = ImageDataModule(root=str(root), path_col="path")
    dm.read_inputs()
    assert [p.resolve() for p in dm.train_paths] == [
        (root / "train/r1.png").resolve(), (root / "train/r2.png").resolve()]
