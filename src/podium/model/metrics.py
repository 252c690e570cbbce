"""torchmetrics collections per task; `metric.monitor` (one key) picks the checkpoint.

Every collection takes what the module feeds it: class probabilities (N, C) and class
indices for `multiclass`/`binary`, predictions (N,) and float targets for `regression`.

- multiclass: accuracy, balanced accuracy (= macro recall), macro/weighted F1, macro
  precision/recall, top-k accuracy and three rankings of the true class among the class
  scores (one relevant label per row, as Kaggle scores MAP@3): `map@k` (1/rank when
  rank <= k, else 0), `mrr` (1/rank), `ndcg@k` (1/log2(rank + 1) when rank <= k).
- both: `logloss` (Kaggle's clipped log-loss; minimised).
- binary: the same (two logits, softmax; k is capped at 2) plus AUROC.
- regression: MAE, MSE, RMSE, R2.
- multilabel (sigmoid probabilities (N, C), multi-hot targets; a label is predicted when its
  probability is above 0.5): F1 micro, macro and samples (each row's F1, averaged), mean
  average precision (macro, threshold-free), Hamming loss, subset accuracy (exact match).

Compute groups are explicit: torchmetrics' default (`compute_groups=True`) merges metrics
whose states happen to be equal after the first update, so on a first batch where every
true class ranks first, `mrr` would report `map@k`'s value for the whole epoch.

podium's own per-row metrics (the rankings, `logloss`, `f1_samples`) are torchmetrics'
MeanMetric over a per-row value (`RowMean`): its sum and count states, its DDP reduction.
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig, open_dict
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.aggregation import MeanMetric
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
    MultilabelAveragePrecision,
    MultilabelExactMatch,
    MultilabelF1Score,
    MultilabelHammingDistance,
)
from torchmetrics.regression import (
    MeanAbsoluteError,
    MeanSquaredError,
    MeanSquaredLogError,
    R2Score,
)

from podium.errors import PodiumError
from podium.spec import check_task

DEFAULT_MONITOR = {"multiclass": "val/f1_macro", "binary": "val/auroc", "regression": "val/mae",
                   "multilabel": "val/f1_micro"}
MINIMISED = ("loss", "logloss", "mae", "mse", "rmse", "rmsle")  # every other key is a score
LOGLOSS_EPS = 1e-15  # Kaggle's clipping of predicted probabilities


class RowMean(MeanMetric):
    """The mean over rows of a per-row value (`row_values`): torchmetrics' MeanMetric keeps
    the sum and the row count (both summed across processes under DDP), in float64 so a
    long epoch of small values loses nothing; the result is float32 like every other metric."""

    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(nan_strategy="disable", **kwargs)  # a NaN row makes a NaN mean
        self.set_dtype(torch.float64)

    def row_values(self, preds: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def update(self, preds: Tensor, target: Tensor) -> None:
        super().update(self.row_values(preds, target))

    def compute(self) -> Tensor:
        return super().compute().float()


class TrueClassRank(RowMean):
    """Mean over rows of a function of the true class's rank among the class scores.

    `kind`: "map" (MAP@k with one relevant label: 1/rank if rank <= k else 0), "mrr"
    (1/rank, any rank) or "ndcg" (NDCG@k with one relevant label: the ideal DCG is 1, so
    1/log2(rank + 1) if rank <= k else 0). Ties count against the true class.
    """

    higher_is_better = True

    def __init__(self, kind: str, k: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if kind not in ("map", "mrr", "ndcg"):
            raise ValueError(f"kind must be map, mrr or ndcg, not {kind}")
        self.kind, self.k = kind, k

    def row_values(self, scores: Tensor, target: Tensor) -> Tensor:
        true = scores.gather(1, target.long().view(-1, 1))
        rank = (scores >= true).sum(dim=1).to(torch.float64)  # 1 = the true class is on top
        if self.kind == "ndcg":
            gain = 1.0 / torch.log2(rank + 1.0)
        else:
            gain = 1.0 / rank
        if self.k is not None and self.kind != "mrr":
            gain = torch.where(rank <= self.k, gain, torch.zeros_like(gain))
        return gain


class LogLoss(RowMean):
    """Kaggle's multi-class log-loss: probabilities clipped to [1e-15, 1 - 1e-15] and each
    row rescaled to sum to one, then the mean of -log p(true class). Binary (two columns)
    is the binary log-loss."""

    higher_is_better = False

    def row_values(self, probs: Tensor, target: Tensor) -> Tensor:
        probs = probs.to(torch.float64).clamp(LOGLOSS_EPS, 1 - LOGLOSS_EPS)
        probs = probs / probs.sum(dim=1, keepdim=True)
        return -probs.gather(1, target.long().view(-1, 1)).log().view(-1)


def classification_metrics(num_classes: int, k: int = 3, task: str = "multiclass"
                           ) -> MetricCollection:
    """Accuracy hides a class that is never predicted; the macro averages do not."""
    top = max(1, min(k, num_classes))
    metrics = {
        "acc": MulticlassAccuracy(num_classes, average="micro"),
        "balanced_acc": MulticlassRecall(num_classes, average="macro"),
        "f1_macro": MulticlassF1Score(num_classes, average="macro"),
        "f1_weighted": MulticlassF1Score(num_classes, average="weighted"),
        "precision_macro": MulticlassPrecision(num_classes, average="macro"),
        "recall_macro": MulticlassRecall(num_classes, average="macro"),
        f"acc_top{k}": MulticlassAccuracy(num_classes, top_k=top, average="micro"),
        f"map@{k}": TrueClassRank("map", k),
        "mrr": TrueClassRank("mrr"),
        f"ndcg@{k}": TrueClassRank("ndcg", k),
        "logloss": LogLoss(),
    }
    if task == "binary":
        # With two softmax outputs, class 1's one-vs-rest AUROC equals class 0's: the macro
        # average is the binary AUROC of p(class 1).
        metrics["auroc"] = MulticlassAUROC(num_classes, average="macro")
    # The per-class stat scores (tp, fp, tn, fn per class) are the same state for these
    # five whatever the data; every other metric keeps its own state.
    per_class = ["balanced_acc", "f1_macro", "f1_weighted", "precision_macro", "recall_macro"]
    return MetricCollection(metrics, compute_groups=[per_class])


class SamplesF1(RowMean):
    """scikit-learn's `f1_score(average="samples", zero_division=1)`: each row's F1 between
    its predicted (probability > `threshold`) and true label sets, averaged over rows. A row
    with no true and no predicted label scores 1: predicting nothing there is right."""

    higher_is_better = True

    def __init__(self, threshold: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threshold = threshold

    def row_values(self, scores: Tensor, target: Tensor) -> Tensor:
        predicted, true = scores > self.threshold, target > 0.5
        both = (predicted & true).sum(dim=1).to(torch.float64)
        sizes = (predicted.sum(dim=1) + true.sum(dim=1)).to(torch.float64)
        return torch.where(sizes > 0, 2 * both / sizes.clamp_min(1), torch.ones_like(sizes))


class MultilabelMAP(MultilabelAveragePrecision):
    """Macro average precision over the labels; takes the float multi-hot targets the loss
    takes (torchmetrics' curve metrics want integer targets)."""

    def update(self, preds: Tensor, target: Tensor) -> None:
        super().update(preds, (target > 0.5).long())


def multilabel_metrics(num_labels: int) -> MetricCollection:
    """Micro-F1 counts every (image, label) decision alike; macro-F1 weighs rare labels as
    much as common ones; samples-F1 scores each image's label set; mAP needs no threshold."""
    return MetricCollection({
        "f1_micro": MultilabelF1Score(num_labels, average="micro"),
        "f1_macro": MultilabelF1Score(num_labels, average="macro"),
        "f1_samples": SamplesF1(),
        "map": MultilabelMAP(num_labels, average="macro"),
        "hamming_loss": MultilabelHammingDistance(num_labels, average="micro"),
        "subset_acc": MultilabelExactMatch(num_labels),
        # one per-label (tp, fp, tn, fn) state for these three whatever the data
    }, compute_groups=[["f1_micro", "f1_macro", "hamming_loss"]])


class RootMeanSquaredLogError(MeanSquaredLogError):
    """RMSLE, as Kaggle scores prices and counts: sqrt(mean((log1p(p) - log1p(y))^2)), with
    predictions below zero scored as zero (a submission would be clipped the same way)."""

    def update(self, preds: Tensor, target: Tensor) -> None:
        super().update(preds.clamp_min(0), target)

    def compute(self) -> Tensor:
        return super().compute().sqrt()


def regression_metrics() -> MetricCollection:
    return MetricCollection({
        "mae": MeanAbsoluteError(),
        "mse": MeanSquaredError(),
        "rmse": MeanSquaredError(squared=False),
        "rmsle": RootMeanSquaredLogError(),
        "r2": R2Score(),
    }, compute_groups=[["mse", "rmse"]])  # one sum of squared errors; the others their own


def task_metrics(task: str, num_classes: int, k: int = 3) -> MetricCollection:
    """The collection for `data.task`."""
    check_task(task)
    if task == "regression":
        return regression_metrics()
    if task == "multilabel":
        return multilabel_metrics(num_classes)
    return classification_metrics(num_classes, k, task)


def never_logged(key: str, logged, setting: str = "metric.monitor") -> str:
    """The one message for a monitored key nobody logs (checkpoint, plateau, sweep)."""
    return (f"{setting}={key} was never logged; logged keys: "
            f"{', '.join(sorted(logged)) or 'none'}; set {setting} to one of them")


def infer_mode(monitor: str) -> str:
    """min for losses and errors (`val/loss`, `val/mae`, ...), max for scores."""
    name = monitor.rsplit("/", 1)[-1]
    return "min" if name in MINIMISED or name.endswith("_loss") else "max"


# Spellings a competition page uses -> podium's key (the metric's name after `val/`).
COMPETITION_ALIASES = {"accuracy": "acc", "balanced_accuracy": "balanced_acc",
                       "macro_f1": "f1_macro", "f1": "f1_macro", "log_loss": "logloss",
                       "auc": "auroc", "roc_auc": "auroc", "rmse": "rmse"}
LABEL_METRICS = ("acc", "balanced_acc", "f1_macro", "f1_weighted", "precision_macro",
                 "recall_macro")  # scored on predicted labels: thresholds and offsets help


def competition_key(name: str) -> str:
    """`accuracy` -> `acc`, `MAP@5` -> `map@5`: the key podium logs as `val/<key>`."""
    key = str(name).strip().lower()
    return COMPETITION_ALIASES.get(key, key)


def resolve_metric(cfg: DictConfig) -> DictConfig:
    """Fill the metric keys in place, once, before anything reads them (callbacks,
    scheduler, sweep, submission):
    - `metric.competition` (null: the task's default): the leaderboard's metric. It drives
      everything below unless they are set explicitly, plus the OOF score, the
      post-processing objective and (auto) the submission format;
    - `metric.k` from a `map@k` competition (else 3);
    - `metric.monitor` (null: `val/<competition>`), `metric.mode` (null: inferred)."""
    task = cfg.data.get("task", "multiclass") if cfg.get("data") else "multiclass"
    check_task(task)
    with open_dict(cfg):
        if cfg.get("metric") is None:
            cfg.metric = {}
        if not cfg.metric.get("competition"):
            cfg.metric.competition = (cfg.metric.get("monitor") or DEFAULT_MONITOR[task]
                                      ).rsplit("/", 1)[-1]
        cfg.metric.competition = competition_key(cfg.metric.competition)
        if cfg.metric.competition.startswith("map@"):
            cfg.metric.k = int(cfg.metric.competition.split("@")[1])
        if not cfg.metric.get("monitor"):
            cfg.metric.monitor = f"val/{cfg.metric.competition}"
        if not cfg.metric.get("mode"):
            cfg.metric.mode = infer_mode(cfg.metric.monitor)
        if cfg.metric.get("k") is None:
            cfg.metric.k = 3
        plateau = (cfg.get("scheduler") or {}).get("scheduler") or {}
        if "mode" in plateau and plateau.mode is None and cfg.scheduler.get("monitor"):
            plateau.mode = infer_mode(cfg.scheduler.monitor)  # ReduceLROnPlateau
    if cfg.metric.mode not in ("min", "max"):
        raise PodiumError(f"metric.mode={cfg.metric.mode} must be min, max or null (inferred)")
    return cfg
