"""Every metric against scikit-learn (or a hand computation), and metric.monitor/mode."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn import metrics as sk

from conftest import image_spec, make_cfg
from podium.model.metrics import TrueClassRank, infer_mode, resolve_metric, task_metrics


@pytest.fixture(scope="module")
def multiclass():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=300).astype(np.float32)
    target = rng.integers(0, 5, size=300)
    target[:60] = probs[:60].argmax(1)  # better than chance, so the scores differ
    values = task_metrics("multiclass", 5, k=3)(torch.from_numpy(probs), torch.from_numpy(target))
    return probs, target, {k: float(v) for k, v in values.items()}


def test_multiclass_metrics_equal_scikit_learn(multiclass):
    probs, target, got = multiclass
    pred = probs.argmax(1)
    expected = {
        "acc": sk.accuracy_score(target, pred),
        "balanced_acc": sk.balanced_accuracy_score(target, pred),
        "f1_macro": sk.f1_score(target, pred, average="macro"),
        "f1_weighted": sk.f1_score(target, pred, average="weighted"),
        "precision_macro": sk.precision_score(target, pred, average="macro"),
        "recall_macro": sk.recall_score(target, pred, average="macro"),
        "acc_top3": sk.top_k_accuracy_score(target, probs, k=3, labels=range(5)),
        "logloss": sk.log_loss(target, probs.astype(np.float64), labels=range(5)),
    }
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-5), name
    assert got["f1_weighted"] != pytest.approx(got["f1_macro"], abs=1e-4)


def test_ranking_metrics_equal_hand_computed_values():
    scores = torch.tensor([
        [0.1, 0.6, 0.2, 0.1],   # true 1: rank 1
        [0.5, 0.3, 0.1, 0.1],   # true 1: rank 2
        [0.4, 0.3, 0.2, 0.1],   # true 2: rank 3
        [0.4, 0.3, 0.2, 0.1],   # true 3: rank 4 (outside k = 3)
    ])
    target = torch.tensor([1, 1, 2, 3])
    ranks = [1, 2, 3, 4]
    map3 = (1 + 1 / 2 + 1 / 3 + 0) / 4
    mrr = (1 + 1 / 2 + 1 / 3 + 1 / 4) / 4
    ndcg3 = (1 + 1 / math.log2(3) + 1 / math.log2(4) + 0) / 4
    assert [int((s >= s[t]).sum()) for s, t in zip(scores, target, strict=True)] == ranks
    got = {k: float(v) for k, v in task_metrics("multiclass", 4, k=3)(scores, target).items()}
    assert got["map@3"] == pytest.approx(map3)
    assert got["mrr"] == pytest.approx(mrr)
    assert got["ndcg@3"] == pytest.approx(ndcg3)
    # Accumulates over batches like every torchmetrics metric.
    metric = TrueClassRank("map", k=3)
    metric.update(scores[:2], target[:2])
    metric.update(scores[2:], target[2:])
    assert float(metric.compute()) == pytest.approx(map3)
    # k = 1: MAP@1 is plain accuracy.
    top1 = task_metrics("multiclass", 4, k=1)(scores, target)
    assert float(top1["map@1"]) == pytest.approx(0.25) == float(top1["acc_top1"])


def test_binary_auroc_equals_scikit_learn():
    rng = np.random.default_rng(1)
    target = rng.integers(0, 2, size=200)
    p1 = np.clip(0.3 * target + rng.random(200) * 0.7, 0, 1).astype(np.float32)
    probs = torch.from_numpy(np.stack([1 - p1, p1], axis=1))
    got = task_metrics("binary", 2, k=3)(probs, torch.from_numpy(target))
    assert float(got["auroc"]) == pytest.approx(sk.roc_auc_score(target, p1), abs=1e-5)
    assert float(got["acc"]) == pytest.approx(sk.accuracy_score(target, p1 > 0.5), abs=1e-6)


def test_logloss_clips_like_kaggle():
    """A confident wrong prediction costs -log(1e-15), not infinity."""
    probs = torch.tensor([[1.0, 0.0], [0.25, 0.75]])
    target = torch.tensor([1, 1])
    expected = (-math.log(1e-15 / (1 + 1e-15)) - math.log(0.75)) / 2
    got = task_metrics("binary", 2, k=1)(probs, target)["logloss"]
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_regression_metrics_equal_scikit_learn():
    rng = np.random.default_rng(2)
    target = rng.normal(100, 30, size=150).astype(np.float32)
    pred = (target + rng.normal(0, 20, size=150)).astype(np.float32)
    got = task_metrics("regression", 1)(torch.from_numpy(pred), torch.from_numpy(target))
    assert set(got) == {"mae", "mse", "rmse", "rmsle", "r2"}
    assert float(got["rmsle"]) == pytest.approx(  # negative predictions are scored as 0
        sk.root_mean_squared_log_error(target, pred.clip(0)), rel=1e-5)
    assert float(got["mae"]) == pytest.approx(sk.mean_absolute_error(target, pred), rel=1e-5)
    assert float(got["mse"]) == pytest.approx(sk.mean_squared_error(target, pred), rel=1e-5)
    assert float(got["rmse"]) == pytest.approx(np.sqrt(sk.mean_squared_error(target, pred)),
                                               rel=1e-5)
    assert float(got["r2"]) == pytest.approx(sk.r2_score(target, pred), rel=1e-4)


@pytest.mark.parametrize(("key", "mode"), [
    ("val/loss", "min"), ("val/mae", "min"), ("val/logloss", "min"), ("val/rmse", "min"),
    ("train/mse", "min"),
    ("val/f1_macro", "max"), ("val/map@3", "max"), ("val/auroc", "max"), ("val/r2", "max"),
])
def test_mode_is_inferred_from_the_key(key, mode):
    assert infer_mode(key) == mode

@pytest.mark.parametrize("name", ["map@3", "mrr", "ndcg@3", "logloss"])
def test_row_means_merge_like_ddp_into_the_whole_data_mean(name, multiclass):
    """Two processes' states (uneven shares) merged with the states' own reductions, as a DDP
    sync merges them, give the mean over every row, not the mean of the two means."""
    probs, target, whole = multiclass
    probs, target = torch.from_numpy(probs), torch.from_numpy(target)
    first, second = (task_metrics("multiclass", 5, k=3)[name] for _ in range(2))
    first.update(probs[:50], target[:50])
    second.update(probs[50:], target[50:])
    halves = (float(first.clone().compute()) + float(second.compute())) / 2
    first.merge_state(second)
    assert float(first.compute()) == pytest.approx(whole[name], abs=1e-6)
    assert halves != pytest.approx(whole[name], abs=1e-4)  # uneven shares: the merge matters
    assert first.higher_is_better is (name != "logloss")
    assert first.compute().dtype == torch.float32
    if name == "logloss":
        assert whole[name] == pytest.approx(sk.log_loss(target.numpy(), probs.double().numpy(),
                                                        labels=range(5)), abs=1e-5)



def test_monitor_and_mode_resolve_once_into_every_consumer(tmp_path):
    cfg = resolve_metric(make_cfg(tmp_path, ["data.task=regression", "callbacks=early_stopping",
                                             "scheduler=plateau"]))
    assert (cfg.metric.monitor, cfg.metric.mode) == ("val/mae", "min")
    assert cfg.callbacks.model_checkpoint.mode == cfg.callbacks.early_stopping.mode == "min"
    assert cfg.callbacks.model_checkpoint.monitor == cfg.scheduler.monitor == "val/mae"
    assert cfg.scheduler.scheduler.mode == "min"
    cfg = resolve_metric(make_cfg(tmp_path, ["metric.monitor=val/map@3"]))
    assert cfg.metric.mode == "max"
    cfg = resolve_metric(make_cfg(tmp_path, ["metric.monitor=val/map@3", "metric.mode=min"]))
    assert cfg.metric.mode == "min"  # an explicit mode wins
    assert resolve_metric(make_cfg(tmp_path, ["data.task=binary"])).metric.monitor == "val/auroc"


def test_epoch_training_metrics_equal_the_whole_epoch_by_hand(monkeypatch):
    """Batches are buffered and the metrics updated a few at a time: the epoch's loss, accuracy
    and macro-F1 still equal torch's cross_entropy and scikit-learn over every sample."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    import podium.model.module
    from podium.model.module import CompetitionModule

    # flushes mid-epoch and at its end
    monkeypatch.setattr(podium.model.module, "TRAIN_METRICS_EVERY", 2)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (33, 1, 4, 4), dtype=torch.uint8)
    labels = torch.randint(0, 3, (33,))
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    module = CompetitionModule(  # lr 0: the network after fit is the one every step used
        net=net, loss=torch.nn.CrossEntropyLoss(), spec=image_spec(["a", "b", "c"]),
        optimizer=lambda params: torch.optim.SGD(params.parameters(), lr=0.0))
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    loader = DataLoader(TensorDataset(images, labels), batch_size=7)  # 7, 7, 7, 7, 5
    trainer.fit(module, loader)

    with torch.no_grad():
        logits = net((images.float() / 255 - 0.5) / 0.5)
    predicted = logits.argmax(dim=1).numpy()
    logged = trainer.callback_metrics
    assert logged["train/loss_epoch"].item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-5)
    assert logged["train/acc"].item() == pytest.approx(sk.accuracy_score(labels, predicted))
    assert logged["train/f1_macro"].item() == pytest.approx(
        sk.f1_score(labels, predicted, average="macro"), rel=1e-5)
    assert module.train_batches == []


def rank_of_truth(probs: np.ndarray, target: np.ndarray) -> np.ndarray:
    """1 + the number of other classes scored at least as high as the true one (ties count
    against it, as in podium's docs)."""
    true = probs[np.arange(len(target)), target][:, None]
    return (probs >= true).sum(axis=1)


def expected_values(task: str, probs: np.ndarray, target: np.ndarray, k: int) -> dict:
    """Every key of the task's collection computed by hand / scikit-learn over all rows."""
    pred = probs.argmax(1)
    rank = rank_of_truth(probs, target)
    expected = {
        "acc": sk.accuracy_score(target, pred),
        "balanced_acc": sk.balanced_accuracy_score(target, pred),
        "f1_macro": sk.f1_score(target, pred, average="macro"),
        "f1_weighted": sk.f1_score(target, pred, average="weighted"),
        "precision_macro": sk.precision_score(target, pred, average="macro", zero_division=0),
        "recall_macro": sk.recall_score(target, pred, average="macro"),
        f"acc_top{k}": float(np.mean(rank <= k)),
        f"map@{k}": float(np.mean(np.where(rank <= k, 1.0 / rank, 0.0))),
        "mrr": float(np.mean(1.0 / rank)),
        f"ndcg@{k}": float(np.mean(np.where(rank <= k, 1.0 / np.log2(rank + 1), 0.0))),
        "logloss": sk.log_loss(target, probs, labels=range(probs.shape[1])),
    }
    if task == "binary":  # the true class's rank restates accuracy: not computed
        for key in (f"acc_top{k}", f"map@{k}", "mrr", f"ndcg@{k}"):
            del expected[key]
        expected["auroc"] = sk.roc_auc_score(target, probs[:, 1])
        expected["f1"] = sk.f1_score(target, pred)  # the positive class: the second
        expected["f1_first"] = sk.f1_score(target, pred, pos_label=0)
    return expected


@pytest.mark.parametrize(("task", "n_classes", "k"), [("multiclass", 6, 3), ("binary", 2, 1)])
def test_no_metric_takes_another_ones_value_when_first_batches_agree(task, n_classes, k):
    """torchmetrics merges metrics whose states are equal after the first update into one
    compute group (its default): a first batch on which every true class is ranked first
    makes acc = acc_top{k} and map@k = mrr = ndcg@k there. Later batches differ; every key
    must still equal its own computation over all rows."""
    rng = np.random.default_rng(3)
    first_target = rng.integers(0, n_classes, size=40)
    first = rng.dirichlet(np.ones(n_classes), size=40)
    first[np.arange(40), first_target] += 2.0  # the truth on top in every row
    later_target = rng.integers(0, n_classes, size=200)
    later = rng.dirichlet(np.ones(n_classes), size=200)
    probs = np.concatenate([first, later]) / np.concatenate([first, later]).sum(1, keepdims=True)
    target = np.concatenate([first_target, later_target])

    collection = task_metrics(task, n_classes, k=k).clone(prefix="val/")
    for rows in (slice(0, 40), slice(40, 120), slice(120, None)):
        collection.update(torch.from_numpy(probs[rows]).float(), torch.from_numpy(target[rows]))
    got = {key.removeprefix("val/"): float(v) for key, v in collection.compute().items()}
    expected = expected_values(task, probs, target, k)
    rank = rank_of_truth(probs, target)  # the case the merge got wrong: they differ
    assert np.mean(1.0 / rank) > np.mean(np.where(rank <= k, 1.0 / rank, 0.0))
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-5), key


def test_regression_metrics_keep_their_own_values_when_first_batches_agree():
    """A perfect first batch makes every error zero there; the later ones differ."""
    rng = np.random.default_rng(4)
    target = rng.normal(10, 3, size=120).astype(np.float32)
    pred = target.copy()
    pred[30:] += rng.normal(0, 2, size=90).astype(np.float32)
    collection = task_metrics("regression", 1)
    for rows in (slice(0, 30), slice(30, None)):
        collection.update(torch.from_numpy(pred[rows]), torch.from_numpy(target[rows]))
    got = {key: float(v) for key, v in collection.compute().items()}
    assert got["mae"] == pytest.approx(sk.mean_absolute_error(target, pred), rel=1e-5)
    assert got["mse"] == pytest.approx(sk.mean_squared_error(target, pred), rel=1e-5)
    assert got["rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(target, pred)), rel=1e-5)
    assert got["r2"] == pytest.approx(sk.r2_score(target, pred), rel=1e-4)


MACRO_SKLEARN = {
    "f1_macro": lambda y, p, w: sk.f1_score(y, p, average="macro", zero_division=0,
                                            sample_weight=w),
    "precision_macro": lambda y, p, w: sk.precision_score(y, p, average="macro",
                                                          zero_division=0, sample_weight=w),
    "recall_macro": lambda y, p, w: sk.recall_score(y, p, average="macro", zero_division=0,
                                                    sample_weight=w),
    "f1_weighted": lambda y, p, w: sk.f1_score(y, p, average="weighted", zero_division=0,
                                               sample_weight=w),
    "balanced_acc": lambda y, p, w: sk.balanced_accuracy_score(y, p, sample_weight=w),
    "acc": lambda y, p, w: sk.accuracy_score(y, p, sample_weight=w),
}


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("seed", range(12))
def test_macro_label_metrics_average_the_classes_scikit_learn_averages(seed):
    """Classes absent from both the truth and the predictions are not averaged (scikit-learn's
    labels=None: the union of both), with and without class weights (sample_weight), in the
    confusion-matrix score, the weighted and the unweighted validation metrics alike."""
    from podium.submission.oof import label_score

    rng = np.random.default_rng(seed)
    n_classes = 6
    y = rng.choice([0, 1, 2, 3], size=40)          # classes 4, 5 never true
    pred = rng.choice([0, 1, 2, 4], size=40)       # class 3 never predicted, 5 never at all
    probs = torch.from_numpy(np.eye(n_classes, dtype=np.float32)[pred] + 0.01)
    weights = rng.uniform(0.2, 3.0, n_classes)
    if seed % 3 == 0:
        weights[1] = 0.0                          # a class whose rows all weigh 0
    plain = task_metrics("multiclass", n_classes)(probs, torch.from_numpy(y))
    weighted = task_metrics("multiclass", n_classes, class_weights=weights)(
        probs, torch.from_numpy(y))
    for name, reference in MACRO_SKLEARN.items():
        expected = reference(y, pred, None)
        assert label_score(name, y, pred, n_classes) == pytest.approx(expected), name
        assert float(plain[name]) == pytest.approx(expected, abs=1e-6), name
        expected = reference(y, pred, weights[y])
        assert label_score(name, y, pred, n_classes, weights) == pytest.approx(expected), name
        assert float(weighted[name]) == pytest.approx(expected, abs=1e-6), name


def test_macro_f1_of_a_case_with_absent_classes_by_hand():
    """Truth 0 0 1, predicted 0 1 1 of four classes: F1 2/3 and 2/3 over the two classes
    present; classes 2 and 3 (never true, never predicted) are not averaged as zeros."""
    from podium.submission.oof import label_score

    y, pred = np.array([0, 0, 1]), np.array([0, 1, 1])
    assert label_score("f1_macro", y, pred, 4) == pytest.approx(2 / 3)
    assert label_score("f1_macro", y, pred, 4, np.ones(4)) == pytest.approx(2 / 3)
