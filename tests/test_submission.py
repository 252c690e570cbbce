"""A submission is validated before it is written, atomically, never over an old one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from podium.errors import PodiumError
from podium.submission.formats import make_submission, validate_submission, write_submission

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
    # the probabilities are the run's files (podium.run), not the writer's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["submission-1.csv", "submission.csv"]


@pytest.mark.parametrize("bad", [
    {"ids": ["1", "3", "2"]},
    {"probs": np.array([[np.nan, 0, 1]] * 3)},
])
def test_failure_leaves_no_file(tmp_path, bad):
    args = {"ids": ["3", "1", "2"], "probs": PROBS} | bad
    with pytest.raises(PodiumError):
        write_submission(tmp_path, SAMPLE, args["ids"], args["probs"], CLASSES, "id")
    assert list(tmp_path.iterdir()) == []


# -- formats, each against a file written by hand ----------------------------------------------
from podium.submission.formats import choose_format  # noqa: E402


def test_class_probabilities_follow_a_shuffled_header():
    sample = pd.DataFrame({"id": ["3", "1", "2"], "emu": 0.0, "cat": 0.0, "dog": 0.0})
    shape = choose_format("auto", sample, "id", CLASSES, "multiclass", "val/f1_macro")
    assert shape.format == "class_probabilities"
    sub = make_submission(sample, ["3", "1", "2"], PROBS, CLASSES, "id", "multiclass", shape)
    expected = pd.DataFrame({"id": ["3", "1", "2"], "emu": [0.2, 0.1, 0.6],
                             "cat": [0.1, 0.8, 0.2], "dog": [0.7, 0.1, 0.2]})
    pd.testing.assert_frame_equal(sub, expected)
    validate_submission(sub, sample, CLASSES, "id", "multiclass", shape)


def test_binary_probability_is_the_positive_class():
    sample = pd.DataFrame({"id": ["a", "b"], "target": 0.5})
    probs = np.array([[0.9, 0.1], [0.25, 0.75]])
    shape = choose_format("auto", sample, "id", ["benign", "malignant"], "binary", "val/auroc")
    assert (shape.format, shape.why) == ("probability", "binary task scored by val/auroc")
    sub = make_submission(sample, ["a", "b"], probs, ["benign", "malignant"], "id", "binary",
                          shape)
    assert sub.to_dict("list") == {"id": ["a", "b"], "target": [0.1, 0.75]}
    # scored on labels: the sample's cells decide (0.5: a probability; a class: a label)
    assert choose_format("auto", sample, "id", ["benign", "malignant"], "binary",
                         "val/acc").format == "probability"
    label = choose_format("auto", sample.assign(target="benign"), "id",
                          ["benign", "malignant"], "binary", "val/acc")
    assert label.format == "label"


def test_top_k_lists_the_best_labels_best_first():
    shape = choose_format("auto", SAMPLE, "id", CLASSES, "multiclass", "val/map@2", k=2)
    assert shape.format == "top_k"
    sub = make_submission(SAMPLE, ["3", "1", "2"], PROBS, CLASSES, "id", "multiclass", shape)
    assert sub.label.tolist() == ["dog emu", "cat dog", "emu cat"]  # ties: the first class
    validate_submission(sub, SAMPLE, CLASSES, "id", "multiclass", shape)
    with pytest.raises(PodiumError, match="expected 2 distinct"):
        validate_submission(sub.assign(label=["dog dog", "cat dog", "emu"]), SAMPLE, CLASSES,
                            "id", "multiclass", shape)


@pytest.mark.parametrize(("columns", "task"), [(["cat", "dog"], "multiclass"),
                                              (["cat", "dog", "cow"], "multiclass")])
def test_class_columns_that_differ_from_the_model_are_one_line_and_write_nothing(
        tmp_path, columns, task):
    sample = pd.DataFrame({"id": ["3", "1", "2"], **{c: 0.0 for c in columns}})
    with pytest.raises(PodiumError, match=r"columns \[.*\] do not match the model's classes "
                                          r"\['cat', 'dog', 'emu'\]"):
        shape = choose_format("auto", sample, "id", CLASSES, task, "val/f1_macro")
        write_submission(tmp_path, sample, ["3", "1", "2"], PROBS, CLASSES, "id", task, shape)
    assert list(tmp_path.iterdir()) == []


def test_formats_that_do_not_fit_the_task_are_refused():
    with pytest.raises(PodiumError, match="needs data.task=binary"):
        choose_format("probability", SAMPLE, "id", CLASSES, "multiclass")
    with pytest.raises(PodiumError, match="submission.format=nope is unknown"):
        choose_format("nope", SAMPLE, "id", CLASSES, "multiclass")


def test_the_sample_values_decide_probability_or_label():
    """Read as the files are (text): 0.5 cells are probabilities whatever the task says;
    whole numbers are labels; a metric or class count they contradict is one line."""
    halves = pd.DataFrame({"id": ["a", "b"], "Survived": ["0.5", "0.5"]})
    shape = choose_format("auto", halves, "id", ["0", "1"], "multiclass", "val/acc")
    assert (shape.format, shape.why) == (
        "probability", "the sample submission's cells are probabilities")
    probs = np.array([[0.9, 0.1], [0.25, 0.75]])
    sub = make_submission(halves, ["a", "b"], probs, ["0", "1"], "id", "multiclass", shape)
    assert sub.Survived.tolist() == [0.1, 0.75]
    zeros = halves.assign(Survived=["0", "0"])
    assert choose_format("auto", zeros, "id", ["0", "1"], "multiclass", "val/acc").format == \
        "label"
    with pytest.raises(PodiumError, match="cells are whole numbers .* val/auroc scores "
                                          "probabilities: set submission.format="):
        choose_format("auto", zeros, "id", ["0", "1"], "binary", "val/auroc")
    assert choose_format("label", zeros, "id", ["0", "1"], "binary", "val/auroc").format == \
        "label"  # an explicit format wins
    with pytest.raises(PodiumError, match="cells are probabilities .* 3 classes"):
        choose_format("auto", halves, "id", CLASSES, "multiclass", "val/f1_macro")
    # one label column for many classes, and a metric of class probabilities: contradictory
    words = pd.DataFrame({"id": ["a", "b"], "weather": ["sun", "rain"]})
    for monitor in ("val/logloss", "val/auroc"):
        with pytest.raises(PodiumError, match=f"one column \\(weather: labels\\), but "
                                              f"{monitor} scores class probabilities"):
            choose_format("auto", words, "id", CLASSES, "multiclass", monitor)
    assert choose_format("label", words, "id", CLASSES, "multiclass", "val/logloss").format \
        == "label"


def test_a_regression_prediction_is_not_called_a_label():
    from podium.submission.formats import auto_format

    name, why = auto_format("numbers", "regression", "rmse", "val/rmse", ["price"], 3)
    assert name == "label" and why == "one column of predicted values, val/rmse scores them"
