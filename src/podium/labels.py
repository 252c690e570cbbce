"""The target column: checked (no empty labels, no duplicate ids) and encoded.

Classes are the sorted unique labels (numerically when every label is a number); the
index <-> label mapping travels in the DataSpec to the checkpoint and the submission.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from podium.errors import PodiumError


def check_values(frame: pd.DataFrame, path: Path, id_col: str, target_col: str) -> None:
    """Empty targets and duplicate ids break training silently: stop with the first one."""
    empty = frame[frame[target_col].str.strip() == ""]
    if len(empty):
        raise PodiumError(
            f"{path}: empty {target_col} for id {empty[id_col].iloc[0]} "
            f"({len(empty)} row(s)); fill or drop those rows"
        )
    duplicated = frame[frame[id_col].duplicated()]
    if len(duplicated):
        raise PodiumError(
            f"{path}: id {duplicated[id_col].iloc[0]} appears more than once "
            f"({len(duplicated)} duplicate(s)); ids must be unique"
        )

def sort_labels(values: Sequence[str]) -> list[str]:
    """Sorted unique labels: numerically when every label is a number, else as text."""
    unique = sorted(set(values))
    try:
        return sorted(unique, key=float)
    except ValueError:
        return unique

def encode_target(values: Sequence[str], task: str, path: Path,
                  target_col: str) -> tuple[np.ndarray, list[str]]:
    """Targets as class indices + sorted class names, or (regression) float32 values with
    `["prediction"]` as the one "class" (test_probs.csv/oof.csv column of the output)."""
    from podium.metrics import check_task

    check_task(task)
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
