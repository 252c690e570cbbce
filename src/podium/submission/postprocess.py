"""Post-processing learned on out-of-fold predictions, applied to the test predictions.

Every step is learned on exactly the predictions it is applied to (with test-time
augmentation when TTA is on), scored by the competition's metric (`metric.competition`),
starts from "no change" and accepts a change only when it raises the OOF score of the rows
it is fitted on. That in-sample "after" is optimistic by construction, so every step is
also cross-fitted (podium.submission.crossfit: fitted on k-1 parts of the OOF rows, scored
on the k-th) and reaches the test set only when its cross-fitted score beats the plain one;
otherwise the prediction stays as it is, with a one-line warning.
- `F1Offsets` (`postprocess=f1_offsets`): per-class additive log-probability offsets found
  by coordinate search (the decision rule a label metric wants is rarely argmax).
- `LogitAdjust` (`postprocess=logit_adjust`): subtract `tau * log(prior)` (Menon et al.
  2021), `tau` chosen on OOF.
- `Thresholds` (`postprocess=thresholds`, multi-label; podium.submission.thresholds): one decision
  threshold per label (or one for all) maximising the OOF F1 (micro, macro or samples).
Only label metrics (LABEL_METRICS: accuracy, F1, ...) can gain from them; for a metric on
probabilities (AUROC, log-loss, MAP@k) they are skipped with a warning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from podium.submission.crossfit import Fitted, Learn, Parts, judge, make_parts
from podium.submission.oof import label_score

Adjust = Callable[[np.ndarray], np.ndarray]


def f1_offsets(logp: np.ndarray, y: np.ndarray, rounds: int = 3,
               grid: np.ndarray | None = None, metric: str = "f1_macro") -> np.ndarray:
    """Per-class offsets maximising `metric` of argmax(logp + offsets), one class at a time."""
    n_classes = logp.shape[1]
    grid = np.linspace(-2.0, 2.0, 41) if grid is None else grid
    offsets = np.zeros(n_classes)
    best = label_score(metric, y, logp.argmax(1), n_classes)
    for _ in range(rounds):
        for c in range(n_classes):
            for delta in grid:
                trial = offsets.copy()
                trial[c] = delta
                score = label_score(metric, y, (logp + trial).argmax(1), n_classes)
                if score > best + 1e-12:
                    best, offsets = score, trial
    return offsets


class F1Offsets:
    """Per-class log-probability offsets (coordinate search over `grid`, `rounds` passes)."""

    name = "f1_offsets"

    def __init__(self, rounds: int = 3) -> None:
        self.rounds = rounds

    def fit(self, logp: np.ndarray, y: np.ndarray, metric: str,
            class_names: Sequence[str]) -> tuple[np.ndarray, dict]:
        shift = f1_offsets(logp, y, self.rounds, metric=metric)
        return shift, {"offsets": dict(zip(map(str, class_names), shift.tolist(), strict=True))}


class LogitAdjust:
    """Subtract tau * log(OOF class prior), tau in 0..2 (first best: 0 = no change on ties)."""

    name = "logit_adjust"

    def fit(self, logp: np.ndarray, y: np.ndarray, metric: str,
            class_names: Sequence[str]) -> tuple[np.ndarray, dict]:
        n_classes = logp.shape[1]
        log_prior = np.log(np.bincount(y, minlength=n_classes).clip(1) / len(y))
        taus = np.linspace(0.0, 2.0, 21)
        scores = [label_score(metric, y, (logp - t * log_prior).argmax(1), n_classes)
                  for t in taus]
        tau = float(taus[int(np.argmax(scores))])
        return -tau * log_prior, {"tau": tau}


def postprocess_learner(step, class_names: Sequence[str], metric: str) -> Learn:
    """`step` (F1Offsets, LogitAdjust) as a learner: fitted on some rows' (N, C)
    probabilities and class indices, deciding argmax(log p + shift)."""

    def learn(probs: np.ndarray, y: np.ndarray) -> Fitted:
        shift, report = step.fit(log_probs(probs), y, metric, class_names)

        def adjust(test: np.ndarray) -> np.ndarray:
            logits = log_probs(test) + shift
            exp = np.exp(logits - logits.max(axis=1, keepdims=True))
            return exp / exp.sum(axis=1, keepdims=True)

        return Fitted(lambda test: (log_probs(test) + shift).argmax(1), report, adjust)

    return learn


def argmax_learner(probs: np.ndarray, y: np.ndarray) -> Fitted:
    """No post-processing: argmax, the probabilities as they are."""
    return Fitted(lambda test: test.argmax(1), {}, lambda test: test)


def log_probs(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None))


def fit_postprocess(step, oof: pd.DataFrame, class_names: Sequence[str], target_col: str,
                    metric: str = "f1_macro", task: str = "multiclass",
                    parts: Parts | None = None) -> tuple[Adjust, dict, str | None]:
    """Learn `step` (F1Offsets, LogitAdjust; multi-label: Thresholds) on the OOF predictions
    for the label metric `metric`, judged by its cross-fitted score (`parts`: the OOF's folds,
    else a seeded stratified k-fold; podium.submission.crossfit.make_parts). Returns the test
    adjustment (the identity when the step is not used), the report (`before`,
    `after_in_sample`, `after_cross_fitted`, `used`, what was learned on every row) and a
    one-line warning when the step is not used."""
    from podium.submission.thresholds import Thresholds, fit_threshold_postprocess

    if isinstance(step, Thresholds) or task == "multilabel":
        return fit_threshold_postprocess(step, oof, class_names, target_col, task, metric,
                                         parts)
    index = {name: i for i, name in enumerate(class_names)}
    y = oof[target_col].map(index).to_numpy()
    probs = oof[list(class_names)].to_numpy(dtype=np.float64)
    parts = parts if parts is not None else make_parts(oof, y)
    learn = postprocess_learner(step, class_names, metric)
    n_classes = len(class_names)
    fitted, report, warning = judge(step.name, learn, argmax_learner, probs, y, parts,
                                    lambda truth, pred: label_score(metric, truth, pred,
                                                                    n_classes), metric)
    return fitted.adjust, report, warning
