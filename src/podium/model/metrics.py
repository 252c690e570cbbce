"""torchmetrics collections per task; `metric.monitor` (one key) picks the checkpoint.

Every collection takes what the module feeds it: class probabilities (N, C) and class
indices for `multiclass`/`binary`, predictions (N,) and float targets for `regression`.

- multiclass: accuracy, balanced accuracy (the mean recall of the classes in the truth),
  macro/weighted F1, macro precision/recall (averaged over the classes in the truth or the
  predictions, as scikit-learn), top-k accuracy and three rankings of the true class among
  the class scores (one relevant label per row, as Kaggle scores MAP@3): `map@k` (1/rank when
  rank <= k, else 0), `mrr` (1/rank), `ndcg@k` (1/log2(rank + 1) when rank <= k).
- both: `logloss` (Kaggle's clipped log-loss; minimised).
- binary: the same without top-k accuracy and the rankings (with two classes they only
  restate accuracy), plus AUROC and the F1 of the positive class.
- regression: MAE, MSE, RMSE, R2.
- multilabel (sigmoid probabilities (N, C), multi-hot targets; a label is predicted when its
  probability is above 0.5): F1 micro, macro and samples (each row's F1, averaged), mean
  average precision (macro, threshold-free), Hamming loss, subset accuracy (exact match).

Compute groups are explicit: torchmetrics' default (`compute_groups=True`) merges metrics
whose states happen to be equal after the first update, so on a first batch where every
true class ranks first, `mrr` would report `map@k`'s value for the whole epoch.

podium's own per-row metrics (the rankings, `logloss`, `f1_samples`) are torchmetrics'
MeanMetric over a per-row value (`RowMean`): its sum and count states, its DDP reduction.

Under a test prior (podium.prior, `data.test_prior`), each row of class c weighs
`class_weights[c]` = test_prior[c] / train_prior[c]: the label metrics come from a weighted
confusion matrix (`WeightedLabelScore`), the per-row ones are weighted means, top-k accuracy
a weighted mean of hits. Equal to scikit-learn's with `sample_weight`. AUROC compares each
class's rows with the others' and does not change when a whole class is reweighted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, open_dict
from torch import Tensor
from torchmetrics import Metric, MetricCollection
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

    def __init__(self, class_weights: Sequence[float] | None = None, **kwargs: Any) -> None:
        super().__init__(nan_strategy="disable", **kwargs)  # a NaN row makes a NaN mean
        self.set_dtype(torch.float64)
        # a row of class c weighs class_weights[c] (a test prior), else 1
        self.class_weights = (None if class_weights is None else
                              torch.as_tensor(np.asarray(class_weights), dtype=torch.float64))

    def row_values(self, preds: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def update(self, preds: Tensor, target: Tensor) -> None:
        values = self.row_values(preds, target).to(self.dtype)
        if self.class_weights is None:
            return super().update(values)
        weights = self.class_weights.to(values.device)[target.long().view(-1)]
        # MeanMetric.update(values, weights) is the call, but under nan_strategy="disable"
        # torchmetrics replaces the weights by ones (checked: 1.9.0): its two states directly
        self.mean_value += (values * weights).sum()
        self.weight += weights.sum()

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


class TopKHit(RowMean):
    """Top-k accuracy as a mean of per-row hits (the true class among the k highest
    scores; ties count against it): weighted under a test prior."""

    higher_is_better = True

    def __init__(self, k: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.k = k

    def row_values(self, scores: Tensor, target: Tensor) -> Tensor:
        true = scores.gather(1, target.long().view(-1, 1))
        return ((scores > true).sum(dim=1) < self.k).to(torch.float64)


def confusion_score(metric: str, cm: np.ndarray, present: np.ndarray | None = None) -> float:
    """A label metric (LABEL_METRICS) of a confusion matrix (rows: true class, columns:
    predicted; counts or summed row weights), as scikit-learn computes it (zero_division=0).

    The macro averages run over the classes `present` in the truth or the predictions
    (scikit-learn's `labels=None`: the union of both; torchmetrics drops the same classes):
    a class that neither the rows nor the model hold scores nothing, rather than a 0 that
    pulls the mean down. `present` (C,) bool, when the rows are weighted: a class whose rows
    all weigh 0 is still present; default: the classes whose row or column is not empty.
    Balanced accuracy averages the recall of the classes in the truth, as scikit-learn's
    `balanced_accuracy_score` (whose weighted class totals must be positive)."""
    cm = np.asarray(cm, dtype=float)
    tp, predicted, actual = np.diag(cm), cm.sum(0), cm.sum(1)
    present = (predicted + actual > 0) if present is None else np.asarray(present, bool)
    ratio = lambda a, b: np.divide(a, b, out=np.zeros_like(a), where=b > 0)  # noqa: E731
    mean = lambda v, keep: float(v[keep].mean()) if keep.any() else 0.0  # noqa: E731
    f1 = ratio(2 * tp, predicted + actual)

    def positive_f1(index: int) -> float:
        if cm.shape != (2, 2):
            raise PodiumError(f"{metric} is the F1 of a binary task's positive class; with "
                              f"{len(cm)} classes use f1_macro or f1_weighted")
        return f1[index]

    scores = {
        "f1": lambda: positive_f1(1),
        "f1_first": lambda: positive_f1(0),
        "acc": lambda: tp.sum() / cm.sum() if cm.sum() > 0 else 0.0,
        "f1_macro": lambda: mean(f1, present),
        "f1_weighted": lambda: (f1 * actual).sum() / actual.sum() if actual.sum() > 0 else 0.0,
        "precision_macro": lambda: mean(ratio(tp, predicted), present),
        "recall_macro": lambda: mean(ratio(tp, actual), present),
        "balanced_acc": lambda: mean(ratio(tp, actual), actual > 0),
    }
    if metric not in scores:
        raise PodiumError(f"{metric} is not a label metric: use one of {', '.join(scores)}")
    return float(scores[metric]())


class WeightedLabelScore(Metric):
    """A label metric (`metric`: acc, f1_macro, ...) of the confusion matrix of
    argmax(probabilities), each row counted with its class's weight (`class_weights`; None:
    1); which classes the truth or the predictions hold is counted apart (`present`), so
    that a class whose rows weigh 0 is averaged as scikit-learn averages it."""

    full_state_update = False

    def __init__(self, metric: str, class_weights: Sequence[float] | None = None,
                 num_classes: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        n = len(class_weights) if class_weights is not None else int(num_classes or 0)
        self.metric, self.num_classes = metric, n
        self.class_weights = torch.as_tensor(np.ones(n) if class_weights is None
                                             else np.asarray(class_weights), dtype=torch.float64)
        self.add_state("confusion", torch.zeros(n, n, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("present", torch.zeros(n, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, probs: Tensor, target: Tensor) -> None:
        target, pred = target.long().view(-1), probs.argmax(dim=1)
        cells = target * self.num_classes + pred
        weights = self.class_weights.to(probs.device)[target]
        self.confusion += torch.bincount(cells, weights, minlength=self.num_classes ** 2
                                         ).view(self.num_classes, -1).to(self.confusion.dtype)
        self.present += (torch.bincount(target, minlength=self.num_classes)
                         + torch.bincount(pred, minlength=self.num_classes)).to(self.present.dtype)

    def compute(self) -> Tensor:
        return torch.tensor(confusion_score(self.metric, self.confusion.cpu().numpy(),
                                            self.present.cpu().numpy() > 0),
                            dtype=torch.float32)


def classification_metrics(num_classes: int, k: int = 3, task: str = "multiclass",
                           class_weights: Sequence[float] | None = None) -> MetricCollection:
    """Accuracy hides a class that is never predicted; the macro averages do not.
    `class_weights`: each row of class c weighs class_weights[c] (a test prior)."""
    top = max(1, min(k, num_classes))
    per_class = ["balanced_acc", "f1_macro", "f1_weighted", "precision_macro", "recall_macro"]
    if class_weights is None:  # torchmetrics' own; the per-class stat scores (tp, fp, tn, fn
        # per class) are the same state for these four whatever the data
        metrics = {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            # scikit-learn's balanced accuracy averages the classes in the truth only;
            # torchmetrics' macro recall also those only predicted
            "balanced_acc": WeightedLabelScore("balanced_acc", num_classes=num_classes),
            "f1_macro": MulticlassF1Score(num_classes, average="macro"),
            "f1_weighted": MulticlassF1Score(num_classes, average="weighted"),
            "precision_macro": MulticlassPrecision(num_classes, average="macro"),
            "recall_macro": MulticlassRecall(num_classes, average="macro"),
        }
        groups = [per_class[1:]]
    else:  # one weighted confusion matrix for the six label metrics
        metrics = {name: WeightedLabelScore(name, class_weights) for name in ["acc", *per_class]}
        groups = [["acc", *per_class]]
    metrics["logloss"] = LogLoss(class_weights=class_weights)  # every other: its own state
    if task != "binary":  # the true class's rank: with two classes, accuracy says it all
        metrics.update({
            f"acc_top{k}": TopKHit(top, class_weights=class_weights) if class_weights is not None
            else MulticlassAccuracy(num_classes, top_k=top, average="micro"),
            f"map@{k}": TrueClassRank("map", k, class_weights=class_weights),
            "mrr": TrueClassRank("mrr", class_weights=class_weights),
            f"ndcg@{k}": TrueClassRank("ndcg", k, class_weights=class_weights),
        })
    if task == "binary":  # F1 of the positive class: the second class, or the first
        for name in BINARY_F1:
            metrics[name] = WeightedLabelScore(name, class_weights, num_classes=num_classes)
        groups.append(list(BINARY_F1))
        # With two softmax outputs, class 1's one-vs-rest AUROC equals class 0's: the macro
        # average is the binary AUROC of p(class 1). Reweighting a whole class leaves it as
        # it is: no class weights.
        metrics["auroc"] = MulticlassAUROC(num_classes, average="macro")
    return MetricCollection(metrics, compute_groups=groups)


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


def task_metrics(task: str, num_classes: int, k: int = 3,
                 class_weights: Sequence[float] | None = None) -> MetricCollection:
    """The collection for `data.task` (`class_weights`: classification under a test prior)."""
    check_task(task)
    if task == "regression":
        return regression_metrics()
    if task == "multilabel":
        return multilabel_metrics(num_classes)
    return classification_metrics(num_classes, k, task, class_weights)


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
                       "macro_f1": "f1_macro", "log_loss": "logloss",
                       "auc": "auroc", "roc_auc": "auroc", "rmse": "rmse",
                       "binary_f1": "f1"}
# binary F1 (scikit-learn's f1_score with its default average="binary"): the F1 of the
# positive class, by its index among the two sorted classes
BINARY_F1 = {"f1": 1, "f1_first": 0}
LABEL_METRICS = ("acc", "balanced_acc", "f1_macro", "f1_weighted", "precision_macro",
                 "recall_macro", *BINARY_F1)  # scored on labels: thresholds and offsets help


def competition_key(name: str, task: str = "multiclass") -> str:
    """`accuracy` -> `acc`, `MAP@5` -> `map@5`: the key podium logs as `val/<key>`. `f1`
    is what the task's competitions mean by it: a binary task's F1 of the positive class
    (`f1`), the macro average over N classes or labels (`f1_macro`)."""
    key = str(name).strip().lower()
    if key == "f1":
        return "f1" if task == "binary" else "f1_macro"
    return COMPETITION_ALIASES.get(key, key)


def binary_f1_key(cfg: DictConfig, announce: bool = False) -> str:
    """`f1` (the positive class is the second of the two sorted classes) or `f1_first`: the
    positive class podium.data.detect.positive_class finds, said in one line."""
    from pathlib import Path

    from podium.data.detect import positive_class

    data = cfg.data
    index, why = positive_class(Path(str(data.get("root") or "")),
                                data.get("train_csv", "train.csv"),
                                data.get("target_col", "label"), data.get("positive_class"))
    if announce:
        print(f"metric: binary F1 of the positive class {why}", flush=True)
    return {v: k for k, v in BINARY_F1.items()}[index]


def labels_metric(cfg: DictConfig, task: str, announce: bool = False) -> str | None:
    """With no metric named, a binary folder whose sample submission holds whole-number
    labels (0/1: Titanic) is scored by what its file will hold: `val/acc`, said in one line
    (AUROC, the binary default, scores probabilities, which such a sample contradicts).
    None: the task's default."""
    from pathlib import Path

    from podium.data.detect import sample_labels

    data = cfg.get("data")
    fmt = (cfg.get("submission") or {}).get("format", "auto")
    if task != "binary" or not data or fmt != "auto":
        return None
    held = sample_labels(Path(str(data.get("root") or "")),
                         data.get("sample_submission", "sample_submission.csv"),
                         data.get("id_col", "id"), data.get("train_csv", "train.csv"),
                         data.get("target_col", "label"))
    if held is None:
        return None
    if announce:
        print(f"metric: accuracy (no metric.competition named, and the sample submission "
              f"holds labels ({', '.join(held)}), which auroc does not score; name the "
              f"leaderboard's with metric.competition=...)", flush=True)
    return "val/acc"


def resolve_metric(cfg: DictConfig, announce: bool = False) -> DictConfig:
    """Fill the metric keys in place, once, before anything reads them (callbacks,
    scheduler, sweep, submission):
    - `metric.competition` (null: the task's default; a binary folder whose sample
      submission holds labels: accuracy, labels_metric): the leaderboard's metric. It drives
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
            cfg.metric.competition = (cfg.metric.get("monitor") or labels_metric(cfg, task,
                                                                                 announce)
                                      or DEFAULT_MONITOR[task]).rsplit("/", 1)[-1]
        cfg.metric.competition = competition_key(cfg.metric.competition, task)
        if cfg.metric.competition == "f1" and task == "binary" and cfg.get("data"):
            cfg.metric.competition = binary_f1_key(cfg, announce)
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
