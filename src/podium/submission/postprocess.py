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
from podium.submission.oof import decision_score, label_score

Adjust = Callable[[np.ndarray], np.ndarray]
Objective = Callable[[np.ndarray, np.ndarray], float]  # (truth, log-probs) -> higher is better


def f1_offsets(logp: np.ndarray, y: np.ndarray, rounds: int = 3,
               grid: np.ndarray | None = None, metric: str = "f1_macro",
               objective: Objective | None = None) -> np.ndarray:
    """Per-class offsets maximising `objective` (default: `metric` of argmax(logp +
    offsets)), one class at a time."""
    n_classes = logp.shape[1]
    grid = np.linspace(-2.0, 2.0, 41) if grid is None else grid
    objective = objective or (lambda truth, z: label_score(metric, truth, z.argmax(1),
                                                           n_classes))
    offsets = np.zeros(n_classes)
    best = objective(y, logp)
    for _ in range(rounds):
        for c in range(n_classes):
            for delta in grid:
                trial = offsets.copy()
                trial[c] = delta
                score = objective(y, logp + trial)
                if score > best + 1e-12:
                    best, offsets = score, trial
    return offsets


class F1Offsets:
    """Per-class log-probability offsets (coordinate search over `grid`, `rounds` passes)."""

    name = "f1_offsets"

    def __init__(self, rounds: int = 3) -> None:
        self.rounds = rounds

    def fit(self, logp: np.ndarray, y: np.ndarray, objective: Objective,
            class_names: Sequence[str], test_prior: np.ndarray | None = None
            ) -> tuple[np.ndarray, dict]:
        shift = f1_offsets(logp, y, self.rounds, objective=objective)
        return shift, {"offsets": dict(zip(map(str, class_names), shift.tolist(), strict=True))}


class LogitAdjust:
    """Subtract tau * log(train prior) from the log-probabilities (Menon et al. 2021, post
    hoc), tau chosen on the OOF rows (the first best), the train prior being the OOF rows'
    class shares. Without a test prior (data.test_prior=train) tau runs 0..2: toward a
    uniform prior (tau = 1 is Bayes' rule for plain cross-entropy). With one, the
    probabilities are already moved to it by Bayes' rule (podium.submission.ensemble), and
    tau runs -1..1 from 0 (no change first): how much further the OOF rows want them."""

    name = "logit_adjust"

    def fit(self, logp: np.ndarray, y: np.ndarray, objective: Objective,
            class_names: Sequence[str], test_prior: np.ndarray | None = None
            ) -> tuple[np.ndarray, dict]:
        n_classes = logp.shape[1]
        log_prior = np.log(np.bincount(y, minlength=n_classes).clip(1) / len(y))
        taus = (np.linspace(0.0, 2.0, 21) if test_prior is None
                else sorted(np.linspace(-1.0, 1.0, 21), key=abs))
        scores = [objective(y, logp - t * log_prior) for t in taus]
        tau = float(taus[int(np.argmax(scores))])
        return -tau * log_prior, {"tau": tau}


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def postprocess_learner(step, class_names: Sequence[str], objective: Objective,
                        on_labels: bool = True, test_prior: np.ndarray | None = None
                        ) -> Learn:
    """`step` (F1Offsets, LogitAdjust) as a learner: fitted on some rows' (N, C)
    probabilities and class indices, deciding argmax(log p + shift) (`on_labels`), else the
    shifted probabilities (a metric of probabilities: log-loss, MAP@k)."""

    def learn(probs: np.ndarray, y: np.ndarray) -> Fitted:
        shift, report = step.fit(log_probs(probs), y, objective, class_names, test_prior)

        def adjust(test: np.ndarray) -> np.ndarray:
            return softmax(log_probs(test) + shift)

        decide = (lambda test: (log_probs(test) + shift).argmax(1)) if on_labels else adjust
        return Fitted(decide, report, adjust)

    return learn


def plain_learner(on_labels: bool = True) -> Learn:
    """No post-processing: argmax (`on_labels`), else the probabilities as they are."""

    def learn(probs: np.ndarray, y: np.ndarray) -> Fitted:
        return Fitted((lambda test: test.argmax(1)) if on_labels else (lambda test: test), {},
                      lambda test: test)

    return learn


def log_probs(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None))


def fit_postprocess(step, oof: pd.DataFrame, class_names: Sequence[str], target_col: str,
                    metric: str = "f1_macro", task: str = "multiclass",
                    parts: Parts | None = None, test_prior: np.ndarray | None = None,
                    k: int = 3) -> tuple[Adjust, dict, str | None]:
    """Learn `step` (F1Offsets, LogitAdjust; multi-label: Thresholds) on the OOF predictions
    for `metric` (a label metric; LogitAdjust also a metric of probabilities), judged by its
    cross-fitted score (`parts`: the OOF's folds, else a seeded stratified k-fold;
    podium.submission.crossfit.make_parts). With a `test_prior` every score weighs each row
    by test_prior / (the OOF's class shares), and LogitAdjust shifts toward that prior.
    Returns the test adjustment (the identity when the step is not used), the report
    (`before`, `after_in_sample`, `after_cross_fitted`, `used`, what was learned on every
    row) and a one-line warning when the step is not used."""
    from podium.submission.thresholds import Thresholds, fit_threshold_postprocess

    if isinstance(step, Thresholds) or task == "multilabel":
        return fit_threshold_postprocess(step, oof, class_names, target_col, task, metric,
                                         parts)
    y = oof_labels(oof, class_names, target_col)
    probs = oof[list(class_names)].to_numpy(dtype=np.float64)
    parts = parts if parts is not None else make_parts(oof, y)
    learn, plain, score = step_learners(step, class_names, metric, y, test_prior, task, k)
    fitted, report, warning = judge(step.name, learn, plain, probs, y, parts, score, metric)
    return fitted.adjust, report, warning


def step_learners(step, class_names: Sequence[str], metric: str, y: np.ndarray,
                  test_prior: np.ndarray | None = None, task: str = "multiclass", k: int = 3
                  ) -> tuple[Learn, Learn, Callable]:
    """(the step as a learner, the plain prediction as one, the score both are judged by):
    a label metric decides labels, another classification metric probabilities; with a
    `test_prior`, rows weigh test_prior / the class shares of `y` (all OOF rows)."""
    from podium.model.metrics import infer_mode

    n_classes = len(class_names)
    weights = None if test_prior is None else prior_weights(test_prior, y, n_classes)
    on_labels, score = decision_score(metric, n_classes, weights, task, k)
    sign = -1.0 if infer_mode(metric) == "min" else 1.0
    objective = ((lambda truth, z: sign * score(truth, z.argmax(1))) if on_labels
                 else (lambda truth, z: sign * score(truth, softmax(z))))
    return (postprocess_learner(step, class_names, objective, on_labels, test_prior),
            plain_learner(on_labels), score)


def oof_labels(oof: pd.DataFrame, class_names: Sequence[str], target_col: str) -> np.ndarray:
    """The OOF rows' true class indices."""
    from podium.run import label_col

    index = {str(name): i for i, name in enumerate(class_names)}
    return oof[label_col(target_col, class_names)].astype(str).map(index).to_numpy()


def prior_weights(test_prior: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-class weights test_prior / (the rows' own class shares)."""
    from podium.prior import class_weights

    return class_weights(test_prior, np.bincount(y, minlength=n_classes))
