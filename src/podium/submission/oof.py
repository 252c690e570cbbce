"""Out-of-fold evidence: the predictions every ensemble step is proven on.

A step (test-time augmentation, post-processing, a decision threshold) reaches the
submission only when it does not lower the competition's metric (`metric.competition`) on
the validation split (a run) or on the members' combined OOF predictions (an ensemble).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from podium import run


def combine_oof(frames: Sequence[pd.DataFrame | None], id_col: str, target_col: str,
                weights: Sequence[float] | None = None) -> pd.DataFrame | None:
    """The members' OOF rows (with their fold when every id is predicted once); an id
    predicted by several members gets their mean, weighted by `weights` (one per frame)
    when given (an id whose members all weigh 0 is left out)."""
    weights = list(weights) if weights is not None else None
    kept = [(f, 1.0 if weights is None else weights[i]) for i, f in enumerate(frames)
            if f is not None]
    if not kept:
        return None
    oof = pd.concat([f for f, _ in kept], ignore_index=True)
    if not oof[id_col].duplicated().any():  # folds of one cross-validation: each id once
        return oof
    oof = oof.drop(columns=["fold"], errors="ignore")
    keys = [id_col, run.label_in(oof, target_col)]
    if weights is None:
        return oof.groupby(keys, sort=False, dropna=False).mean().reset_index()
    w = np.concatenate([np.full(len(f), weight, dtype=np.float64) for f, weight in kept])
    values = oof.drop(columns=keys).mul(w, axis=0).assign(_weight=w)
    sums = pd.concat([oof[keys], values], axis=1).groupby(keys, sort=False, dropna=False).sum()
    total = sums.pop("_weight")
    return sums[total > 0].div(total[total > 0], axis=0).reset_index()

def oof_scores(oof: pd.DataFrame, class_names: Sequence[str], target_col: str,
               task: str = "multiclass", k: int = 3, test_prior: np.ndarray | None = None
               ) -> dict[str, float]:
    """Every validation metric of the task, computed once over all OOF predictions; with a
    `test_prior`, each row of class c weighs test_prior[c] / (the OOF's share of c)."""
    import torch

    from podium.model.metrics import task_metrics

    target_col = run.label_col(target_col, class_names)  # a class may be named like it
    probs = torch.tensor(oof[list(class_names)].to_numpy(dtype=np.float32))
    if task == "multilabel":  # the label column holds space-separated sets
        from pathlib import Path

        from podium.data.labels import multi_hot, split_label_set

        sets = [split_label_set(cell) for cell in oof[target_col]]
        target = torch.from_numpy(multi_hot(sets, [str(c) for c in class_names],
                                            Path(run.OOF), target_col)[0])
    elif task == "regression":
        target = torch.tensor(oof[target_col].astype(float).to_numpy(dtype=np.float32))
        probs = probs[:, 0]
    else:
        index = {str(name): i for i, name in enumerate(class_names)}
        target = torch.tensor(oof[target_col].astype(str).map(index).to_numpy())
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


def decision_score(metric: str, n_classes: int, class_weights: np.ndarray | None = None,
                   task: str = "multiclass", k: int = 3) -> tuple[bool, Callable]:
    """(`on_labels`, score(truth, decisions)): a label metric scores argmax labels from a
    (weighted) confusion matrix, any other classification metric scores probabilities
    (podium.model.metrics, each row weighted by its class's weight)."""
    from podium.model.metrics import LABEL_METRICS

    if metric in LABEL_METRICS:
        return True, lambda y, pred: label_score(metric, y, pred, n_classes, class_weights)
    import torch

    from podium.model.metrics import task_metrics

    scorer = task_metrics(task, n_classes, k, class_weights)[metric]

    def score(y: np.ndarray, probs: np.ndarray) -> float:
        scorer.reset()
        scorer.update(torch.tensor(np.asarray(probs), dtype=torch.float32), torch.tensor(y))
        return float(scorer.compute())

    return False, score


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
