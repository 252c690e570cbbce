"""A submission is validated before it is written, atomically, never over an old one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from podium.errors import PodiumError
from podium.submission import make_submission, validate_submission, write_submission

CLASSES = ["cat", "dog", "emu"]
SAMPLE = pd.DataFrame({"id": ["3", "1", "2"], "label": ["cat", "cat", "cat"]})
PROBS = np.array([[0.1, 0.7, 0.2], [0.8, 0.1, 0.1], [0.2, 0.2, 0.6]])


def test_indices_become_original_labels_in_sample_order():
    sub = make_submission(SAMPLE, ["3", "1", "2"], PROBS, CLASSES, "id")
    assert sub.to_dict("list") == {"id": ["3", "1", "2"], "label": ["dog", "cat", "emu"]}


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s.rename(columns={"label": "Label"}), "header"),
    (lambda s: s.iloc[[1, 0, 2]], "ids differ"),
    (lambda s: s.iloc[:2], "ids differ"),
    (lambda s: s.assign(label=["cat", "cow", "emu"]), "not seen in training: \\['cow'\\]"),
    (lambda s: s.assign(label=["cat", None, "emu"]), "empty"),
])
def test_validation_rejects_what_the_leaderboard_would(change, message):
    good = make_submission(SAMPLE, ["3", "1", "2"], PROBS, CLASSES, "id")
    validate_submission(good, SAMPLE, CLASSES, "id")
    with pytest.raises(PodiumError, match=message):
        validate_submission(change(good), SAMPLE, CLASSES, "id")


def test_written_files_and_no_overwrite(tmp_path):
    first = write_submission(tmp_path, SAMPLE, ["3", "1", "2"], PROBS, CLASSES, "id")
    second = write_submission(tmp_path, SAMPLE, ["3", "1", "2"], PROBS[::-1], CLASSES, "id")
    assert first.name == "submission.csv" and second.name == "submission-1.csv"
    assert pd.read_csv(first, dtype=str).label.tolist() == ["dog", "cat", "emu"]
    assert pd.read_csv(tmp_path / "test_probs.csv").columns.tolist() == ["id", *CLASSES]


@pytest.mark.parametrize("bad", [
    {"ids": ["1", "3", "2"]},
    {"probs": np.array([[np.nan, 0, 1]] * 3)},
])
def test_failure_leaves_no_file(tmp_path, bad):
    args = {"ids": ["3", "1", "2"], "probs": PROBS} | bad
    with pytest.raises(PodiumError):
        write_submission(tmp_path, SAMPLE, args["ids"], args["probs"], CLASSES, "id")
    assert list(tmp_path.iterdir()) == []
