"""Scoring a submission file against an answer key: the demo competitions' "leaderboard".

A run scores its submission only where an answer key exists (`data.answers`: the demos'
held-back `answers.csv`); every real competition has none, and this returns nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from podium.errors import PodiumError
from podium.io import read_csv

LEADERBOARD_NAMES = {"f1_macro": "macro-F1", "f1_micro": "micro-F1", "mae": "MAE",
                     "auroc": "AUROC", "logloss": "log-loss", "acc": "accuracy",
                     "balanced_acc": "balanced accuracy", "f1_weighted": "weighted F1",
                     "f1": "F1 of the positive class", "f1_first": "F1 of the first class"}
# label metrics a run may compete on, scored on the file as well (scikit-learn, by name)
LABEL_SCORES = {"acc": ("accuracy_score", {}), "balanced_acc": ("balanced_accuracy_score", {}),
                "f1_weighted": ("f1_score", {"average": "weighted"}),
                "f1": ("f1_score", {"pos_label": 1}), "f1_first": ("f1_score", {"pos_label": 0})}


def answer_key(path: Path | None, id_col: str) -> pd.DataFrame | None:
    """The answer key (`data.answers`): id (each once) and the true label column; None when
    there is none (every real competition). Read before the submission is written, so a
    bad key stops the run with nothing written."""
    if path is None or not Path(path).is_file():
        return None
    answers = read_csv(Path(path), [id_col], "the answer key (data.answers)", id_col=id_col,
                       fix="set data.answers to the demo's answers.csv, or to null")
    if len(answers.columns) < 2:
        raise PodiumError(f"{path} has only the column '{id_col}': an answer key needs the "
                          f"true label column; set data.answers=null to score nothing")
    return answers


def leaderboard(submission_path: Path, answers: pd.DataFrame | None, id_col: str,
                task: str = "multiclass", metric: str | None = None) -> dict[str, float]:
    """The demo's "leaderboard": the submission scored against the held-back `answers`
    (answer_key) by what its shape asks for: MAE (regression), AUROC (a binary probability
    column), log-loss (one probability column per class), MAP@k (k labels per row), else
    macro-F1, and by the run's own label `metric` (accuracy, binary F1, ...: LABEL_SCORES)
    too, so its OOF score has a leaderboard to be compared with. {} when there is no answer
    key (every real competition)."""
    from sklearn import metrics

    from podium.data.labels import sort_labels

    if answers is None:
        return {}
    submission = read_csv(Path(submission_path), [id_col], "the submission", id_col=id_col)
    label_col = [c for c in answers.columns if c != id_col][0]
    merged = answers.merge(submission, on=id_col, suffixes=("", "_pred"))
    truth = merged[label_col]
    if task == "multilabel":  # label sets (an empty cell = none), or a 0/1 column per label
        return {"leaderboard/f1_micro": multilabel_f1(merged, submission, label_col, id_col)}
    if len(submission.columns) > 2:  # one probability column per class
        classes = [c for c in submission.columns if c != id_col]
        return {"leaderboard/logloss": float(metrics.log_loss(
            truth, merged[classes].astype(float).to_numpy(), labels=classes))}
    predicted = merged[f"{label_col}_pred"]
    if task == "regression":
        return {"leaderboard/mae": float(metrics.mean_absolute_error(
            truth.astype(float), predicted.astype(float)))}
    if task == "binary" and pd.to_numeric(predicted, errors="coerce").notna().all():
        positive = sort_labels(truth.tolist())[-1]
        return {"leaderboard/auroc": float(metrics.roc_auc_score(
            truth == positive, predicted.astype(float)))}
    ranked = predicted.str.split(" ")
    k = int(ranked.map(len).max())
    if k > 1:
        gains = [1 / (r.index(t) + 1) if t in r else 0.0 for r, t in zip(ranked, truth,
                                                                        strict=True)]
        return {f"leaderboard/map@{k}": float(np.mean(gains))}
    scores = {"leaderboard/f1_macro": float(metrics.f1_score(truth, predicted,
                                                             average="macro"))}
    if metric in LABEL_SCORES:
        name, kwargs = LABEL_SCORES[metric]
        if "pos_label" in kwargs:  # the positive class by its index among the sorted two
            kwargs = {"pos_label": sort_labels(truth.tolist())[kwargs["pos_label"]]}
        scores[f"leaderboard/{metric}"] = float(getattr(metrics, name)(truth, predicted,
                                                                      **kwargs))
    return scores


def multilabel_f1(merged: pd.DataFrame, submission: pd.DataFrame, label_col: str,
                  id_col: str) -> float:
    """Micro-F1 of the submitted label sets against the answers' (scikit-learn)."""
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import MultiLabelBinarizer

    true = merged[label_col].str.split()
    columns = [c for c in submission.columns if c != id_col]
    if len(columns) == 1:
        pred = merged[f"{label_col}_pred"].str.split()
    else:  # one 0/1 (or probability) column per label
        values = merged[columns].astype(float).to_numpy() > 0.5
        pred = [[c for c, on in zip(columns, row, strict=True) if on] for row in values]
    binarizer = MultiLabelBinarizer().fit([*true, *pred])
    return float(f1_score(binarizer.transform(true), binarizer.transform(pred),
                          average="micro"))


def leaderboard_lines(scores: dict[str, float]) -> list[str]:
    """`demo leaderboard macro-F1: 0.8854`, one line per leaderboard key."""
    lines = []
    for key, value in scores.items():
        if key.startswith("leaderboard/"):
            name = key.split("/", 1)[1]
            lines.append(f"demo leaderboard {LEADERBOARD_NAMES.get(name, name.upper())}: "
                         f"{value:.4f}")
    return lines
