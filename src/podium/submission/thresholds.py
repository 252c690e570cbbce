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

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from podium import run
from podium.errors import PodiumError
from podium.model.metrics import confusion_score
from podium.submission.crossfit import Fitted, Learn, Parts, judge, make_parts
from podium.submission.oof import label_score

Adjust = Callable[[np.ndarray], np.ndarray]


def best_threshold(p1: np.ndarray, y: np.ndarray, metric: str,
                   class_weights: np.ndarray | None = None) -> dict:
    """The decision threshold on p(positive) that maximises the label metric `metric` on
    (validation or OOF) predictions (each row weighing its class's weight, when given);
    0.5 unless another threshold is strictly better."""
    before = label_score(metric, y, (p1 >= 0.5).astype(int), 2, class_weights)
    best, threshold = before, 0.5
    weights = None if class_weights is None else np.asarray(class_weights)[y]
    for t, cm in threshold_confusions(p1, y, weights):
        score = confusion_score(metric, cm)
        if score > best + 1e-12:
            best, threshold = score, float(t)
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


def threshold_learner(metric: str, pre: Learn | None = None,
                      threshold: float | None = None,
                      class_weights: np.ndarray | None = None) -> Learn:
    """The binary decision `p(positive) >= t` as a learner: `t` learned by `best_threshold`
    (or fixed at `threshold`), on the probabilities `pre` (post-processing, learned on the
    same rows) makes, when given."""

    def learn(probs: np.ndarray, y: np.ndarray) -> Fitted:
        made = pre(probs, y).adjust if pre else (lambda p: p)
        cut = threshold if threshold is not None else \
            best_threshold(made(probs)[:, 1], y, metric, class_weights)["threshold"]
        return Fitted(lambda test: (made(test)[:, 1] >= cut).astype(int), {"threshold": cut})

    return learn


def fit_binary_threshold(probs: np.ndarray, y: np.ndarray, metric: str, parts: Parts,
                         pre: Learn | None = None, class_weights: np.ndarray | None = None
                         ) -> tuple[float, dict, str | None]:
    """The cut the submission uses (0.5 unless the learned one's cross-fitted score beats
    0.5's), the report (`threshold`: learned on every row) and a warning when not used.
    `pre`: post-processing the test set gets first; it is refitted within every part.
    `class_weights`: each row weighs its class's weight (a test prior)."""
    fitted, report, warning = judge(
        "threshold", threshold_learner(metric, pre, class_weights=class_weights),
        threshold_learner(metric, pre, 0.5, class_weights), probs, y, parts,
        lambda truth, pred: label_score(metric, truth, pred, 2, class_weights), metric)
    return fitted.info["threshold"], report, warning


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
    shift = np.log(p / (1 - p)) - np.log(t / (1 - t))
    return 1.0 / (1.0 + np.exp(-shift))


def fit_threshold_postprocess(step, oof: pd.DataFrame, class_names: Sequence[str],
                              target_col: str, task: str, monitor: str | None,
                              parts: Parts | None = None
                              ) -> tuple[Adjust, dict, str | None]:
    """`postprocess=thresholds` on multi-label OOF predictions (its label column holds the
    space-separated sets), judged by its cross-fitted score (`parts`, else
    podium.submission.crossfit.make_parts); the scores are measured on what the test set
    gets. Returns the adjustment (the identity when not used), report and warning."""
    from podium.data.labels import multi_hot, split_label_set

    if task != "multilabel" or not isinstance(step, Thresholds):
        raise PodiumError(f"postprocess={step.name} does not fit data.task={task}: use "
                          + ("postprocess=thresholds" if task == "multilabel"
                             else "f1_offsets or logit_adjust"))
    name = (monitor or "").rsplit("/", 1)[-1]
    average = step.metric or (name if name in F1_AVERAGES else "f1_micro")
    if average not in F1_AVERAGES:
        raise PodiumError(f"postprocess.metric={average}: use one of {', '.join(F1_AVERAGES)}")
    sets = [split_label_set(cell) for cell in oof[run.label_col(target_col, class_names)]]
    y = multi_hot(sets, [str(c) for c in class_names], Path(run.OOF), target_col)[0] > 0.5
    probs = oof[[str(c) for c in class_names]].to_numpy(dtype=np.float64)
    parts = parts if parts is not None else make_parts(oof, y)
    names = [str(c) for c in class_names]

    def learn(rows: np.ndarray, truth: np.ndarray) -> Fitted:
        thresholds = fit_thresholds(rows, truth, average, step.per_class)
        if multilabel_f1(truth, shift_to_half(rows, thresholds) > 0.5, average) < \
                multilabel_f1(truth, rows > 0.5, average):  # only a float tie could do this
            thresholds = np.full(len(names), 0.5)
        return Fitted(lambda test: shift_to_half(test, thresholds) > 0.5,
                      {"thresholds": dict(zip(names, thresholds.tolist(), strict=True))},
                      lambda test: shift_to_half(test, thresholds))

    def plain(rows: np.ndarray, truth: np.ndarray) -> Fitted:
        return Fitted(lambda test: test > 0.5, {}, lambda test: test)

    fitted, report, warning = judge("thresholds", learn, plain, probs, y, parts,
                                    lambda truth, pred: multilabel_f1(truth, pred, average),
                                    average)
    return fitted.adjust, report, warning
