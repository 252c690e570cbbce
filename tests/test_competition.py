"""metric.competition drives every choice; a binary label file gets a learned threshold."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as sk

from conftest import make_cfg
from podium.submission.oof import label_score
from podium.submission.thresholds import best_threshold

SKLEARN = {
    "acc": sk.accuracy_score,
    "balanced_acc": sk.balanced_accuracy_score,
    "f1_macro": lambda y, p: sk.f1_score(y, p, average="macro", labels=range(4),
                                         zero_division=0),
    "f1_weighted": lambda y, p: sk.f1_score(y, p, average="weighted", labels=range(4),
                                            zero_division=0),
    "precision_macro": lambda y, p: sk.precision_score(y, p, average="macro", labels=range(4),
                                                       zero_division=0),
    "recall_macro": lambda y, p: sk.recall_score(y, p, average="macro", labels=range(4),
                                                 zero_division=0),
}


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000))
def test_label_scores_equal_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, 60)
    y[:4] = range(4)  # every class present (balanced accuracy is undefined otherwise)
    pred = rng.integers(0, 4, 60)
    for name, reference in SKLEARN.items():
        assert label_score(name, y, pred, 4) == pytest.approx(reference(y, pred)), name


def test_threshold_learned_on_a_skewed_validation_set_beats_one_half():
    """A model whose positives all score below 0.5: accuracy wants a lower cut."""
    p1 = np.array([0.05, 0.10, 0.12, 0.15, 0.20, 0.22, 0.30, 0.33, 0.38, 0.42, 0.44, 0.47])
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    report = best_threshold(p1, y, "acc")
    assert report["before"] == pytest.approx(0.5)  # at 0.5 every row is predicted 0
    # the cut keeps 0.30 and up, halfway down to 0.22
    assert report["threshold"] == pytest.approx(0.26) and report["after"] == pytest.approx(1.0)
    assert sk.accuracy_score(y, p1 >= report["threshold"]) == pytest.approx(report["after"])
    # nothing better than 0.5 -> 0.5 stays
    assert best_threshold(np.array([0.2, 0.8]), np.array([0, 1]), "acc")["threshold"] == 0.5


def test_competition_sets_monitor_mode_checkpoint_and_sweep_objective(tmp_path):
    from podium.sweep.sweeper import resolved_metric

    cfg = make_cfg(tmp_path, ["metric.competition=accuracy", "callbacks=early_stopping"])
    assert (cfg.metric.competition, cfg.metric.monitor, cfg.metric.mode) == \
        ("acc", "val/acc", "max")
    assert cfg.callbacks.model_checkpoint.monitor == "val/acc"
    assert cfg.callbacks.early_stopping.monitor == "val/acc"
    assert resolved_metric(cfg).monitor == "val/acc"  # what the sweep optimises
    cfg = make_cfg(tmp_path, ["metric.competition=MAP@5"])
    assert (cfg.metric.monitor, cfg.metric.k) == ("val/map@5", 5)
    cfg = make_cfg(tmp_path, ["metric.competition=log_loss"])
    assert (cfg.metric.monitor, cfg.metric.mode) == ("val/logloss", "min")
    cfg = make_cfg(tmp_path, ["metric.monitor=val/mrr"])  # an explicit monitor still wins
    assert (cfg.metric.competition, cfg.metric.monitor) == ("mrr", "val/mrr")


def test_competition_picks_the_oof_score_of_a_cv_folder(tmp_path, demo_root):
    """The same folds gathered under two competitions report two OOF scores."""
    from conftest import ROOT, run_cli
    from podium.cv import gather_folds

    logs = tmp_path / "logs"
    run_cli("podium.train", "-m", "task_name=cv", "sweep_name=c", "data.n_folds=2",
            "data.fold=0,1", "trainer.max_epochs=2", "model.net.depth=8", "model.net.width=4",
            "metric.competition=accuracy", f"data.root={demo_root}",
            f"data.demo_root={demo_root}", f"paths.log_dir={logs}", "print_config=false")
    [cv_dir] = list((logs / "cv" / "c").iterdir())
    summary = json.loads((cv_dir / "metrics.json").read_text())
    assert summary["oof_score"] == pytest.approx(summary["oof/acc"])
    oof = pd.read_csv(cv_dir / "oof.csv", dtype=str)
    classes = list(oof.columns[3:])
    predicted = np.array(classes)[oof[classes].astype(float).to_numpy().argmax(1)]
    assert summary["oof_score"] == pytest.approx(sk.accuracy_score(oof.label, predicted))

    again = tmp_path / "again"
    shutil.copytree(cv_dir, again)
    cfg = make_cfg(tmp_path, ["metric.competition=balanced_accuracy", f"data.root={demo_root}",
                              "data.n_folds=2"])
    cfg.paths.root_dir = str(ROOT)
    result = gather_folds(again, cfg)
    assert result.oof_score == pytest.approx(
        sk.balanced_accuracy_score(oof.label, predicted))


def test_binary_run_scored_on_accuracy_submits_labels_cut_at_the_learned_threshold(tmp_path):
    from podium.data.demo import build_tabular_demo
    from podium.train import train

    root = build_tabular_demo(tmp_path / "demo_binary", "binary")
    cfg = make_cfg(tmp_path, ["data=demo_binary", f"data.root={root}",
                              f"data.demo_root={root}", "metric.competition=accuracy",
                              "trainer.max_epochs=2"])
    train(cfg)
    run = tmp_path / "run"
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["monitor"] == "val/acc" and saved["competition"] == "acc"
    threshold = saved["threshold"]
    assert threshold["after_in_sample"] >= threshold["before"]
    oof = pd.read_csv(run / "oof.csv", dtype={"id": str})
    y = (oof.target == "malignant").astype(int)
    assert sk.accuracy_score(y, oof.malignant >= threshold["threshold"]) == \
        pytest.approx(threshold["after_in_sample"])
    # used only when its cross-fitted score (a seeded 5-fold of the validation rows) gains
    # more than one standard error
    assert threshold["used"] == (threshold["after_cross_fitted"] - threshold["before"]
                                 > threshold["se"])
    cut = threshold["threshold"] if threshold["used"] else 0.5
    probs = pd.read_csv(run / "test_probs.csv", dtype={"id": str})
    submission = pd.read_csv(run / "submission.csv", dtype={"id": str})
    expected = np.where(probs.malignant >= cut, "malignant", "benign")
    assert list(submission.target) == list(expected)


def test_best_threshold_is_the_best_split_by_scikit_learn():
    """Counted from the sorted rows, the threshold equals a brute-force search that scores
    every distinct split with scikit-learn (first best on ties, 0.5 unless beaten), moved
    halfway down to the next lower probability."""
    rng = np.random.default_rng(7)
    scorers = {"acc": sk.accuracy_score, "balanced_acc": sk.balanced_accuracy_score,
               "f1_macro": lambda y, p: sk.f1_score(y, p, average="macro", zero_division=0)}
    for _ in range(20):
        n = int(rng.integers(5, 120))
        p1 = np.round(rng.random(n), int(rng.integers(1, 3)))  # ties included
        y = (rng.random(n) < p1 * 0.8).astype(int)
        for metric, score in scorers.items():
            best, cut = score(y, (p1 >= 0.5).astype(int)), 0.5
            for t in np.unique(p1):
                value = score(y, (p1 >= t).astype(int))
                if value > best + 1e-12:
                    best, cut = value, float(t)
            if best > score(y, (p1 >= 0.5).astype(int)):
                below = p1[p1 < cut]  # halfway down to the next lower probability
                cut = (cut + (below.max() if below.size else 0.0)) / 2
            got = best_threshold(p1, y, metric)
            assert (got["threshold"], got["after"]) == pytest.approx((cut, best))
            assert score(y, (p1 >= got["threshold"]).astype(int)) == pytest.approx(best)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000))
def test_binary_f1_is_scikit_learns_f1_of_the_positive_class(seed):
    """`f1` is scikit-learn's default f1_score (average="binary", pos_label=1), `f1_first`
    its pos_label=0; with class weights, its sample_weight; the validation collection
    computes the same (argmax of two probabilities)."""
    import torch

    from podium.model.metrics import task_metrics

    rng = np.random.default_rng(seed)
    y, pred = rng.integers(0, 2, 50), rng.integers(0, 2, 50)
    weights = rng.uniform(0.2, 3.0, 2)
    probs = torch.from_numpy(np.eye(2, dtype=np.float32)[pred] * 0.6 + 0.2)
    for key, positive in (("f1", 1), ("f1_first", 0)):
        expected = sk.f1_score(y, pred, pos_label=positive, zero_division=0)
        assert label_score(key, y, pred, 2) == pytest.approx(expected)
        assert float(task_metrics("binary", 2)(probs, torch.from_numpy(y))[key]) == \
            pytest.approx(expected, abs=1e-6)
        expected = sk.f1_score(y, pred, pos_label=positive, zero_division=0,
                               sample_weight=weights[y])
        assert label_score(key, y, pred, 2, weights) == pytest.approx(expected)
        assert float(task_metrics("binary", 2, class_weights=weights)(
            probs, torch.from_numpy(y))[key]) == pytest.approx(expected, abs=1e-6)


def test_f1_means_the_tasks_f1(tmp_path):
    """metric.competition=f1: a binary task's F1 of the positive class (the second sorted
    class, or data.positive_class), N classes' macro average."""
    from podium.errors import PodiumError
    from podium.model.metrics import competition_key

    assert competition_key("f1", "binary") == "f1"
    assert competition_key("F1", "multiclass") == "f1_macro"
    assert competition_key("f1", "multilabel") == "f1_macro"
    root = tmp_path / "table"
    root.mkdir()
    pd.DataFrame({"id": range(8), "x": range(8), "target": ["no", "yes"] * 4}).to_csv(
        root / "train.csv", index=False)
    pd.DataFrame({"id": range(8, 10), "x": range(2)}).to_csv(root / "test.csv", index=False)
    pd.DataFrame({"id": [8, 9], "target": ["no", "no"]}).to_csv(
        root / "sample_submission.csv", index=False)

    def monitor(*overrides: str) -> str:
        return make_cfg(tmp_path, [f"data.root={root}", "data=tabular",
                                   "metric.competition=f1", *overrides]).metric.monitor

    assert monitor() == "val/f1"                                  # yes: the second class
    assert monitor("data.positive_class=yes") == "val/f1"
    assert monitor("data.positive_class=no") == "val/f1_first"
    with pytest.raises(PodiumError, match="data.positive_class=maybe is not a class"):
        monitor("data.positive_class=maybe")


def test_binary_run_scored_on_f1_checkpoints_and_thresholds_on_the_positive_class(tmp_path):
    """metric.competition=f1 on a binary table: val/f1 and the OOF score are scikit-learn's
    F1 of the positive class (malignant, the second of benign/malignant) on the validation
    rows, and the threshold is learned for it."""
    from podium.data.demo import build_tabular_demo
    from podium.train import train

    root = build_tabular_demo(tmp_path / "demo_binary", "binary")
    cfg = make_cfg(tmp_path, ["data=demo_binary", f"data.root={root}",
                              f"data.demo_root={root}", "metric.competition=f1",
                              "trainer.max_epochs=2"])
    train(cfg)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (saved["monitor"], saved["competition"]) == ("val/f1", "f1")
    oof = pd.read_csv(tmp_path / "run" / "oof.csv", dtype={"id": str})
    y = (oof.target == "malignant").astype(int).to_numpy()
    p1 = oof.malignant.to_numpy()
    assert saved["val/f1"] == pytest.approx(sk.f1_score(y, p1 > 0.5), abs=1e-4)
    threshold = saved["threshold"]
    assert threshold["metric"] == "f1"
    assert threshold["before"] == pytest.approx(sk.f1_score(y, p1 >= 0.5))
    assert threshold["after_in_sample"] == pytest.approx(
        sk.f1_score(y, p1 >= threshold["threshold"]))
