"""Out-of-fold evidence: the predictions every ensemble step is proven on.

A step (test-time augmentation, post-processing, a decision threshold) reaches the
submission only when it does not lower the competition's metric (`metric.competition`) on
the validation split (a run) or on the members' combined OOF predictions (an ensemble).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def combine_oof(frames: Sequence[pd.DataFrame | None], id_col: str) -> pd.DataFrame | None:
    """The OOF rows of several runs of one recipe (a refit's sources): each id once, with
    its fold when every id is predicted once, else the mean of its predictions (matched by
    id alone: the label is the first run's, however another wrote it)."""
    kept = [f for f in frames if f is not None]
    if not kept:
        return None
    oof = pd.concat(kept, ignore_index=True)
    if not oof[id_col].duplicated().any():  # folds of one cross-validation: each id once
        return oof
    oof = oof.drop(columns=["fold"], errors="ignore")
    numeric = [c for c in oof.columns[1:] if pd.api.types.is_numeric_dtype(oof[c])]
    how = {c: "mean" if c in numeric else "first" for c in oof.columns if c != id_col}
    return oof.groupby(id_col, sort=False).agg(how).reset_index()


def truth(oof: pd.DataFrame, class_names: Sequence[str], target_col: str,
          task: str) -> np.ndarray:
    """The OOF rows' true labels as the metrics take them: class indices, values or
    multi-hot rows (the OOF's one decoding; podium.run.label_col: a class may be named
    like the target column)."""
    from podium import run

    target_col = run.label_col(target_col, class_names)
    if task == "regression":
        return oof[target_col].astype(float).to_numpy(dtype=np.float64)
    if task == "multilabel":
        from pathlib import Path

        from podium.data.labels import multi_hot, split_label_set

        sets = [split_label_set(cell) for cell in oof[target_col]]
        return multi_hot(sets, list(class_names), Path(run.OOF), target_col)[0] > 0.5
    index = {str(name): i for i, name in enumerate(class_names)}
    return oof[target_col].astype(str).map(index).to_numpy()


def oof_scores(oof: pd.DataFrame, class_names: Sequence[str], target_col: str,
               task: str = "multiclass", k: int = 3, test_prior: np.ndarray | None = None
               ) -> dict[str, float]:
    """Every validation metric of the task, computed once over all OOF predictions; with a
    `test_prior`, each row of class c weighs test_prior[c] / (the OOF's share of c)."""
    import torch

    from podium.model.metrics import task_metrics

    probs = torch.tensor(oof[list(class_names)].to_numpy(dtype=np.float32))
    target = torch.tensor(truth(oof, class_names, target_col, task))  # a copy: pandas' arrays
    # may be read-only
    if task == "regression":
        target, probs = target.float(), probs[:, 0]
    elif task == "multilabel":
        target = target.long()
    weights = None
    if test_prior is not None and task not in ("multilabel", "regression"):
        from podium.prior import class_weights

        weights = class_weights(test_prior, np.bincount(target.numpy(),
                                                        minlength=len(class_names)))
    metrics = task_metrics(task, len(class_names), k, weights).clone(prefix="oof/")
    return {key: float(v) for key, v in metrics(probs, target).items()}

def better(after: float, before: float, metric: str, strict: bool = False) -> bool:
    """`after` is no worse than `before` for `metric` (min for losses and errors); with
    `strict`, better by more than a float tie."""
    from podium.model.metrics import infer_mode

    gain = (before - after) if infer_mode(metric) == "min" else (after - before)
    return gain > 1e-12 if strict else gain >= 0


def confusion(y: np.ndarray, pred: np.ndarray, n_classes: int,
              weights: np.ndarray | None = None) -> np.ndarray:
    """Rows: true class, columns: predicted; each row counted once, or with its weight."""
    return np.bincount(y * n_classes + pred, weights=weights,
                       minlength=n_classes**2).reshape(n_classes, -1)


def label_score(metric: str, y: np.ndarray, pred: np.ndarray, n_classes: int,
                class_weights: np.ndarray | None = None) -> float:
    """A label metric (podium.model.metrics.LABEL_METRICS) from the confusion matrix: fast
    enough to search with, equal to scikit-learn's (zero_division=0; `class_weights`: each
    row weighs its class's weight, scikit-learn's `sample_weight`)."""
    from podium.model.metrics import confusion_score

    weights = None if class_weights is None else np.asarray(class_weights)[y]
    present = np.bincount(y, minlength=n_classes) + np.bincount(pred, minlength=n_classes) > 0
    return confusion_score(metric, confusion(y, pred, n_classes, weights), present)


def bootstrap_se(score, y: np.ndarray, decisions: np.ndarray, rounds: int = 200,
                 seed: int = 0) -> float:
    """The standard error of `score(y, decisions)` over `rounds` bootstrap resamples of the
    rows: how far another split of the same size could move the number (a validation
    split of a hundred rows moves macro-F1 by several points)."""
    rng = np.random.default_rng(seed)
    n = len(y)
    values = []
    for _ in range(rounds):
        rows = rng.integers(0, n, n)
        values.append(score(y[rows], decisions[rows]))
    return float(np.std(values, ddof=1))


def resamples(n: int, n_classes: int) -> int:
    """Bootstrap rounds for `n` rows of `n_classes`: 200, fewer where each costs much (at
    most about 2e7 cells in all, at least 20): an SE from 50 rounds is within ~10%."""
    return int(np.clip(2e7 / (n * max(n_classes, 1)), 20, 200))


def paired_se(scoring, y: np.ndarray, before: np.ndarray, after: np.ndarray,
              seed: int = 0) -> float:
    """The bootstrap standard error of score(after) - score(before) on the same resampled
    rows (fewer resamples where each costs much)."""
    n = len(y)
    rounds = resamples(n, scoring.n_classes)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(rounds):
        pick = rng.integers(0, n, n)
        try:
            diffs.append(scoring(y[pick], after[pick]) - scoring(y[pick], before[pick]))
        except ValueError:  # a resample without both classes (AUROC of a tiny split)
            continue
    return float(np.std(diffs, ddof=1)) if len(diffs) > 1 else float("inf")
