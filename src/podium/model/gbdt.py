"""Gradient-boosted trees on a table (LightGBM, CatBoost, XGBoost or scikit-learn's
HistGradientBoosting: podium.model.boosters), cross-validated on the folds a network's
cross-validation uses, and the fold models saved and read back for `make predict`.

Features as the trees want them: numeric columns as numbers with their missing values left
missing (the trees learn which side they go), the other columns as native categories
(codes of the categories seen in the fold's training rows; an empty cell or a category the
fold never saw is missing). The folds are `podium.data.splits.nested_split` with the data
config's `n_folds`, `val_fraction`, `seed` and groups: fold f predicts exactly the ids `make
cv`'s fold f holds out, and stops early on the same inner split of its training rows, so no
OOF row chooses anything for the model that predicts it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from podium.errors import PodiumError

if TYPE_CHECKING:
    from podium.model.boosters import Booster

MODELS = "models"  # a booster folder's fold models and features.json
FEATURES = "features.json"


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
    models: list[Booster] = field(default_factory=list)  # one per fold
    categories: list[dict[str, list[str]]] = field(default_factory=list)  # per fold
    importance: np.ndarray | None = None  # (features, folds): each fold's shares
    seconds: list[float] = field(default_factory=list)   # wall time per fold


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


def cross_validate(train: pd.DataFrame, test: pd.DataFrame, labels: np.ndarray,
                   folds: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                   columns: Columns, task: str, n_classes: int, gbdt: dict, seed: int,
                   target_transform: str = "none", class_weight: np.ndarray | None = None,
                   on_fold: Callable[[int, CrossValidation], None] | None = None,
                   deadline: float | None = None) -> CrossValidation:
    """One model per fold: fitted on the fold's training rows less its inner split
    (`folds`: (train, inner, held-out) row indices, podium.data.splits.Split), stopped early
    on the inner split, predicting its held-out rows and the test table (its categories:
    those of the fold's training rows); the test predictions are averaged over the folds (as
    `make cv` averages its folds' models). `gbdt`: the booster config (`name`, `rounds`,
    `early_stopping`, `params`, `refit_inner`), fitted with the process's threads
    (podium.threads). `refit_inner`: the early-stopped model is then refitted on the fold's
    training and inner rows together, for its best rounds scaled by their rows (CatBoost
    keeping the learning rate it chose), the held-out rows still unseen.
    `class_weight`: each row weighs its class's (the loss's class factor, as the network's
    loss weighs it). `target_transform=log1p`
    (regression, data.target_transform): fitted on log1p(y), each fold's predictions mapped
    back to y's units before anything is averaged, as the network's are. `on_fold(fold,
    cv)` is called as each fold finishes (its progress line). `deadline` (unix seconds, as
    make stack gives it): each fold's fit is capped at its share of the time left, less a
    quarter for predicting, and keeps its best round so far (podium.model.boosters)."""
    import time

    from podium.model.boosters import booster
    from podium.threads import current

    log1p = task == "regression" and target_transform == "log1p"
    fitted_on = np.log1p(labels) if log1p else labels
    weights = None if class_weight is None else np.asarray(class_weight)[labels]
    pick = lambda rows: None if weights is None else weights[rows]  # noqa: E731
    cv = CrossValidation(np.zeros((len(train), n_classes), dtype=np.float32),
                         np.full(len(train), -1), np.zeros((len(test), n_classes)))
    categorical = np.array([c in columns.categorical for c in columns.names])
    ordinal = set()

    def fitted(x, rows, inner, rounds: int, seconds: float | None, pinned: dict):
        """A booster fitted on `x[rows]`, stopped early on `x[inner]` (none: all `rounds`)."""
        model = booster(gbdt["name"], task, n_classes, seed=seed, threads=current(),
                        params={**(gbdt.get("params") or {}), **pinned}, rounds=rounds,
                        patience=int(gbdt["early_stopping"]), seconds=seconds)
        return model.fit(x[rows], fitted_on[rows], pick(rows), x[inner], fitted_on[inner],
                         pick(inner), categorical)

    for fold, (fit_rows, inner, held_out) in enumerate(folds):
        share = None if deadline is None else max(
            0.75 * (deadline - time.time()) / (len(folds) - fold), 1.0)
        started = time.perf_counter()
        categories = fit_categories(train.iloc[np.concatenate([fit_rows, inner])], columns)
        x = feature_matrix(train, columns, categories)
        model = fitted(x, fit_rows, inner, int(gbdt["rounds"]), share, {})
        if gbdt.get("refit_inner") and len(inner):  # the rounds chosen, on 25 % more rows
            rows = np.concatenate([fit_rows, inner])
            left = None if share is None else max(share - time.perf_counter() + started, 1.0)
            rounds = max(1, round(model.best_rounds * len(rows) / len(fit_rows)))
            cut = model.out_of_time  # then the rounds it passes on were cut too
            model = fitted(x, rows, inner[:0], rounds, left, model.pinned())
            model.out_of_time = model.out_of_time or cut
        cv.oof[held_out] = back(model.predict(x[held_out]), log1p)
        cv.fold[held_out] = fold
        cv.test += back(model.predict(feature_matrix(test, columns, categories)), log1p)
        ordinal |= {c for c, wide in zip(columns.names, getattr(model, "ordinal", []),
                                         strict=False) if wide}
        shares = model.importance()[:, None]
        cv.importance = shares if cv.importance is None else np.hstack([cv.importance, shares])
        cv.models.append(model)
        cv.categories.append(categories)
        cv.iterations.append(model.best_rounds)
        cv.seconds.append(time.perf_counter() - started)
        if on_fold is not None:
            on_fold(fold, cv)
    cv.test = (cv.test / len(folds)).astype(np.float32)
    cv.ordinal = sorted(ordinal)
    return cv


def back(values: np.ndarray, log1p: bool) -> np.ndarray:
    """A fold's predictions in the target's units (log1p-fitted: expm1)."""
    return np.expm1(values) if log1p else values


def importance_frame(cv: CrossValidation, columns: Columns) -> pd.DataFrame:
    """feature, each fold's share of its model's importance, their mean; most important
    first."""
    frame = pd.DataFrame(cv.importance, columns=[f"fold{k}" for k in range(len(cv.models))])
    frame.insert(0, "feature", columns.names)
    frame["mean"] = frame.iloc[:, 1:].mean(axis=1)
    return frame.sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)


def plot_importance(importance: pd.DataFrame, path: Path, title: str, top: int = 30) -> None:
    """A bar per feature (the `top` most important): the mean share over the folds, the
    folds' spread as an error bar (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = importance.head(top).iloc[::-1]
    folds = shown.filter(regex=r"^fold\d+$")
    fig, ax = plt.subplots(figsize=(7, 1.5 + 0.28 * len(shown)))
    ax.barh(shown.feature.astype(str), shown["mean"], xerr=folds.std(axis=1, ddof=0),
            color="#4c72b0")
    ax.set_xlabel("share of the model's importance")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_models(folder: Path, cv: CrossValidation, columns: Columns, name: str, task: str,
                class_names: Sequence, target_transform: str, made: dict) -> Path:
    """Each fold's model in its library's own format (`models/fold<k>.<suffix>`) and what
    its features need (`models/features.json`: how the table's columns were made, `made`:
    TabularDataModule.made_frame_features; the columns, each fold's categories), so
    `predict_saved` rebuilds the test predictions without the training table."""
    from podium.io import write_json

    out = Path(folder) / MODELS
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for k, model in enumerate(cv.models):
        files.append(f"fold{k}{model.SUFFIX}")
        model.save(out / files[-1])
    return write_json(out / FEATURES, {
        "booster": name, "task": task, "class_names": [str(c) for c in class_names],
        "target_transform": target_transform, "made": made, "numeric": columns.numeric,
        "categorical": columns.categorical,
        "folds": [{"model": f, "categories": c} for f, c in zip(files, cv.categories,
                                                                strict=True)]})


def saved_features(folder: Path) -> dict:
    """A booster folder's models/features.json (PodiumError when it has none)."""
    import json

    path = Path(folder) / MODELS / FEATURES
    if not path.is_file():
        raise PodiumError(f"{folder} holds no saved trees ({MODELS}/{FEATURES}): a "
                          f"gbdt=hgb folder keeps none (scikit-learn saves only by pickle, "
                          f"which podium does not load): make gbdt MODEL=lightgbm (or "
                          f"catboost, xgboost) saves its models")
    return json.loads(path.read_text())


def predict_saved(folder: Path, frame: pd.DataFrame) -> np.ndarray:
    """(T, C) float32: the folder's fold models, read from their own files, predict `frame`
    (its feature columns), mapped back from log1p per fold and averaged, as `cross_validate`
    averages the test predictions."""
    from podium.model.boosters import booster
    from podium.threads import current

    saved = saved_features(folder)
    columns = Columns(saved["numeric"], saved["categorical"])
    categorical = np.array([c in columns.categorical for c in columns.names])
    log1p = saved["task"] == "regression" and saved["target_transform"] == "log1p"
    total = np.zeros((len(frame), len(saved["class_names"])))
    for fold in saved["folds"]:
        model = booster(saved["booster"], saved["task"], len(saved["class_names"]),
                        threads=current()).load(Path(folder) / MODELS / fold["model"],
                                              categorical)
        total += back(model.predict(feature_matrix(frame, columns, fold["categories"])), log1p)
    return (total / len(saved["folds"])).astype(np.float32)
