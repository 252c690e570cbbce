"""Blend weights learned on the members' out-of-fold predictions (`make submit ... weights=auto`).

One weight per folder given (a cross-validation folder's folds share it), learned on the
folders' OOF predictions of the same training rows for the competition's metric
(`metric.competition`):
- classification: Caruana et al.'s ensemble selection (ICML 2004): starting from nothing,
  add with replacement the member whose addition scores best, `ROUNDS` times; the weights
  are how often each member was chosen in the best-scoring prefix, so the first round is
  the best single member and the blend never scores below it on the rows it learned on;
- regression: non-negative least squares (scipy.optimize.nnls) with weights that sum to
  one (an extra row, weighted heavily, asks for it): the weighted average that fits the
  target best; the ensemble writes a weighted average, so the weights are one.
The chain (podium.submission.steps.Blend) learns them on k-1 parts of the OOF rows and
applies them to the k-th; they replace the given weights only when that gains more than
1.645 standard errors (steps.KEEP_SE).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from podium.submission.oof import better

ROUNDS = 50     # Caruana's selection rounds (with replacement): weights in steps of 1/50
ANCHOR = 1e3    # weight of NNLS's sum-to-one row, relative to the predictions' scale

Score = Callable[[np.ndarray], float]  # blended OOF predictions (N, C) -> the metric


def caruana(predictions: np.ndarray, score: Score, metric: str, rounds: int = ROUNDS
            ) -> np.ndarray:
    """Greedy ensemble selection with replacement over `predictions` (M, N, C): each round
    adds the member whose addition gives the best `metric` (the first on ties); the weights
    are the members' counts in the best-scoring prefix of rounds, over its length."""
    from podium.model.metrics import infer_mode

    mode = infer_mode(metric)
    counts, total = np.zeros(len(predictions)), np.zeros(predictions.shape[1:])
    best, best_counts = None, counts
    for size in range(1, rounds + 1):
        scores = [score((total + p) / size) for p in predictions]
        pick = int(np.argmin(scores) if mode == "min" else np.argmax(scores))
        counts[pick] += 1
        total += predictions[pick]
        if best is None or better(scores[pick], best, metric, strict=True):
            best, best_counts = scores[pick], counts.copy()
    return best_counts / best_counts.sum()


def nnls_weights(predictions: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to one whose weighted average of `predictions` (M, N)
    is nearest `target` (N,) in squared error: scipy's NNLS on the rows plus one row
    `anchor * sum(w) = anchor` weighted far above them; then normalised exactly."""
    from scipy.optimize import nnls

    scale = max(1.0, float(np.abs(predictions).max()), float(np.abs(target).max()))
    anchor = ANCHOR * scale * np.sqrt(len(target))
    a = np.vstack([predictions.T, np.full((1, len(predictions)), anchor)])
    w, _ = nnls(a, np.append(target, anchor))
    return w / w.sum() if w.sum() > 0 else np.full(len(w), 1 / len(w))


