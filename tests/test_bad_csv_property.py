"""Property: whatever malformed train.csv / sample_submission.csv a competitor has, podium's
datamodule + submission writing either works or raises a one-line PodiumError, never another
exception, and never leaves a partial output file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from podium.data.image import ImageDataModule
from podium.errors import PodiumError
from podium.submission.formats import write_submission

CLASSES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """12 train images (4 per class), 4 test images: 8x8 RGB."""
    root = tmp_path_factory.mktemp("tiny") / "comp"
    for folder, n in (("train", 12), ("test", 4)):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            pixels = np.full((8, 8, 3), 20 * i, dtype=np.uint8)
            Image.fromarray(pixels).save(root / folder / f"{folder[:2]}{i}.png")
    return root


def train_rows():
    return [[f"tr{i}", CLASSES[i % 3]] for i in range(12)]


def sample_rows():
    return [[f"te{i}", "a"] for i in range(4)]


# each mutation edits (header, rows) of one file, or the folder
def bom(header, rows):
    return ["\ufeff" + header[0], *header[1:]], rows


def spaces(header, rows):
    return [f" {h} " for h in header], rows


def drop_column(header, rows):
    return header[:1], [r[:1] for r in rows]


# edits of the label column leave a file that has lost it (drop_column) as it is
def empty_value(header, rows):
    return header, [[rows[0][0], *["" for _ in rows[0][1:]]], *rows[1:]]


def duplicate_id(header, rows):
    return header, [*rows, list(rows[0])]


def unknown_id(header, rows):
    return header, [*rows, ["nope", *rows[0][1:]]]


def extra_column(header, rows):
    return [*header, "extra"], [[*r, "x"] for r in rows]


def single_class(header, rows):
    return header, [[r[0], *["a" for _ in r[1:2]], *r[2:]] for r in rows]


def one_example_class(header, rows):
    return header, [*rows[:-1], [rows[-1][0], *["lonely" for _ in rows[-1][1:2]],
                                 *rows[-1][2:]]]


CSV_MUTATIONS = [bom, spaces, drop_column, empty_value, duplicate_id, unknown_id,
                 extra_column, single_class, one_example_class]


def not_an_image(root):
    (root / "train" / "tr0.png").write_text("this is not a png")


def grayscale_test_image(root):
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(root / "test" / "te0.png")


def rgba_train_image(root):
    Image.fromarray(np.zeros((8, 8, 4), dtype=np.uint8)).save(root / "train" / "tr1.png")


def stray_text_file(root):
    (root / "train" / "notes.txt").write_text("hello")


FOLDER_MUTATIONS = [not_an_image, grayscale_test_image, rgba_train_image, stray_text_file]


def write_csv(path, header, rows):
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(train_edits=st.lists(st.sampled_from(CSV_MUTATIONS), max_size=2),
       sample_edits=st.lists(st.sampled_from(CSV_MUTATIONS), max_size=2),
       folder_edits=st.lists(st.sampled_from(FOLDER_MUTATIONS), max_size=2, unique=True))
def test_malformed_inputs_work_or_fail_in_one_line(tiny, tmp_path_factory, train_edits,
                                                   sample_edits, folder_edits):
    root = tmp_path_factory.mktemp("case") / "comp"
    shutil.copytree(tiny, root)
    train = (["id", "label"], train_rows())
    sample = (["id", "label"], sample_rows())
    for edit in train_edits:
        train = edit(*train)
    for edit in sample_edits:
        sample = edit(*sample)
    write_csv(root / "train.csv", *train)
    write_csv(root / "sample_submission.csv", *sample)
    for edit in folder_edits:
        edit(root)
    out = root / "out"

    try:
        data = ImageDataModule(str(root), val_fraction=0.5, batch_size=4)
        data.setup("fit")
        data.setup("predict")
        assert data.train_set.images.shape[1] == data.channels
        assert data.test_set.images.shape[1:] == data.train_set.images.shape[1:]
        probs = np.eye(len(data.class_names))[np.arange(len(data.test_ids)) %
                                              len(data.class_names)]
        path = write_submission(out, data.sample, data.test_ids, probs, data.class_names,
                                data.id_col)
        assert path.read_text().splitlines()[0] == ",".join(data.sample.columns)
    except PodiumError as err:
        assert "\n" not in str(err) and str(err).strip()
        assert not out.exists() or not any(out.iterdir())
    # never a partial file, whatever happened
    assert not list(root.rglob("*.tmp"))
