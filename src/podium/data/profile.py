"""What a table says before any training (`make eda` on a table): each column's kind, missing
share and cardinality, the target's distribution, and the columns that look like ids or leak
the target.

The kinds are the ones a run gives its columns (podium.data.columns.column_kinds), so the
profile says what the network will see and what it will drop.

A leak is a column from which the target can be read off: each column alone is scored
out-of-fold (on make cv's folds) by a tiny model, and a near-perfect score (`LEAK_SCORE`)
is flagged. A column of numbers gets a decision tree (at most `LEAF_NODES` leaves of at least
`MIN_LEAF` rows: enough to follow a target that is a function of the number, too coarse to
memorise rows), any other column a direct mapping (each value predicts the mean target or
class shares of its training rows; a value never seen in training predicts the training
prior): a column whose values each belong to one target value scores perfectly, a column
unique to every row (an id) does not. The score is metric-free so that one threshold serves
every table: AUROC (binary: of the positive class; multiclass: one-vs-rest, macro) or R2
(regression). The id column is scored too (ids numbered in the target's order leak).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from podium.data.columns import as_numbers, column_kinds, is_numeric, missing_mask

LEAK_SCORE = 0.99    # a single column's OOF AUROC / R2 at or above this: a leak or the answer
LEAF_NODES = 64      # the single-column tree's leaves at most
MIN_LEAF = 10        # and rows per leaf at least: it follows a function, not single rows
SKEWED = 1.0         # a positive target skewed more than this: suggest data.target_transform=log1p
KIND_NAMES = {"numeric": "numeric", "categorical": "categorical", "text": "text-like",
              "id": "id-like", "constant": "constant"}


@dataclass
class ColumnProfile:
    """One column: its kind as a run reads it, how much is missing, how many values."""

    name: str
    kind: str            # numeric | categorical | text-like | id-like | constant | id column
    missing: float       # share of rows with no value
    distinct: int        # distinct present values
    single_score: float | None = None  # OOF AUROC / R2 of this column alone
    leak: bool = False


def column_profiles(frame: pd.DataFrame, features: Sequence[str], path: Path,
                    categorical: Sequence[str] | None = None) -> list[ColumnProfile]:
    """Every feature column's kind (a run's), missing share and cardinality."""
    kinds = column_kinds(frame, features, path, categorical)
    kind_of = {c: KIND_NAMES[k] for k, columns in kinds.items() for c in columns}
    profiles = []
    for column in features:
        values = frame[column]
        missing = missing_mask(values)
        profiles.append(ColumnProfile(column, kind_of[column], float(missing.mean()),
                                      int(values[~missing].str.strip().nunique())))
    return profiles


def target_profile(labels: np.ndarray, task: str, class_names: Sequence) -> dict:
    """Regression: the target's moments and skew (scipy.stats.skew, the Fisher-Pearson
    coefficient), and whether log1p would suit it (every value positive and skew above
    `SKEWED`: errors on the large values would swamp the rest); classification: each
    class's count."""
    from scipy.stats import skew

    if task != "regression":
        counts = np.bincount(labels, minlength=len(class_names))
        return {"counts": {str(n): int(c) for n, c in zip(class_names, counts, strict=True)}}
    y = labels.astype(float)
    value = float(skew(y))
    suggest = bool(y.min() > 0 and value > SKEWED)
    return {"mean": float(y.mean()), "std": float(y.std()), "min": float(y.min()),
            "median": float(np.median(y)), "max": float(y.max()), "skew": value,
            "skew_log1p": float(skew(np.log1p(y))) if y.min() > -1 else None,
            "suggest_log1p": suggest}


def separability(y: np.ndarray, predictions: np.ndarray, task: str) -> float:
    """AUROC (binary: class 1; multiclass: one-vs-rest macro) or R2 of OOF predictions."""
    from sklearn.metrics import r2_score, roc_auc_score

    if task == "regression":
        return float(r2_score(y, predictions[:, 0]))
    if predictions.shape[1] == 2:
        return float(roc_auc_score(y, predictions[:, 1]))
    return float(roc_auc_score(y, predictions, multi_class="ovr", average="macro",
                               labels=np.arange(predictions.shape[1])))


def mapping_predictions(values: pd.Series, y: np.ndarray, train: np.ndarray, rows: np.ndarray,
                        task: str, n_classes: int) -> np.ndarray:
    """Each value's mean target (or class shares) over the training rows; a value never
    seen there (or missing) gets the training rows' overall mean (or prior)."""
    keys = values.str.strip().where(~missing_mask(values), None)
    targets = (pd.DataFrame({"y": y[train]}) if task == "regression" else
               pd.get_dummies(pd.Categorical(y[train], categories=range(n_classes)))
               ).astype(float)
    targets.index = keys.iloc[train].to_numpy()
    table = targets[targets.index.notna()].groupby(level=0).mean()
    predicted = table.reindex(keys.iloc[rows].to_numpy())
    return predicted.fillna(targets.mean()).to_numpy(dtype=float)


def tree_predictions(x: np.ndarray, y: np.ndarray, train: np.ndarray, rows: np.ndarray,
                     task: str, n_classes: int, seed: int) -> np.ndarray:
    """A small decision tree on one column of numbers (missing values: the tree's own
    split side), fitted on the training rows."""
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    if task == "regression":
        tree = DecisionTreeRegressor(max_leaf_nodes=LEAF_NODES, min_samples_leaf=MIN_LEAF,
                                     random_state=seed)
        return tree.fit(x[train, None], y[train]).predict(x[rows, None])[:, None]
    tree = DecisionTreeClassifier(max_leaf_nodes=LEAF_NODES, min_samples_leaf=MIN_LEAF,
                                  random_state=seed)
    tree.fit(x[train, None], y[train])
    out = np.zeros((len(rows), n_classes))
    out[:, tree.classes_.astype(int)] = tree.predict_proba(x[rows, None])
    return out


def single_column_score(values: pd.Series, y: np.ndarray, folds: Sequence[tuple], task: str,
                        n_classes: int, seed: int) -> float:
    """The column alone, scored out-of-fold (see the module's docstring)."""
    width = 1 if task == "regression" else n_classes
    oof = np.zeros((len(y), width))
    numbers = as_numbers(values) if is_numeric(values) else None
    for train, rows in folds:
        oof[rows] = (tree_predictions(numbers, y, train, rows, task, n_classes, seed)
                     if numbers is not None else
                     mapping_predictions(values, y, train, rows, task, n_classes))
    return separability(y, oof, task)


def flag_leaks(profiles: list[ColumnProfile], frame: pd.DataFrame, y: np.ndarray,
               folds: Sequence[tuple], task: str, n_classes: int, seed: int) -> None:
    """Fill each profile's single-column score and leak flag (a constant column: none)."""
    for profile in profiles:
        if profile.distinct < 2:
            continue
        profile.single_score = single_column_score(frame[profile.name], y, folds, task,
                                                   n_classes, seed)
        profile.leak = profile.single_score >= LEAK_SCORE


def as_dicts(profiles: list[ColumnProfile]) -> list[dict]:
    return [asdict(p) for p in profiles]
