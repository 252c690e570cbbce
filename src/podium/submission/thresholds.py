"""Decision thresholds learned on validation / out-of-fold predictions.

- `best_threshold`: a binary task scored on labels (accuracy, F1, ...) cuts p(positive) where
  the competition's metric is best, not at 0.5.
- `Thresholds` (`postprocess=thresholds`): multi-label, one threshold per label (or one for
  all) maximising the OOF F1 (micro, macro or samples), starting from 0.5 and accepting
  only a strictly better score.
Both are judged by their cross-fitted OOF score (podium.submission.crossfit): learned on
k-1 parts of the rows, scored on the k-th; they are used only when that score beats 0.5's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from podium.model.metrics import confusion_score
from podium.submission.oof import label_score

Adjust = Callable[[np.ndarray], np.ndarray]


def best_threshold(p1: np.ndarray, y: np.ndarray, metric: str,
                   class_weights: np.ndarray | None = None) -> dict:
    """The decision threshold on p(positive) that maximises the label metric `metric` on
    (validation or OOF) predictions (each row weighing its class's weight, when given);
    0.5 unless another threshold is strictly better. A learned cut lies halfway between
    the lowest probability it keeps and the next lower one: the same rows, with a margin
    on both sides (a cut at a row's own value would flip that row once its probability is
    read back from a CSV's 7 digits)."""
    before = label_score(metric, y, (p1 >= 0.5).astype(int), 2, class_weights)
    best, threshold = before, 0.5
    weights = None if class_weights is None else np.asarray(class_weights)[y]
    for t, cm in threshold_confusions(p1, y, weights):
        score = confusion_score(metric, cm)
        if score > best + 1e-12:
            best, threshold = score, float(t)
    if best > before:  # learned: halfway down to the next lower probability
        below = p1[p1 < threshold]
        threshold = (threshold + float(below.max() if below.size else 0.0)) / 2
    return {"threshold": threshold, "metric": metric, "before": before, "after": best}


def threshold_confusions(p1: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None):
    """(t, confusion matrix of `p1 >= t`) for every distinct value t of `p1`, ascending:
    counted once from the sorted rows (O(n log n)), not by scoring every split again.
    `weights`: each row counts with its weight instead of 1."""
    values, counts = np.unique(-p1, return_counts=True)  # descending p, rows per value
    order = np.argsort(-p1, kind="stable")
    weights = np.ones(len(p1)) if weights is None else np.asarray(weights, np.float64)
    positive_weights = (np.asarray(y).astype(bool) * weights)[order]
    row_weights = np.cumsum(weights[order])
    at_least = row_weights[np.cumsum(counts) - 1]     # weight of the rows with p >= value
    tp = np.cumsum(positive_weights)[np.cumsum(counts) - 1]  # of the positives among them
    positives, rows = positive_weights.sum(), row_weights[-1]
    fp = at_least - tp
    for i in range(len(values) - 1, -1, -1):          # ascending thresholds
        yield -values[i], np.array([[rows - positives - fp[i], fp[i]],
                                    [positives - tp[i], tp[i]]])


class Thresholds:
    """Multi-label decision thresholds (`per_class`, else one global); `metric`: the F1 to
    maximise (f1_micro | f1_macro | f1_samples; None: metric.competition when an F1)."""

    name = "thresholds"

    def __init__(self, per_class: bool = True, metric: str | None = None) -> None:
        self.per_class, self.metric = per_class, metric


# -- multi-label decision thresholds --------------------------------------------------------
F1_AVERAGES = ("f1_micro", "f1_macro", "f1_samples")
GRID = np.round(np.linspace(0.01, 0.99, 99), 2)  # candidate thresholds; holds 0.5


def multilabel_f1(y: np.ndarray, pred: np.ndarray, average: str) -> float:
    """F1 of boolean (N, C) predictions as torchmetrics/scikit-learn compute it: micro,
    macro (a label without true or predicted positives scores 0) or samples (a row without
    either scores 1, as podium.model.metrics.SamplesF1)."""
    both = (y & pred)
    if average == "f1_samples":
        sizes = pred.sum(1) + y.sum(1)
        return float(np.where(sizes > 0, 2 * both.sum(1) / np.maximum(sizes, 1), 1.0).mean())
    axis = None if average == "f1_micro" else 0
    tp, sizes = both.sum(axis), pred.sum(axis) + y.sum(axis)
    return float(np.mean(np.where(sizes > 0, 2 * tp / np.maximum(sizes, 1), 0.0)))


def label_candidates(y: np.ndarray, pred: np.ndarray, probs: np.ndarray, c: int,
                     grid: np.ndarray, average: str) -> np.ndarray:
    """The F1 for every threshold of `grid` on label `c`, the other labels' predictions
    kept: one (N, G) comparison instead of G full evaluations."""
    candidates = probs[:, c, None] > grid[None, :]
    y_c = y[:, c, None]
    if average == "f1_samples":
        tp = (y & pred).sum(1, keepdims=True) - (y_c & pred[:, c, None]) + (candidates & y_c)
        sizes = (pred.sum(1) + y.sum(1))[:, None] - pred[:, c, None] + candidates
        return np.where(sizes > 0, 2 * tp / np.maximum(sizes, 1), 1.0).mean(0)
    tp_c, sizes_c = (candidates & y_c).sum(0), candidates.sum(0) + y_c.sum()
    tp, sizes = (y & pred).sum(0), pred.sum(0) + y.sum(0)
    if average == "f1_micro":
        total_tp, total = tp.sum() - tp[c] + tp_c, sizes.sum() - sizes[c] + sizes_c
        return np.where(total > 0, 2 * total_tp / np.maximum(total, 1), 0.0)
    f1 = np.where(sizes > 0, 2 * tp / np.maximum(sizes, 1), 0.0)
    f1_c = np.where(sizes_c > 0, 2 * tp_c / np.maximum(sizes_c, 1), 0.0)
    return (f1.sum() - f1[c] + f1_c) / len(f1)


def fit_thresholds(probs: np.ndarray, y: np.ndarray, average: str = "f1_micro",
                   per_class: bool = True, rounds: int = 3,
                   grid: np.ndarray = GRID) -> np.ndarray:
    """Thresholds (C,) maximising the F1 of `probs > thresholds` on (N, C) OOF data.

    Starts at 0.5 everywhere and accepts only a strictly better score: one global
    threshold searched over `grid`, or coordinate ascent one label at a time (`rounds`
    passes; macro-F1 is a sum over labels, so one pass finds its best thresholds).
    """
    y = y.astype(bool)
    thresholds = np.full(probs.shape[1], 0.5)
    best = multilabel_f1(y, probs > thresholds, average)
    if not per_class:
        for t in grid:
            score = multilabel_f1(y, probs > t, average)
            if score > best + 1e-12:
                best, thresholds = score, np.full(probs.shape[1], t)
        return thresholds
    for _ in range(1 if average == "f1_macro" else rounds):
        improved = False
        for c in range(probs.shape[1]):
            scores = label_candidates(y, probs > thresholds, probs, c, grid, average)
            if scores.max() > best + 1e-12:
                best, thresholds[c], improved = float(scores.max()), grid[scores.argmax()], True
        if not improved:
            break
    return thresholds


def shift_to_half(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Probabilities moved so that `p > threshold` becomes `p' > 0.5` (a logit shift per
    label): the submission's fixed 0.5 then applies the learned thresholds, and a label's
    ranking (AUC, average precision) is unchanged."""
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    t = np.clip(thresholds, 1e-7, 1 - 1e-7)
    logit = np.log(p / (1 - p)) - np.log(t / (1 - t))
    return 1.0 / (1.0 + np.exp(-logit))


