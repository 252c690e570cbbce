"""The field's gradient-boosting libraries behind one small interface: LightGBM, CatBoost,
XGBoost and scikit-learn's HistGradientBoosting (`make gbdt gbdt=<name>`, conf/gbdt/).

Each `Booster` fits one fold: on its training rows, stopped early on the loss of an inner
split of them (`fit(x, y, w, x_val, y_val, w_val)`), predicts (N, C) probabilities (a
regression: one column), gives each feature's share of the model's importance, and saves
and loads itself in the library's own file format (LightGBM's text model, CatBoost's .cbm,
XGBoost's .ubj: read without unpickling anything). scikit-learn saves only by pickle: an
`hgb` model is not saved (`SUFFIX` None).

Features arrive as one float64 matrix (podium.model.gbdt.feature_matrix): numbers with NaN
for a missing cell, then category codes (NaN: missing or unseen) marked by `categorical`;
each library takes them natively (LightGBM `categorical_feature`, CatBoost `cat_features`
as integer codes with -1 for missing, XGBoost feature type `c` with `enable_categorical`,
HistGradientBoosting `categorical_features`, a column of more than 255 levels as codes).
Feature names are positions (`f0`, `f1`, ...): a column name never trips a library's rules.

`seconds` caps a fit's time (make stack's deadline, each fold its share): LightGBM, CatBoost
and XGBoost stop at the cap through their own callbacks and keep their best round so far on
the inner split, so a fold cut short still predicts; scikit-learn's trees take no cap.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from podium.errors import PodiumError

MAX_BINS = 255  # HistGradientBoosting's bins per feature: a categorical column's level limit


class Booster:
    """One fold's model of one library. `params`: the library's own arguments (the booster
    config's `params`); `rounds`: the most boosting rounds; `patience`: rounds without a
    better inner-split loss before it stops (no inner split: all `rounds`); `seconds`: the
    most a fit may take (None: no cap)."""

    name = ""
    LABEL = ""  # as metrics.json and the report name it
    IMPORTANCE = "total gain"  # what its feature importance measures
    SUFFIX: str | None = None  # the model file's suffix; None: not saved
    LIBRARY = ""  # imported when the adapter is made, so a fold's time is its fit's

    def __init__(self, task: str, n_classes: int, params: dict | None = None, seed: int = 0,
                 threads: int = 2, rounds: int = 1000, patience: int = 100,
                 seconds: float | None = None) -> None:
        if task == "multilabel":
            raise PodiumError("make gbdt fits one target: a multilabel table is not supported "
                              "(train a network with make cv)")
        self.task, self.n_classes, self.seed, self.threads = task, n_classes, seed, threads
        self.params, self.rounds, self.patience = dict(params or {}), rounds, patience
        self.seconds = seconds
        self.out_of_time = False  # the cap, not early stopping or `rounds`, ended the fit
        self.model = None
        self.best_rounds = 0  # the rounds the model keeps (early stopping's best)
        importlib.import_module(self.LIBRARY)

    def pinned(self) -> dict:
        """What a refit of this model with fewer rounds must keep (params)."""
        return {}

    def clock(self) -> Callable[[], bool]:
        """Started as a fit begins: true once `seconds` have passed (never without a cap),
        marking `out_of_time`."""
        until = None if self.seconds is None else time.monotonic() + self.seconds

        def up() -> bool:
            self.out_of_time = self.out_of_time or (until is not None
                                                    and time.monotonic() > until)
            return self.out_of_time
        return up

    @property
    def regression(self) -> bool:
        return self.task == "regression"

    def fit(self, x, y, w, x_val, y_val, w_val, categorical: np.ndarray) -> Booster:
        raise NotImplementedError

    def predict(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def raw_importance(self) -> np.ndarray:
        raise NotImplementedError

    def importance(self) -> np.ndarray:
        """Each feature's share of the model's importance (sums to 1; a model of no split:
        zeros)."""
        raw = np.asarray(self.raw_importance(), dtype=np.float64)
        return raw / raw.sum() if raw.sum() > 0 else raw

    def save(self, path: Path) -> None:
        raise PodiumError(f"gbdt={self.name}: its models save only by pickle, which podium "
                          f"does not load: make gbdt MODEL=lightgbm (or catboost, xgboost)")

    def load(self, path: Path, categorical: np.ndarray) -> Booster:
        raise NotImplementedError

    def probabilities(self, probs: np.ndarray, classes=None) -> np.ndarray:
        """(N, C) float32 from what the library predicted: a binary model's P(class 1), or
        per-class columns of `classes` (a class the fold lacks: 0); a regression: (N, 1)."""
        probs = np.asarray(probs, dtype=np.float64)
        if self.regression:
            return probs.reshape(-1, 1).astype(np.float32)
        if probs.ndim == 1:
            probs = np.stack([1 - probs, probs], axis=1)
        if classes is None:
            return probs.astype(np.float32)
        out = np.zeros((len(probs), self.n_classes), dtype=np.float32)
        out[:, np.asarray(classes).astype(int)] = probs
        return out


def names(width: int) -> list[str]:
    return [f"f{i}" for i in range(width)]


class LightGBM(Booster):
    """`lightgbm.train` with the library's defaults: objective binary, multiclass or
    regression (L2); early stopping on that loss over the inner split."""

    name, LABEL, SUFFIX, LIBRARY = "lightgbm", "LightGBM", ".txt", "lightgbm"

    def objective(self) -> dict:
        if self.regression:
            return {"objective": "regression"}
        if self.n_classes == 2:
            return {"objective": "binary"}
        return {"objective": "multiclass", "num_class": self.n_classes}

    def fit(self, x, y, w, x_val, y_val, w_val, categorical):
        import lightgbm as lgb

        cats = np.flatnonzero(categorical).tolist()
        params = {**self.objective(), "num_threads": self.threads, "seed": self.seed,
                  "verbosity": -1, **self.params}
        train = lgb.Dataset(x, y, weight=w, feature_name=names(x.shape[1]),
                            categorical_feature=cats, free_raw_data=False)
        valid, callbacks, history = [], [], {}
        if len(y_val):
            valid = [lgb.Dataset(x_val, y_val, weight=w_val, reference=train)]
            callbacks = [lgb.early_stopping(self.patience, first_metric_only=True,
                                            verbose=False), lgb.record_evaluation(history)]
        if self.seconds is not None:
            up = self.clock()

            def stop_in_time(env) -> None:  # the best round so far on the first metric
                if up():
                    best = env.iteration
                    if env.evaluation_result_list:
                        data, metric, _, higher = env.evaluation_result_list[0]
                        losses = np.asarray(history[data][metric])
                        best = int(np.argmax(losses) if higher else np.argmin(losses))
                    raise lgb.callback.EarlyStopException(best, env.evaluation_result_list)
            stop_in_time.order = 40  # after the history's record (20) and early stopping (30)
            callbacks.append(stop_in_time)
        self.model = lgb.train(params, train, self.rounds, valid_sets=valid,
                               callbacks=callbacks)
        self.best_rounds = self.model.best_iteration or self.model.current_iteration()
        return self

    def predict(self, x):
        return self.probabilities(self.model.predict(x, num_iteration=self.best_rounds))

    def raw_importance(self):
        return self.model.feature_importance("gain", iteration=self.best_rounds)

    def save(self, path):
        self.model.save_model(str(path), num_iteration=self.best_rounds)

    def load(self, path, categorical):
        import lightgbm as lgb

        self.model = lgb.Booster(model_file=str(path))
        self.best_rounds = self.model.current_iteration()
        return self


class CatBoost(Booster):
    """CatBoostClassifier / CatBoostRegressor with the library's defaults (its learning
    rate chosen from the rows and `rounds`); the best round's model kept
    (`use_best_model`)."""

    name, LABEL, SUFFIX, LIBRARY = "catboost", "CatBoost", ".cbm", "catboost"
    IMPORTANCE = "prediction values change"

    def estimator(self, **kwargs):
        from catboost import CatBoostClassifier, CatBoostRegressor

        return (CatBoostRegressor if self.regression else CatBoostClassifier)(**kwargs)

    @staticmethod
    def pool(x, categorical, y=None, w=None):
        """A catboost.Pool: numbers as floats, categories as integer codes (-1: missing)."""
        import pandas as pd
        from catboost import Pool

        frame = pd.DataFrame(x, columns=names(x.shape[1]))
        for i in np.flatnonzero(categorical):
            frame[f"f{i}"] = np.nan_to_num(x[:, i], nan=-1).astype(np.int64)
        return Pool(frame, y, cat_features=np.flatnonzero(categorical).tolist(), weight=w)

    def fit(self, x, y, w, x_val, y_val, w_val, categorical):
        self.categorical = categorical
        stopping = {"early_stopping_rounds": self.patience} if len(y_val) else {}
        self.model = self.estimator(iterations=self.rounds, thread_count=self.threads,
                                    random_seed=self.seed, verbose=False,
                                    allow_writing_files=False, **stopping, **self.params)
        evaluation = self.pool(x_val, categorical, y_val, w_val) if len(y_val) else None
        self.model.fit(self.pool(x, categorical, y, w), eval_set=evaluation,
                       use_best_model=evaluation is not None,
                       callbacks=None if self.seconds is None else [GoOn(self.clock())])
        self.best_rounds = int(self.model.tree_count_)
        return self

    def pinned(self) -> dict:
        """CatBoost chooses its learning rate from the rows and rounds: keep the one used."""
        return {"learning_rate": float(self.model.learning_rate_)}

    def predict(self, x):
        pool = self.pool(x, self.categorical)
        if self.regression:
            return self.probabilities(self.model.predict(pool))
        return self.probabilities(self.model.predict_proba(pool), self.model.classes_)

    def raw_importance(self):
        return self.model.get_feature_importance()

    def save(self, path):
        self.model.save_model(str(path))

    def load(self, path, categorical):
        self.categorical = categorical
        self.model = self.estimator().load_model(str(path))
        self.best_rounds = int(self.model.tree_count_)
        return self


class GoOn:
    """CatBoost's callback: go on while `up()` is false."""

    def __init__(self, up: Callable[[], bool]) -> None:
        self.up = up

    def after_iteration(self, info) -> bool:
        return not self.up()


class XGBoost(Booster):
    """`xgboost.train` with the library's defaults (hist trees): objective binary:logistic,
    multi:softprob or reg:squarederror; early stopping on that loss over the inner split,
    the model cut at its best round."""

    name, LABEL, SUFFIX, LIBRARY = "xgboost", "XGBoost", ".ubj", "xgboost"

    def objective(self) -> dict:
        if self.regression:
            return {"objective": "reg:squarederror"}
        if self.n_classes == 2:
            return {"objective": "binary:logistic"}
        return {"objective": "multi:softprob", "num_class": self.n_classes}

    def matrix(self, x, categorical, y=None, w=None):
        import xgboost as xgb

        return xgb.DMatrix(x, y, weight=w, feature_names=names(x.shape[1]),
                           feature_types=["c" if c else "q" for c in categorical],
                           enable_categorical=True, nthread=self.threads)

    def fit(self, x, y, w, x_val, y_val, w_val, categorical):
        import xgboost as xgb

        self.categorical = categorical
        params = {**self.objective(), "nthread": self.threads, "seed": self.seed,
                  "verbosity": 0, **self.params}
        evals = [(self.matrix(x_val, categorical, y_val, w_val), "inner")] if len(y_val) else []
        stop = []
        if self.seconds is not None:
            up = self.clock()

            class StopInTime(xgb.callback.TrainingCallback):
                def after_iteration(self, model, epoch, evals_log) -> bool:
                    return up()
            stop = [StopInTime()]
        model = xgb.train(params, self.matrix(x, categorical, y, w), self.rounds, evals=evals,
                          early_stopping_rounds=self.patience if evals else None,
                          verbose_eval=False, callbacks=stop)
        self.best_rounds = model.best_iteration + 1 if evals else model.num_boosted_rounds()
        self.model = model[:self.best_rounds]
        return self

    def predict(self, x):
        return self.probabilities(self.model.predict(self.matrix(x, self.categorical)))

    def raw_importance(self):
        gain = self.model.get_score(importance_type="total_gain")
        return [gain.get(f, 0.0) for f in names(len(self.categorical))]

    def save(self, path):
        self.model.save_model(str(path))

    def load(self, path, categorical):
        import xgboost as xgb

        self.categorical = categorical
        self.model = xgb.Booster(model_file=str(path))
        self.model.set_param({"nthread": self.threads})
        self.best_rounds = self.model.num_boosted_rounds()
        return self


class HistGradientBoosting(Booster):
    """scikit-learn's HistGradientBoostingClassifier / Regressor (`max_iter` = `rounds`,
    `n_iter_no_change` = `patience`), early-stopped on the inner split (`X_val`); a
    categorical column of more than 255 levels enters as its codes (`ordinal`). Importance:
    permutation importance on the inner split (the trees keep none of their own)."""

    name, LABEL, LIBRARY = "hgb", "HistGradientBoosting", "sklearn.ensemble"
    IMPORTANCE = "permutation, inner split"

    def fit(self, x, y, w, x_val, y_val, w_val, categorical):
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        # a wide column's codes reach past the bins: read as numbers, not as categories
        codes = np.nan_to_num(np.vstack([x, x_val]), nan=0)
        self.ordinal = categorical & (codes.max(axis=0, initial=0) >= MAX_BINS)
        mask = categorical & ~self.ordinal
        kind = HistGradientBoostingRegressor if self.regression else \
            HistGradientBoostingClassifier
        self.model = kind(max_iter=self.rounds, early_stopping=bool(len(y_val)),
                          n_iter_no_change=self.patience, random_state=self.seed,
                          categorical_features=mask if mask.any() else None, **self.params)
        validation = {"X_val": x_val, "y_val": y_val, "sample_weight_val": w_val} \
            if len(y_val) else {}
        from threadpoolctl import threadpool_limits

        with threadpool_limits(self.threads):
            self.model.fit(x, y, sample_weight=w, **validation)
        self.best_rounds = int(self.model.n_iter_)
        self.inner = (x_val, y_val, w_val) if len(y_val) else (x, y, w)
        return self

    def predict(self, x):
        if self.regression:
            return self.probabilities(self.model.predict(x))
        return self.probabilities(self.model.predict_proba(x), self.model.classes_)

    def raw_importance(self):
        from sklearn.inspection import permutation_importance

        x, y, w = self.inner
        found = permutation_importance(self.model, x, y, sample_weight=w, n_repeats=3,
                                       random_state=self.seed, n_jobs=1)
        return np.clip(found.importances_mean, 0, None)


BOOSTERS = {b.name: b for b in (LightGBM, CatBoost, XGBoost, HistGradientBoosting)}


def booster(name: str, task: str, n_classes: int, **kwargs) -> Booster:
    """The adapter of `name` (conf/gbdt/<name>.yaml's `name`)."""
    if name not in BOOSTERS:
        raise PodiumError(f"gbdt.name={name}: give gbdt={' | '.join(BOOSTERS)}")
    return BOOSTERS[name](task, n_classes, **kwargs)
