"""The parts the chain of learned steps is cross-fitted on (podium.submission.steps).

A step learned on the OOF rows and scored on the same rows looks better than it is: the
chain is therefore fitted on k-1 parts of the rows and predicts the k-th, for every part.
The parts are the OOF's own folds (a `fold` column with at least two folds: a
cross-validation), else a seeded stratified k-fold of the rows (k = 5, fewer for tiny data;
iterative stratification for multi-label rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

K = 5         # parts of a seeded k-fold when the OOF has no folds of its own
SEED = 0      # its seed: the same rows give the same parts in every run
MIN_ROWS = 4  # fewer rows cannot be cross-fitted (each part needs rows to fit on)


@dataclass
class Parts:
    """The held-out row indices of each part, and how they were made (for the report)."""

    held_out: list[np.ndarray]
    how: str


def make_parts(oof: pd.DataFrame, y: np.ndarray, k: int = K, seed: int = SEED) -> Parts:
    """The OOF's folds when it has a `fold` column with >= 2 folds (every row in one),
    else a seeded stratified k-fold of the rows (k = 5, at most the rarest class's count;
    plain shuffled k-fold when a class has one row); no parts for fewer than 4 rows."""
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(y)
    if "fold" in oof.columns and oof["fold"].notna().all():
        folds = oof["fold"].to_numpy()
        values = pd.unique(folds)
        if len(values) >= 2:
            return Parts([np.flatnonzero(folds == v) for v in values],
                         f"the OOF's {len(values)} folds")
    if n < MIN_ROWS:
        return Parts([], f"{n} rows: too few to cross-fit")
    index = np.arange(n)
    if y.ndim == 2:  # multi-label: iterative stratification
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

        k = min(k, n // 2)
        splits = MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        return Parts([held for _, held in splits.split(index, y.astype(int))],
                     f"a seeded stratified {k}-fold of the rows")
    counts = np.bincount(y)
    rarest = int(counts[counts > 0].min())
    if rarest >= 2:
        k = min(k, rarest)
        splits = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(index, y)
        return Parts([held for _, held in splits], f"a seeded stratified {k}-fold of the rows")
    k = min(k, n // 2)
    splits = KFold(n_splits=k, shuffle=True, random_state=seed).split(index)
    return Parts([held for _, held in splits], f"a seeded {k}-fold of the rows")


