"""scikit-learn's HistGradientBoosting on a table: the model every tabular entry is measured
against, trained on the same folds a network's cross-validation uses.

Features as the trees want them: numeric columns as numbers with their missing values left
missing (the trees learn which side they go), the other columns as native categories
(codes of the categories seen in the fold's training rows; an empty cell or a category the
fold never saw is missing), and a column with more levels than the trees have bins as its
codes read as numbers (HistGradientBoosting refuses such a categorical column).
The folds are `podium.data.splits.split_indices` with the data config's `n_folds`, `seed`
and groups: fold f validates exactly the ids `make cv`'s fold f validates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from podium.errors import PodiumError

MAX_BINS = 255  # HistGradientBoosting's bins per feature: a categorical column's level limit


@dataclass
class Columns:
    """How each feature column enters the trees."""

    numeric: list[str]
    categorical: list[str]

    @property
    def names(self) -> list[str]:
        return [*self.numeric, *self.categorical]


@dataclass
class CrossValidation:
    """Every training row's out-of-fold prediction, the test set's prediction averaged over
    the folds' models, and what each fold's model did."""

    oof: np.ndarray                # (N, C) float32, training-row order
    fold: np.ndarray               # (N,) the fold that validated each row
    test: np.ndarray               # (T, C) float32, sample-submission order
    iterations: list[int] = field(default_factory=list)  # boosting rounds kept per fold
    ordinal: list[str] = field(default_factory=list)     # categorical columns read as codes


def column_kinds(frame: pd.DataFrame, features: Sequence[str],
                 categorical_cols: Sequence[str] | None, path) -> Columns:
    """The tabular datamodule's reading of the columns (podium.data.columns): numeric
    columns are numbers, categorical ones (and `data.categorical_cols`) categories; text-,
    id-like and constant columns are left out, as the network leaves them out."""
    from podium.data.columns import column_kinds as kinds_of

    kinds = kinds_of(frame, features, path, categorical_cols)
    return Columns(kinds["numeric"], kinds["categorical"])


def fit_categories(frame: pd.DataFrame, columns: Columns) -> dict[str, list[str]]:
    """Each categorical column's sorted values in the rows the trees fit on (missing cells:
    empty or a missing-value token, left missing)."""
    from podium.data.columns import missing_mask

    return {c: sorted(set(frame[c][~missing_mask(frame[c])].astype(str)))
            for c in columns.categorical}


def feature_matrix(frame: pd.DataFrame, columns: Columns,
                   categories: dict[str, list[str]]) -> np.ndarray:
    """float64 (N, F): numbers (missing: NaN), then category codes (unseen or empty: NaN)."""
    from podium.data.columns import as_numbers

    blocks = [as_numbers(frame[c]) for c in columns.numeric]
    for column in columns.categorical:
        codes = pd.Categorical(frame[column].astype(str), categories=categories[column]).codes
        blocks.append(np.where(codes < 0, np.nan, codes).astype(np.float64))
    if not blocks:
        raise PodiumError("the table has no feature column left for the trees: check "
                          "data.feature_cols / data.drop_cols")
    return np.stack(blocks, axis=1)


def make_estimator(task: str, params: dict, categorical: np.ndarray, seed: int):
    """HistGradientBoostingClassifier (class probabilities) or Regressor (the prediction),
    with `params` (conf/gbdt.yaml's `gbdt`) and the categorical columns marked."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    if task == "multilabel":
        raise PodiumError("make gbdt fits one target: a multilabel table is not supported "
                          "(train a network with make cv)")
    kind = HistGradientBoostingRegressor if task == "regression" else \
        HistGradientBoostingClassifier
    mask = categorical if categorical.any() else None
    return kind(**params, categorical_features=mask, random_state=seed)


def fold_predictions(model, x: np.ndarray, task: str, n_classes: int) -> np.ndarray:
    """(N, C) float32: every class's probability (classes the fold lacks: 0), or the
    regression prediction as one column."""
    if task == "regression":
        return model.predict(x).astype(np.float32)[:, None]
    probs = np.zeros((len(x), n_classes), dtype=np.float32)
    probs[:, model.classes_.astype(int)] = model.predict_proba(x)
    return probs


def cross_validate(train: pd.DataFrame, test: pd.DataFrame, labels: np.ndarray,
                   folds: Sequence[tuple[np.ndarray, np.ndarray]], columns: Columns, task: str,
                   n_classes: int, params: dict, seed: int,
                   target_transform: str = "none") -> CrossValidation:
    """One model per fold, fitted on the fold's training rows (categories too) and
    predicting its validation rows and the test table; the test predictions are averaged
    over the folds (as `make cv` averages its folds' models). `target_transform=log1p`
    (regression, data.target_transform): fitted on log1p(y), each fold's predictions
    mapped back to y's units before anything is averaged, as the network's are."""
    log1p = task == "regression" and target_transform == "log1p"
    fitted_on = np.log1p(labels) if log1p else labels

    def predict(model, x: np.ndarray) -> np.ndarray:
        values = fold_predictions(model, x, task, n_classes)
        return np.expm1(values) if log1p else values
    oof = np.zeros((len(train), n_classes), dtype=np.float32)
    fold_of = np.full(len(train), -1)
    test_sum = np.zeros((len(test), n_classes), dtype=np.float64)
    iterations, ordinal = [], set()
    for fold, (train_idx, val_idx) in enumerate(folds):
        categories = fit_categories(train.iloc[train_idx], columns)
        wide = {c for c, levels in categories.items() if len(levels) > MAX_BINS}
        ordinal |= wide
        categorical = np.array([c in columns.categorical and c not in wide
                                for c in columns.names])
        x = feature_matrix(train, columns, categories)
        model = make_estimator(task, params, categorical, seed)
        model.fit(x[train_idx], fitted_on[train_idx])
        oof[val_idx] = predict(model, x[val_idx])
        fold_of[val_idx] = fold
        test_sum += predict(model, feature_matrix(test, columns, categories))
        iterations.append(int(model.n_iter_))
    return CrossValidation(oof, fold_of, (test_sum / len(folds)).astype(np.float32),
                           iterations, sorted(ordinal))
