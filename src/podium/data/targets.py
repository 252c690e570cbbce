"""A regression target as the network learns it: optionally log1p, then standardised.

A price column starts MSE at 3e7 and a network's outputs near zero; competitions scored by
RMSLE compare log1p values. So the loss sees `(transform(y) - mean) / std`, with `mean`/`std`
of the training split, and every prediction (metrics, test_probs.csv, oof.csv, the
submission) is mapped back to the original units (podium.model.outputs.TargetScale). The
fitted numbers travel in the DataSpec's `target_scale`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from podium.errors import PodiumError

TARGET_TRANSFORMS = ("none", "log1p")


def check_target_transform(transform: str, task: str, path: Path, column: str,
                           values: Sequence[str]) -> None:
    """An unknown transform, a transform on a classification target, or log1p of a
    negative value: one line naming the row, before anything is trained or written."""
    if transform not in TARGET_TRANSFORMS:
        raise PodiumError(f"data.target_transform={transform} is unknown: use one of "
                          f"{', '.join(TARGET_TRANSFORMS)}")
    if transform == "none":
        return
    if task != "regression":
        raise PodiumError(f"data.target_transform={transform} transforms a regression target, "
                          f"but data.task={task}: use data.target_transform=none")
    numbers = pd.to_numeric(pd.Series(list(values)), errors="coerce").to_numpy(float)
    bad = np.flatnonzero(numbers < 0)
    if len(bad):
        raise PodiumError(
            f"{path}: data.target_transform=log1p needs {column} >= 0, but row {bad[0] + 1} "
            f"holds {values[bad[0]]} ({len(bad)} negative value(s)); use "
            f"data.target_transform=none")


def fit_target_scale(values: np.ndarray, transform: str = "none") -> dict:
    """{"transform", "mean", "std"} of the training split's (transformed) targets."""
    values = np.asarray(values, dtype=np.float64)
    z = np.log1p(values) if transform == "log1p" else values
    std = float(z.std()) if len(z) else 1.0
    return {"transform": transform, "mean": float(z.mean()) if len(z) else 0.0,
            "std": std if std > 0 else 1.0}
