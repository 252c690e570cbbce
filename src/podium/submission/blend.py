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
Learned weights are judged like every learned step (podium.submission.crossfit): learned
on k-1 parts of the OOF rows and applied to the k-th, the pooled score must beat the best
single member's (and the in-sample blend must not score below it). Otherwise the equal
average is used when it beats the best member, else the best member alone, with a note:
`weights=auto` never gives an OOF score below the best member's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from podium.errors import PodiumError
from podium.submission.members import Member, Predictions
from podium.submission.oof import better, combine_oof

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


def metric_score(task: str, metric: str, n_classes: int, k: int, truth: np.ndarray,
                 class_weights: np.ndarray | None = None) -> Score:
    """`metric` (torchmetrics, as podium scores the OOF: podium.model.metrics) of blended
    predictions (N, C) against `truth` (class indices, values or multi-hot rows); each row
    weighted by its class's weight under a test prior (`class_weights`)."""
    import torch

    from podium.model.metrics import task_metrics

    collection = task_metrics(task, n_classes, k, class_weights)
    if metric not in collection:
        raise PodiumError(f"metric.competition={metric} is not a {task} metric: weights=auto "
                          f"learns on one of {', '.join(collection.keys())}")
    scorer, target = collection[metric], torch.tensor(truth)  # a copy: the frame is read-only

    def score(blended: np.ndarray) -> float:
        preds = torch.as_tensor(blended, dtype=torch.float32)
        scorer.reset()
        scorer.update(preds[:, 0] if task == "regression" else preds, target)
        return float(scorer.compute())

    return score


def truth_of(oof: pd.DataFrame, class_names: Sequence[str], target_col: str,
             task: str) -> np.ndarray:
    """The OOF rows' true labels as the metrics take them."""
    from podium.run import label_col

    target_col = label_col(target_col, class_names)  # a class may be named like it
    if task == "regression":
        return oof[target_col].astype(float).to_numpy(dtype=np.float32)
    if task == "multilabel":
        from podium.data.labels import multi_hot, split_label_set

        sets = [split_label_set(cell) for cell in oof[target_col]]
        return multi_hot(sets, list(class_names), Path("oof.csv"), target_col)[0]
    index = {str(name): i for i, name in enumerate(class_names)}
    return oof[target_col].astype(str).map(index).to_numpy()


def folder_of(member: Member) -> Path:
    return Path(member.folder or member.run)


def folder_weights(members: Sequence[Member]) -> list[float]:
    """Each member's folder's weight (its folds' sum): an id predicted out of fold by one
    fold of each folder is averaged with the folders' weights, as the test set is."""
    totals: dict[Path, float] = {}
    for member in members:
        totals[folder_of(member)] = totals.get(folder_of(member), 0.0) + member.weight
    return [totals[folder_of(m)] for m in members]


def folder_oofs(members: Sequence[Member], chosen: Sequence[Predictions], data: DictConfig
                ) -> dict[Path, pd.DataFrame]:
    """Each folder's OOF predictions (its folds' rows together), ids sorted; every folder
    must have them, on the same rows."""
    from podium.io import check_same_ids

    by_folder: dict[Path, list] = {}
    for member, predictions in zip(members, chosen, strict=True):
        by_folder.setdefault(folder_of(member), []).append(predictions.oof)
    oofs = {}
    for folder, frames in by_folder.items():
        oof = combine_oof(frames, data.id_col, data.target_col)
        if oof is None:
            raise PodiumError(f"weights=auto learns the blend on out-of-fold predictions: "
                              f"{folder} has no oof.csv (trained without validation?); give "
                              f"weights=[...] or leave it out")
        oofs[folder] = oof.sort_values(data.id_col, kind="stable").reset_index(drop=True)
    first, ids = next(iter(oofs)), next(iter(oofs.values()))[data.id_col].tolist()
    for folder, oof in oofs.items():
        check_same_ids(folder / "oof.csv", oof[data.id_col].tolist(), ids,
                       f"{first}'s oof.csv", "weights=auto learns on rows every member "
                       "predicted out of fold: use members validated on the same rows (the "
                       "same data.n_folds and seed)")
    return oofs


def cross_fitted(learn: Callable[[np.ndarray], np.ndarray], stack: np.ndarray,
                 parts: list[np.ndarray]) -> np.ndarray:
    """Every part's rows blended with weights learned on the other parts (`learn` takes the
    row indices to learn on)."""
    pooled = np.zeros(stack.shape[1:])
    for held in parts:
        rest = np.setdiff1d(np.arange(stack.shape[1]), held)
        pooled[held] = np.tensordot(learn(rest), stack[:, held], axes=1)
    return pooled


def learn_weights(oofs: dict[Path, pd.DataFrame], class_names: Sequence[str], cfg: DictConfig,
                  prior: np.ndarray | None = None) -> dict:
    """The folders' weights and the evidence: every folder's OOF score, the equal average's,
    the learned blend's in-sample and cross-fitted; which weights are used and why."""
    from podium.model.metrics import infer_mode
    from podium.submission.crossfit import make_parts

    data, metric, k = cfg.data, cfg.metric.competition, cfg.metric.k
    task, mode = data.get("task", "multiclass"), infer_mode(metric)
    first = next(iter(oofs.values()))
    truth = truth_of(first, class_names, data.target_col, task)
    stack = np.stack([o[list(class_names)].to_numpy(dtype=np.float64) for o in oofs.values()])
    method = "nnls" if task == "regression" else "caruana"
    weights = None  # under a test prior (data.test_prior): per-class row weights
    if prior is not None:
        from podium.submission.postprocess import prior_weights

        weights = prior_weights(prior, truth, len(class_names))

    def learn(rows: np.ndarray) -> np.ndarray:
        if method == "nnls":
            return nnls_weights(stack[:, rows, 0], truth[rows])
        return caruana(stack[:, rows], metric_score(task, metric, len(class_names), k,
                                                    truth[rows], weights), metric)

    score = metric_score(task, metric, len(class_names), k, truth, weights)
    names = [str(f) for f in oofs]
    singles = [score(p) for p in stack]
    best = int(np.argmin(singles) if mode == "min" else np.argmax(singles))
    learned = learn(np.arange(stack.shape[1]))
    in_sample = score(np.tensordot(learned, stack, axes=1))
    equal = score(stack.mean(axis=0))
    labels = np.zeros(len(first), dtype=int) if task == "regression" else truth
    folded = next((o for o in oofs.values() if "fold" in o and o["fold"].notna().all()), first)
    parts = make_parts(folded, labels)  # a member's folds, else a seeded k-fold of the rows
    cross = score(cross_fitted(learn, stack, parts.held_out)) if parts.held_out else None
    if cross is not None and better(cross, singles[best], metric, strict=True) \
            and better(in_sample, singles[best], metric):
        used, weights = "learned", learned
    elif better(equal, singles[best], metric, strict=True):
        used, weights = "equal", np.full(len(stack), 1 / len(stack))
    else:
        used, weights = "best member", np.eye(len(stack))[best]
    return {"method": method, "metric": metric, "used": used,
            "weights": dict(zip(names, map(float, weights), strict=True)),
            "learned": dict(zip(names, map(float, learned), strict=True)),
            "members": dict(zip(names, singles, strict=True)), "best_member": names[best],
            "before": singles[best], "equal": equal, "after_in_sample": in_sample,
            "after_cross_fitted": cross, "cross_fitted_on": parts.how}


def blend_members(members: list[Member], chosen: Sequence[Predictions], cfg: DictConfig,
                  prior: np.ndarray | None = None) -> tuple[list[Member], dict]:
    """`weights=auto`: the members with their folder's learned weight (shared by its folds
    as they shared the given one) and the evidence for metrics.json."""
    oofs = folder_oofs(members, chosen, cfg.data)
    if len(oofs) < 2:
        folder = str(next(iter(oofs)))
        return members, {"used": "one member", "weights": {folder: 1.0}}
    class_names = [str(c) for c in chosen[0].test.columns[1:]]
    blend = learn_weights(oofs, class_names, cfg, prior)
    totals = folder_weights(members)
    return [replace(m, weight=blend["weights"][str(folder_of(m))] * m.weight / total)
            for m, total in zip(members, totals, strict=True)], blend


def blend_lines(blend: dict) -> list[str]:
    """What make submit prints about the learned weights."""
    weights = ", ".join(f"{name} {w:.3f}" for name, w in blend["weights"].items())
    if blend["used"] == "one member":
        return [f"weights=auto: one member, nothing to learn ({weights})"]
    metric = blend["metric"]
    cross = blend["after_cross_fitted"]
    crossed = (f"{cross:.4f} cross-fitted ({blend['cross_fitted_on']})" if cross is not None
               else f"not cross-fitted ({blend['cross_fitted_on']})")
    learned = ", ".join(f"{w:.3f}" for w in blend["learned"].values())
    lines = [f"blend ({blend['method']} on the OOF): learned weights [{learned}]; OOF {metric} "
             f"best member {blend['before']:.4f} ({blend['best_member']}), equal weights "
             f"{blend['equal']:.4f}, learned {blend['after_in_sample']:.4f} in-sample, "
             f"{crossed} -> {blend['used']} weights used"]
    if blend["used"] != "learned":
        instead = ("the equal average, which beats it, is" if blend["used"] == "equal"
                   else "the best member alone is")
        lines.append(f"note: the learned blend does not beat the best member on held-out "
                     f"rows: {instead} used")
    lines.append(f"weights: {weights}")
    return lines
