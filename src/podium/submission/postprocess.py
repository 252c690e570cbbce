"""The rules of the chain's `adjust` step (podium.submission.steps.Adjust): offsets of the
log-probabilities learned on out-of-fold predictions for the competition's metric.

- `F1Offsets` (`postprocess=f1_offsets`): per-class additive log-probability offsets found
  by coordinate search (the decision rule a label metric wants is rarely argmax).
- `LogitAdjust` (`postprocess=logit_adjust`): subtract `tau * log(prior)` (Menon et al.
  2021), `tau` chosen on OOF.
- `Thresholds` (`postprocess=thresholds`, multi-label; podium.submission.thresholds): one
  decision threshold per label (or one for all) maximising the OOF F1.
Each starts from "no change"; the chain uses it only when the cross-fitted score gains more
than 1.645 standard errors (steps.KEEP_SE). Only label metrics (accuracy, F1, ...) gain from
offsets; a metric on probabilities (AUROC, MAP@k) skips them with a warning, except the
logit adjustment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from podium.submission.oof import label_score

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
        offsets = f1_offsets(logp, y, self.rounds, objective=objective)
        return offsets, {"offsets": dict(zip(map(str, class_names), offsets.tolist(),
                                             strict=True))}


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


def log_probs(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None))


