"""From class probabilities to a submission file the leaderboard will accept.

The sample submission decides the shape (`submission.format`, default `auto`):
- `label`: the argmax class's original label (regression: the prediction itself; binary:
  the positive class when p >= a learned decision threshold, see podium.submission.postprocess);
- `probability`: binary, the positive class's probability (AUC, log-loss leaderboards);
- `class_probabilities`: one column per class, matched by name to the header, in the
  header's order (multi-class log-loss leaderboards);
- `top_k`: the `metric.k` best labels, best first, space-separated (MAP@k leaderboards).
`auto` reads the header and `metric.monitor` (see `choose_format`). The file gets the sample
submission's header and row order; it is validated before it is written, written to a
temporary file and renamed (no partial file on any failure), and never replaces an
existing file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from podium.errors import PodiumError
from podium.io import write_atomic
from podium.run import SUBMISSION

FORMATS = ("auto", "label", "probability", "class_probabilities", "top_k")


@dataclass(frozen=True)
class Shape:
    """How predictions become the submission's columns, and why (printed by the run)."""

    format: str = "label"
    why: str = "submission.format=label"
    k: int = 3
    threshold: float | None = None  # binary labels: positive when p >= threshold


def label_columns(sample: pd.DataFrame, id_col: str) -> list[str]:
    return [c for c in sample.columns if c != id_col]


def cell_kind(cells: pd.Series) -> str:
    """What a sample submission's prediction column holds: `probabilities` (numbers in
    [0, 1], not all whole), `integers` (whole numbers: labels), or `text`."""
    numbers = pd.to_numeric(cells, errors="coerce")
    if len(cells) == 0 or numbers.isna().any():
        return "text"
    if (numbers == numbers.round()).all():
        return "integers"
    return "probabilities" if numbers.between(0, 1).all() else "text"


def auto_format(cells: str, task: str, metric: str, monitor: str | None,
                names: Sequence[str], k: int) -> tuple[str, str]:
    """(format, why) for one prediction column: the sample's values first, then the metric."""
    if task == "binary" and metric in ("auroc", "logloss"):
        return "probability", f"binary task scored by {monitor}"
    if cells == "probabilities" and task != "regression" and len(names) == 2:
        return "probability", "the sample submission's cells are probabilities"
    if task != "regression" and metric.startswith("map@"):
        return "top_k", f"{monitor} scores the {k} best labels"
    if task == "regression":
        return "label", f"one column of predicted values, {monitor or 'no metric'} scores them"
    return "label", f"one label column, {monitor or 'no metric'} scores labels"


def choose_format(requested: str, sample: pd.DataFrame, id_col: str,
                  class_names: Sequence[str], task: str, monitor: str | None = None,
                  k: int = 3, threshold: float | None = None) -> Shape:
    """The submission's shape: `requested`, or (`auto`) what the sample submission's header,
    its values and the monitored metric ask for:
    header = id + every class name -> class_probabilities; one column of probabilities
    (numbers in [0, 1], not all whole) and two classes -> probability; binary scored by
    `auroc` or `logloss` -> probability; a `map@k` monitor -> top_k; otherwise label. A
    choice the sample's values contradict (probabilities for many classes, whole numbers for
    a probability metric) is a one-line error: `submission.format=...` decides then."""
    if requested not in FORMATS:
        raise PodiumError(f"submission.format={requested} is unknown: use one of "
                          f"{', '.join(FORMATS)}")
    if task == "multilabel":  # label sets, or one column per label (0/1 or probability)
        layout = multilabel_layout(sample, class_names, id_col)
        return Shape("label_sets", f"multi-label, the sample submission asks for {layout}", k)
    columns, names = label_columns(sample, id_col), [str(c) for c in class_names]
    metric = (monitor or "").rsplit("/", 1)[-1]
    if len(columns) > 1 or requested == "class_probabilities":
        if sorted(columns) != sorted(names) or task == "regression":
            raise PodiumError(
                f"sample submission columns {columns} do not match the model's classes "
                f"{names}: a class-probability submission needs '{id_col}' plus one column "
                f"per class (or one label column for the other formats)")
        return Shape("class_probabilities", "the sample submission has one column per class"
                     if requested == "auto" else "submission.format=class_probabilities", k)
    if not columns:
        raise PodiumError(f"sample submission has only the column '{id_col}': it needs a "
                          f"prediction column")
    cells = "numbers" if task == "regression" else cell_kind(sample[columns[0]])
    if requested == "auto":
        requested, why = auto_format(cells, task, metric, monitor, names, k)
        where = f"sample submission's {columns[0]} cells"
        if cells == "probabilities" and requested != "probability":
            raise PodiumError(f"the {where} are probabilities (e.g. {sample[columns[0]].iloc[0]})"
                              f", but the model has {len(names)} classes: one probability "
                              "column fits two; set submission.format=label or top_k")
        if cells == "integers" and requested == "probability":
            raise PodiumError(f"the {where} are whole numbers (labels), but {monitor} scores "
                              "probabilities: set submission.format=probability or label")
        if requested == "label" and task == "multiclass" and metric in ("logloss", "auroc"):
            raise PodiumError(f"the sample submission has one column ({columns[0]}: labels), "
                              f"but {monitor} scores class probabilities: its header needs "
                              f"'{id_col}' plus one column per class, or set "
                              "submission.format=label to write labels")
    else:
        why = f"submission.format={requested}"
    if requested == "probability" and (task == "regression" or len(names) != 2):
        raise PodiumError(f"submission.format=probability needs data.task=binary or two "
                          f"classes (this run is {task} with {len(names)}); use "
                          "class_probabilities or label")
    if requested == "top_k" and task == "regression":
        raise PodiumError("submission.format=top_k needs classes; regression writes label")
    return Shape(requested, why, k, threshold if task == "binary" else None)


def predicted_values(probs: np.ndarray, class_names: Sequence[str], task: str,
                     shape: Shape) -> np.ndarray:
    """One value per row for a one-column submission."""
    names = np.asarray([str(c) for c in class_names], dtype=object)
    if task == "regression":
        return probs.reshape(len(probs), -1)[:, 0]
    if shape.format == "probability":
        return probs[:, 1]  # the positive class: the second of the two sorted labels
    if shape.format == "top_k":
        best = np.argsort(-probs, axis=1, kind="stable")[:, : shape.k]
        return np.array([" ".join(row) for row in names[best]], dtype=object)
    if shape.threshold is not None:
        return names[(probs[:, 1] >= shape.threshold).astype(int)]
    return names[probs.argmax(axis=1)]


def make_submission(sample: pd.DataFrame, ids: Sequence[str], probs: np.ndarray,
                    class_names: Sequence[str], id_col: str, task: str = "multiclass",
                    shape: Shape | None = None) -> pd.DataFrame:
    """The predictions in the sample submission's columns and row order."""
    shape = shape or choose_format("label", sample, id_col, class_names, task)
    if task == "multilabel":
        return multilabel_submission(sample, ids, probs, class_names, id_col)
    if list(sample[id_col]) != list(ids):
        raise PodiumError(
            f"predicted ids do not follow the sample submission's {id_col} column; "
            f"predict with the same data.root the model was trained on"
        )
    submission = sample.copy()
    if shape.format == "class_probabilities":
        index = {str(c): i for i, c in enumerate(class_names)}
        for column in label_columns(sample, id_col):
            submission[column] = probs[:, index[column]]
        return submission
    submission[label_columns(sample, id_col)[0]] = predicted_values(probs, class_names, task,
                                                                    shape)
    return submission


def validate_submission(submission: pd.DataFrame, sample: pd.DataFrame,
                        class_names: Sequence[str], id_col: str,
                        task: str = "multiclass", shape: Shape | None = None) -> None:
    """What the leaderboard checks: header, ids and their order, no gaps, and per format:
    known labels, k distinct known labels, probabilities in [0, 1] (regression: finite)."""
    shape = shape or Shape()
    if task == "multilabel":
        return validate_multilabel_submission(submission, sample, class_names, id_col)
    if list(submission.columns) != list(sample.columns):
        raise PodiumError(
            f"submission header {list(submission.columns)} differs from the sample "
            f"submission's {list(sample.columns)}"
        )
    if len(submission) != len(sample) or not (
        submission[id_col].astype(str).values == sample[id_col].astype(str).values
    ).all():
        raise PodiumError(
            f"submission ids differ from the sample submission's ({len(submission)} vs "
            f"{len(sample)} rows, or another order)"
        )
    columns = label_columns(sample, id_col)
    values = submission[columns]
    if values.isna().any().any():
        raise PodiumError(f"submission has empty {columns[0]} values")
    if task == "regression" or shape.format in ("probability", "class_probabilities"):
        numbers = values.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(numbers).all():
            raise PodiumError(f"submission has non-numeric or infinite {columns[0]} values")
        if task != "regression" and ((numbers < 0) | (numbers > 1)).any():
            raise PodiumError(f"submission has probabilities outside [0, 1] in {columns}")
        return
    known = {str(c) for c in class_names}
    labels = values[columns[0]].astype(str)
    tokens = labels.str.split(" ") if shape.format == "top_k" else labels.map(lambda v: [v])
    unknown = {t for row in tokens for t in row} - known
    if unknown:
        raise PodiumError(
            f"submission has labels not seen in training: {sorted(unknown)[:5]}"
        )
    wanted = min(shape.k, len(known)) if shape.format == "top_k" else 1
    bad = tokens[tokens.map(lambda row: len(set(row)) != wanted)]
    if len(bad):
        raise PodiumError(f"submission row {bad.index[0]} has {bad.iloc[0]}: expected "
                          f"{wanted} distinct label(s)")


# -- multi-label: label sets, or one column per label -------------------------------------------
THRESHOLD = 0.5  # a label is predicted when its probability is above this (as torchmetrics)


def multilabel_layout(sample: pd.DataFrame, class_names: Sequence[str], id_col: str) -> str:
    """"sets" (one column of space-separated labels), "binary" (a 0/1 column per label) or
    "probability" (a probability column per label), read from the sample submission."""
    columns = [c for c in sample.columns if c != id_col]
    names = [str(c) for c in class_names]
    if sorted(columns) == sorted(names):
        values = sample[columns].astype(str).apply(lambda col: col.str.strip())
        return "binary" if values.isin(["0", "1"]).all().all() else "probability"
    if len(columns) == 1 and columns[0] not in names:
        return "sets"
    unknown = [c for c in columns if c not in names]
    if unknown and len(columns) > 1:
        raise PodiumError(f"sample submission column '{unknown[0]}' is not a label the model "
                          f"knows (labels: {', '.join(names[:10])}); predict with a model "
                          f"trained on this competition")
    missing = [n for n in names if n not in columns]
    raise PodiumError(f"sample submission has columns {list(sample.columns)}: expected "
                      f"'{id_col}' and one label-set column, or one column per label (no "
                      f"column for '{missing[0] if missing else names[0]}')")


def multilabel_submission(sample: pd.DataFrame, ids: Sequence[str], probs: np.ndarray,
                          class_names: Sequence[str], id_col: str) -> pd.DataFrame:
    """Label sets (probability > THRESHOLD) in the sample submission's shape: one column of
    space-separated labels in class order (an empty set: an empty cell), or one column per
    label holding 0/1 (when the sample's hold only 0/1) or the probability."""
    from podium.data.labels import join_label_set

    if list(sample[id_col]) != list(ids):
        raise PodiumError(
            f"predicted ids do not follow the sample submission's {id_col} column; "
            f"predict with the same data.root the model was trained on"
        )
    layout = multilabel_layout(sample, class_names, id_col)
    submission = sample.copy()
    names = [str(c) for c in class_names]
    if layout == "sets":
        label_col = [c for c in sample.columns if c != id_col][0]
        chosen = np.asarray(names, dtype=object)
        submission[label_col] = [join_label_set(chosen[row > THRESHOLD]) for row in probs]
        return submission
    for i, name in enumerate(names):
        submission[name] = ((probs[:, i] > THRESHOLD).astype(int) if layout == "binary"
                            else probs[:, i])
    return submission


def validate_multilabel_submission(submission: pd.DataFrame, sample: pd.DataFrame,
                                   class_names: Sequence[str], id_col: str) -> None:
    """Header and ids as the sample's; label sets of known labels, or per-label columns
    of 0/1 or probabilities in [0, 1]."""
    from podium.data.labels import split_label_set

    if list(submission.columns) != list(sample.columns):
        raise PodiumError(f"submission header {list(submission.columns)} differs from the "
                          f"sample submission's {list(sample.columns)}")
    if len(submission) != len(sample) or list(submission[id_col].astype(str)) != list(
            sample[id_col].astype(str)):
        raise PodiumError(f"submission ids differ from the sample submission's "
                          f"({len(submission)} vs {len(sample)} rows, or another order)")
    layout = multilabel_layout(sample, class_names, id_col)
    names = {str(c) for c in class_names}
    if layout == "sets":
        label_col = [c for c in sample.columns if c != id_col][0]
        used = {label for cell in submission[label_col] for label in split_label_set(cell)}
        if used - names:
            raise PodiumError(f"submission has labels not seen in training: "
                              f"{sorted(used - names)[:5]}")
        return
    values = submission[[str(c) for c in class_names]].apply(pd.to_numeric, errors="coerce")
    allowed = values.isin([0, 1]) if layout == "binary" else (values >= 0) & (values <= 1)
    if not allowed.all().all():
        raise PodiumError(f"submission has per-label values outside "
                          f"{'{0, 1}' if layout == 'binary' else '[0, 1]'} or non-numeric")


def write_submission(out_dir: Path, sample: pd.DataFrame, ids: Sequence[str],
                     probs: np.ndarray, class_names: Sequence[str], id_col: str,
                     task: str = "multiclass", shape: Shape | None = None) -> Path:
    """Write the validated `submission.csv` (`submission-N.csv` when one is there already);
    return its path. Regression: `probs` is the prediction (N, 1)."""
    if not np.isfinite(probs).all():
        raise PodiumError("predicted probabilities contain NaN/inf: the model diverged")
    shape = shape or choose_format("label", sample, id_col, class_names, task)
    submission = make_submission(sample, ids, probs, class_names, id_col, task, shape)
    validate_submission(submission, sample, class_names, id_col, task, shape)
    return write_atomic(Path(out_dir) / SUBMISSION, submission.to_csv(index=False))
