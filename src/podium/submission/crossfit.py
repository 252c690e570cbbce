"""Honest estimates for every learned step: cross-fitted out-of-fold scores.

A step learned on the OOF rows (the binary decision threshold, `f1_offsets`,
`logit_adjust`'s tau, multi-label thresholds) and scored on the same rows looks better than
it is: its in-sample "after" is optimistic by construction, and on a small validation
split a threshold chases noise. `judge` therefore also fits the step on k-1 parts of the
rows and predicts the k-th, for every part; the pooled held-out predictions give the
cross-fitted "after", compared with the plain ("before") score of the same rows. The parts
are the OOF's own folds (a `fold` column with at least two folds: a cross-validation), else
a seeded stratified k-fold of the rows (k = 5, fewer for tiny data; iterative
stratification for multi-label rows). A step is used (fitted on all rows, applied to the
test set) only when its cross-fitted score is strictly better than the plain one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from podium.submission.oof import better

K = 5         # parts of a seeded k-fold when the OOF has no folds of its own
SEED = 0      # its seed: the same rows give the same parts in every run
MIN_ROWS = 4  # fewer rows cannot be cross-fitted (each part needs rows to fit on)


@dataclass
class Fitted:
    """A step fitted on some rows: `decide` maps probabilities (N, C) to what the metric
    scores (labels, or a boolean (N, C) for multi-label); `adjust` (post-processing) maps
    probabilities to the probabilities the test set gets; `info` is what was learned."""

    decide: Callable[[np.ndarray], np.ndarray]
    info: dict = field(default_factory=dict)
    adjust: Callable[[np.ndarray], np.ndarray] | None = None


Learn = Callable[[np.ndarray, np.ndarray], Fitted]  # (probabilities, truth) -> fitted step
Score = Callable[[np.ndarray, np.ndarray], float]   # (truth, decisions) -> the metric


@dataclass
class Parts:
    """The held-out row indices of each part, and how they were made (for the report)."""

    held_out: list[np.ndarray]
    how: str


def make_parts(oof: pd.DataFrame, y: np.ndarray, k: int = K, seed: int = SEED) -> Parts:
    """The OOF's folds when it has a `fold` column with >= 2 folds (every row in one),
    else a seeded stratified k-fold of the rows (k = 5, at most the rarest class's count;
    plain shuffled k-fold when a class has one row); no parts for fewer than 4 rows."""
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(y)
    if "fold" in oof.columns and oof["fold"].notna().all():
        folds = oof["fold"].to_numpy()
        values = pd.unique(folds)
        if len(values) >= 2:
            return Parts([np.flatnonzero(folds == v) for v in values],
                         f"the OOF's {len(values)} folds")
    if n < MIN_ROWS:
        return Parts([], f"{n} rows: too few to cross-fit")
    index = np.arange(n)
    if y.ndim == 2:  # multi-label: iterative stratification
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

        k = min(k, n // 2)
        splits = MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        return Parts([held for _, held in splits.split(index, y.astype(int))],
                     f"a seeded stratified {k}-fold of the rows")
    counts = np.bincount(y)
    rarest = int(counts[counts > 0].min())
    if rarest >= 2:
        k = min(k, rarest)
        splits = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(index, y)
        return Parts([held for _, held in splits], f"a seeded stratified {k}-fold of the rows")
    k = min(k, n // 2)
    splits = KFold(n_splits=k, shuffle=True, random_state=seed).split(index)
    return Parts([held for _, held in splits], f"a seeded {k}-fold of the rows")


def cross_fit(learn: Learn, probs: np.ndarray, y: np.ndarray, parts: Parts,
              score: Score) -> float:
    """The metric of the pooled held-out decisions: each part decided by `learn` fitted on
    the other parts."""
    pooled: np.ndarray | None = None
    for held in parts.held_out:
        rest = np.setdiff1d(np.arange(len(y)), held)
        decided = learn(probs[rest], y[rest]).decide(probs[held])
        if pooled is None:
            pooled = np.zeros((len(y),) + decided.shape[1:], dtype=decided.dtype)
        pooled[held] = decided
    return score(y, pooled)


def judge(name: str, learn: Learn, plain: Learn, probs: np.ndarray, y: np.ndarray,
          parts: Parts, score: Score, metric: str) -> tuple[Fitted, dict, str | None]:
    """Fit `learn` on every row and cross-fitted; use it only when its cross-fitted score
    beats `plain`'s (the prediction without the step; its own learning, if any, cross-fitted
    too). Returns what the test set gets (the step fitted on all rows, or `plain` fitted on
    all rows), the report (`before`, `after_in_sample`, `after_cross_fitted`, `used`,
    `cross_fitted_on`, what was learned on all rows) and a one-line warning when not used."""
    fitted, without = learn(probs, y), plain(probs, y)
    before = cross_fit(plain, probs, y, parts, score) if parts.held_out else \
        score(y, without.decide(probs))
    in_sample = score(y, fitted.decide(probs))
    report = {"name": name, "metric": metric, "before": before, "after_in_sample": in_sample,
              "after_cross_fitted": None, "used": False, "cross_fitted_on": parts.how,
              **fitted.info}
    if not parts.held_out:
        return without, report, f"{name} not used: {parts.how}"
    cross_fitted = cross_fit(learn, probs, y, parts, score)
    report["after_cross_fitted"] = cross_fitted
    if np.array_equal(fitted.decide(probs), without.decide(probs)):
        return without, report, f"{name} not used: fitted on every OOF row it changes no " \
                                f"decision"
    if not better(cross_fitted, before, metric, strict=True):
        from podium.model.metrics import infer_mode

        sign = ">=" if infer_mode(metric) == "min" else "<="
        return without, report, (f"{name} not used: cross-fitted OOF {metric} "
                                 f"{cross_fitted:.4f} {sign} {before:.4f} without it")
    report["used"] = True
    return fitted, report, None
