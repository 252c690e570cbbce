"""Post-processing learned on out-of-fold predictions, applied to the test predictions.

Both adjustments work on log-probabilities and start from "no change", accepting a
change only when it raises the OOF macro-F1: the OOF score never goes down.
- `f1_offsets`: per-class additive offsets found by coordinate search (the decision
  thresholds macro-F1 wants are rarely those of argmax).
- `logit_adjust`: subtract `tau * log(prior)` (Menon et al. 2021), `tau` chosen on OOF.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from podium.errors import PodiumError

Adjust = Callable[[np.ndarray], np.ndarray]


def macro_f1(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Macro-F1 over all classes from a confusion matrix (fast enough to search with)."""
    cm = np.bincount(y * n_classes + pred, minlength=n_classes**2).reshape(n_classes, -1)
    tp = np.diag(cm).astype(float)
    denom = cm.sum(0) + cm.sum(1)
    return float(np.mean(np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)))


def read_oof(runs: Sequence[Path], id_col: str, target_col: str) -> pd.DataFrame:
    """The runs' OOF rows; an id predicted by several runs gets their mean probabilities."""
    frames = [pd.read_csv(r / "oof.csv", dtype={id_col: str, target_col: str})
              for r in runs if (r / "oof.csv").is_file()]
    if not frames:
        raise PodiumError("postprocess needs oof.csv in the run folders: train them again")
    oof = pd.concat(frames, ignore_index=True)
    probs = oof.drop(columns=["fold"]).groupby([id_col, target_col], sort=False).mean()
    return probs.reset_index()


def f1_offsets(logp: np.ndarray, y: np.ndarray, rounds: int = 3,
               grid: np.ndarray | None = None) -> np.ndarray:
    """Per-class offsets maximising macro-F1 of argmax(logp + offsets), one class at a time."""
    n_classes = logp.shape[1]
    grid = np.linspace(-2.0, 2.0, 41) if grid is None else grid
    offsets = np.zeros(n_classes)
    best = macro_f1(y, logp.argmax(1), n_classes)
    for _ in range(rounds):
        for c in range(n_classes):
            for delta in grid:
                trial = offsets.copy()
                trial[c] = delta
                score = macro_f1(y, (logp + trial).argmax(1), n_classes)
                if score > best + 1e-12:
                    best, offsets = score, trial
    return offsets


def fit_postprocess(cfg, oof: pd.DataFrame, class_names: Sequence[str],
                    target_col: str) -> tuple[Adjust, dict]:
    """Learn `cfg.name` on the OOF predictions; return the test adjustment and a report."""
    index = {name: i for i, name in enumerate(class_names)}
    y = oof[target_col].map(index).to_numpy()
    logp = np.log(np.clip(oof[list(class_names)].to_numpy(dtype=np.float64), 1e-12, None))
    n_classes = len(class_names)
    before = macro_f1(y, logp.argmax(1), n_classes)
    if cfg.name == "f1_offsets":
        shift = f1_offsets(logp, y, rounds=cfg.get("rounds", 3))
        report = {"offsets": dict(zip(map(str, class_names), shift.tolist(), strict=True))}
    elif cfg.name == "logit_adjust":
        log_prior = np.log(np.bincount(y, minlength=n_classes).clip(1) / len(y))
        taus = np.linspace(0.0, 2.0, 21)
        scores = [macro_f1(y, (logp - t * log_prior).argmax(1), n_classes) for t in taus]
        tau = float(taus[int(np.argmax(scores))])  # first best: tau=0 (no change) on ties
        shift = -tau * log_prior
        report = {"tau": tau}
    else:
        raise PodiumError(f"postprocess.name={cfg.name}: use f1_offsets or logit_adjust")
    after = macro_f1(y, (logp + shift).argmax(1), n_classes)

    def adjust(probs: np.ndarray) -> np.ndarray:
        logits = np.log(np.clip(probs, 1e-12, None)) + shift
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    return adjust, {"name": cfg.name, "before": before, "after": after, **report}
