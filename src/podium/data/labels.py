"""The target column: checked (no empty labels, no duplicate ids) and encoded.

Classes are the sorted unique labels (numerically when every label is a number); the
index <-> label mapping travels in the DataSpec to the checkpoint and the submission.
Multi-label targets (`data.task=multilabel`) are label sets: a column of separated labels
(an empty cell = no label) or one 0/1 column per label; classes are the sorted union,
targets a float32 multi-hot array (N, C).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from podium.errors import PodiumError
from podium.io import check_filled, check_ids


def check_values(frame: pd.DataFrame, path: Path, id_col: str, target_col: str,
                 allow_empty: bool = False) -> None:
    """Empty targets and empty or duplicate ids break training silently: stop with the
    first one. `allow_empty`: multi-label data, where an empty cell is the empty label set."""
    if not allow_empty:
        check_filled(frame, path, target_col, id_col)
    check_ids(frame, path, id_col)

def sort_labels(values: Sequence[str]) -> list[str]:
    """Sorted unique labels: numerically when every label is a number, else as text."""
    unique = sorted(set(values))
    try:
        return sorted(unique, key=float)
    except ValueError:
        return unique

REGRESSION_MIN_DISTINCT = 50  # whole numbers with more distinct values are a quantity


def infer_task(values: Sequence[str]) -> tuple[str, str]:
    """`data.task=auto`: (task, why). Two distinct labels are binary (a Yes/No target must
    not be scored as two-class multiclass); numbers with a fraction, or whole numbers with
    more than REGRESSION_MIN_DISTINCT distinct values, are regression; anything else is
    multiclass. Multi-label data is never guessed: say data.task=multilabel."""
    distinct = sort_labels([v for v in values if str(v).strip() != ""])
    shown = ", ".join(distinct[:3]) + (", ..." if len(distinct) > 3 else "")
    if len(distinct) == 2:
        return "binary", f"2 classes: {shown}"
    numbers = pd.to_numeric(pd.Series(distinct, dtype=object), errors="coerce")
    if len(distinct) > 2 and numbers.notna().all():
        if (numbers != numbers.round()).any():
            return "regression", f"numbers with fractions ({len(distinct)} distinct)"
        if len(distinct) > REGRESSION_MIN_DISTINCT:
            return "regression", f"{len(distinct)} distinct whole numbers"
    return "multiclass", f"{len(distinct)} classes: {shown}"


def encode_target(values: Sequence[str], task: str, path: Path,
                  target_col: str, sep: str = " ") -> tuple[np.ndarray, list[str]]:
    """Targets as class indices + sorted class names, or (regression) float32 values with
    `["prediction"]` as the one "class" (test_probs.csv/oof.csv column of the output), or
    (multilabel) label sets split on `sep` as a float32 multi-hot array."""
    from podium.spec import check_task

    check_task(task)
    if task == "multilabel":
        sets = [split_label_set(v, sep) for v in values]
        return multi_hot(sets, label_set_classes(sets, path, target_col), path, target_col)
    if task == "regression":
        numbers = pd.to_numeric(pd.Series(list(values)), errors="coerce").to_numpy(float)
        bad = np.flatnonzero(~np.isfinite(numbers))
        if len(bad):
            raise PodiumError(
                f"{path}: data.task=regression needs a numeric {target_col} column, but row "
                f"{bad[0] + 1} holds '{values[bad[0]]}' ({len(bad)} bad value(s)); fix the "
                f"values or use data.task=multiclass"
            )
        return numbers.astype(np.float32), ["prediction"]
    class_names = sort_labels(values)
    if task == "binary" and len(class_names) != 2:
        raise PodiumError(
            f"{path}: data.task=binary needs exactly 2 classes in {target_col}, found "
            f"{len(class_names)} ({', '.join(class_names[:5])}); use data.task=multiclass"
        )
    index = {name: i for i, name in enumerate(class_names)}
    return np.array([index[v] for v in values], dtype=np.int64), class_names


def split_label_set(cell: object, sep: str = " ") -> list[str]:
    """One cell's labels; an empty cell (or NaN, as pandas reads one) is the empty set."""
    if not isinstance(cell, str):
        return []
    if sep.strip() == "":
        return cell.split()
    return [label.strip() for label in cell.split(sep) if label.strip()]


def join_label_set(labels: Sequence[str]) -> str:
    """The space-separated form podium writes (oof.csv, submissions)."""
    return " ".join(str(label) for label in labels)


def label_set_classes(sets: Sequence[Sequence[str]], path: Path, column: str) -> list[str]:
    """The sorted union of the label sets; a column with no label at all is an error."""
    classes = sort_labels([label for labels in sets for label in labels])
    if not classes:
        raise PodiumError(f"{path}: column {column} holds no label in any row; set "
                          f"data.target_col (or data.target_cols) to the label column(s)")
    spaced = [c for c in classes if any(ch.isspace() for ch in c)]
    if spaced:
        raise PodiumError(f"{path}: label '{spaced[0]}' contains a space, but label sets are "
                          f"written space-separated; rename the label in {column}")
    return classes


def multi_hot(sets: Sequence[Sequence[str]], class_names: Sequence[str], path: Path,
              column: str) -> tuple[np.ndarray, list[str]]:
    """Label sets -> float32 (N, C) with a 1 for every label of the row; an unknown label
    (one that is not a class) is an error naming it."""
    index = {name: i for i, name in enumerate(class_names)}
    targets = np.zeros((len(sets), len(class_names)), dtype=np.float32)
    for row, labels in enumerate(sets):
        for label in labels:
            if label not in index:
                raise PodiumError(f"{path}: label '{label}' in {column} (row {row + 1}) is not "
                                  f"one of the classes {', '.join(class_names[:10])}")
            targets[row, index[label]] = 1.0
    return targets, list(class_names)


def encode_target_columns(frame: pd.DataFrame, columns: Sequence[str], path: Path,
                          task: str = "multilabel") -> tuple[np.ndarray, list[str]]:
    """`data.target_cols`: one 0/1 column per label -> multi-hot (N, C), classes sorted."""
    if task != "multilabel":
        raise PodiumError(f"data.target_cols needs data.task=multilabel (got data.task={task});"
                          f" or set data.target_cols=null")
    class_names = label_set_classes([list(columns)], path, "data.target_cols")
    targets = np.zeros((len(frame), len(class_names)), dtype=np.float32)
    for i, name in enumerate(class_names):
        values = pd.to_numeric(frame[name].str.strip(), errors="coerce")
        bad = np.flatnonzero(~values.isin([0, 1]).to_numpy())
        if len(bad):
            raise PodiumError(
                f"{path}: column {name} must hold 0 or 1 (data.target_cols), but row "
                f"{bad[0] + 1} holds '{frame[name].iloc[bad[0]]}' ({len(bad)} bad value(s))")
        targets[:, i] = values.to_numpy(dtype=np.float32)
    if not targets.any():
        raise PodiumError(f"{path}: data.target_cols {', '.join(columns)} hold no 1 in any "
                          f"row: there is no label to learn")
    return targets, class_names
