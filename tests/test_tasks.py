"""Binary and regression tasks end to end on the tabular demos; per-class report; errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

from conftest import make_cfg, run_cli
from podium.data.demo import build_tabular_demo
from podium.errors import PodiumError
from podium.train import train


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    base = tmp_path_factory.mktemp("tabular")
    return {kind: build_tabular_demo(base / f"demo_{kind}", kind) for kind in ("regression",
                                                                              "binary")}


def run_demo(tmp_path, root, kind: str, *overrides: str, resolve: bool = True) -> dict:
    cfg = make_cfg(tmp_path, [f"data=demo_{kind}", "debug=limit", f"data.root={root}",
                              f"data.demo_root={root}", *overrides], resolve=resolve)
    return train(cfg).metrics


def test_demo_folders_look_like_a_competition(demos):
    for root in demos.values():
        train_csv, test = pd.read_csv(root / "train.csv"), pd.read_csv(root / "test.csv")
        sample, answers = (pd.read_csv(root / f) for f in ("sample_submission.csv",
                                                           "answers.csv"))
        assert list(sample.columns) == ["id", "target"] == list(answers.columns)
        assert list(sample.id) == list(test.id) == list(answers.id)
        assert "target" not in test.columns and not set(train_csv.id) & set(test.id)
    assert pd.read_csv(demos["regression"] / "train.csv").sex.isin(["a", "b"]).all()


def test_demo_regression_end_to_end(tmp_path, demos, capsys):
    """No loss= given: data.task=regression trains with MSE and says so in one line."""
    root = demos["regression"]
    metrics = run_demo(tmp_path, root, "regression", "trainer.max_epochs=3", resolve=False)
    said = capsys.readouterr().out.splitlines()
    assert "loss: mse (data.task=regression's default; choose with loss=...)" in said
    run = tmp_path / "run"
    # the validation loss is the mean squared error torchmetrics computes (not the MAE), in
    # the standardised units the network learns: the training split's target std is 1 there
    scale = torch.load(run / "checkpoints/best.ckpt", weights_only=True)[
        "hyper_parameters"]["spec"]["target_scale"]
    train_std = pd.read_csv(root / "train.csv").target.std(ddof=0)
    assert scale["transform"] == "none" and 0.75 * train_std < scale["std"] < 1.25 * train_std
    assert metrics["val/loss"] == pytest.approx(metrics["val/mse"] / scale["std"] ** 2, rel=1e-3)
    assert metrics["val/loss"] != pytest.approx(metrics["val/mae"], rel=0.1)
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["monitor"] == "val/mae"
    assert {"val/mae", "val/mse", "val/rmse", "val/r2"} <= set(metrics)
    assert metrics["val/rmse"] == pytest.approx(np.sqrt(metrics["val/mse"]), rel=1e-4)
    sample = pd.read_csv(root / "sample_submission.csv", dtype={"id": str})
    submission = pd.read_csv(run / "submission.csv", dtype={"id": str})
    probs = pd.read_csv(run / "test_probs.csv", dtype={"id": str})
    assert list(submission.columns) == list(sample.columns)
    assert list(submission.id) == list(sample.id)
    assert submission.target.dtype == float and np.isfinite(submission.target).all()
    assert list(probs.columns) == ["id", "prediction"]
    assert np.allclose(probs.prediction, submission.target)
    answers = pd.read_csv(root / "answers.csv", dtype={"id": str})
    mae = np.abs(answers.target.to_numpy() - submission.target.to_numpy()).mean()
    assert metrics["leaderboard/mae"] == pytest.approx(mae, rel=1e-6)
    assert not (run / "report" / "per_class.csv").exists()  # no classes in regression
    # ModelCheckpoint followed val/mae downwards: best.ckpt holds the smallest logged MAE.
    logged = pd.read_csv(run / "csv/metrics.csv")["val/mae"].dropna()
    assert metrics["val/mae"] == pytest.approx(logged.min(), rel=1e-5)


def test_demo_binary_end_to_end_with_per_class_report(tmp_path, demos):
    root = demos["binary"]
    metrics = run_demo(tmp_path, root, "binary")
    run = tmp_path / "run"
    assert json.loads((run / "metrics.json").read_text())["monitor"] == "val/auroc"
    assert {"val/auroc", "val/f1", "val/f1_weighted", "val/balanced_acc"} <= set(metrics)
    assert not {"val/map@3", "val/mrr", "val/ndcg@3", "val/acc_top3"} & set(metrics)
    # scored by AUROC: the submission is p(malignant), the second of the sorted labels
    submission = pd.read_csv(run / "submission.csv", dtype={"id": str})
    sample = pd.read_csv(root / "sample_submission.csv", dtype=str)
    assert list(submission.id) == list(sample.id)
    probs = pd.read_csv(run / "test_probs.csv", dtype={"id": str})
    assert np.allclose(submission.target, probs.malignant)
    answers = pd.read_csv(root / "answers.csv", dtype={"id": str})
    assert list(answers.id) == list(submission.id)
    assert metrics["leaderboard/auroc"] == pytest.approx(
        roc_auc_score(answers.target == "malignant", submission.target))
    # The per-class table is scikit-learn's on the best checkpoint's validation predictions.
    oof = pd.read_csv(run / "oof.csv", dtype={"id": str})
    predicted = oof[["benign", "malignant"]].to_numpy().argmax(1)
    truth = (oof.target == "malignant").astype(int)
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted,
                                                                     labels=[0, 1])
    table = pd.read_csv(run / "report/per_class.csv")
    assert list(table["class"]) == ["benign", "malignant"]
    assert np.allclose(table[["precision", "recall", "f1"]].to_numpy().T,
                       [precision, recall, f1], atol=1e-6)
    assert list(table.support) == list(support)
    assert (run / "report/confusion_matrix.png").stat().st_size > 1000


def test_a_binary_run_on_labels_is_scored_on_the_leaderboard_by_its_own_metric(tmp_path, demos):
    """metric.competition=acc (or binary f1): the demo leaderboard scores the file by that
    metric too, so the OOF/validation score has a number on the same scale to predict."""
    from sklearn.metrics import accuracy_score, f1_score

    root = demos["binary"]
    answers = pd.read_csv(root / "answers.csv", dtype={"id": str})
    for metric, score in (("acc", accuracy_score),
                          ("f1", lambda t, p: f1_score(t, p, pos_label="malignant"))):
        out = tmp_path / metric
        metrics = run_demo(out, root, "binary", f"metric.competition={metric}")
        submission = pd.read_csv(out / "run/submission.csv", dtype={"id": str})
        assert set(submission.target) <= {"benign", "malignant"}
        assert metrics[f"leaderboard/{metric}"] == pytest.approx(
            score(answers.target, submission.target))
        assert metrics["leaderboard/f1_macro"] == pytest.approx(
            f1_score(answers.target, submission.target, average="macro"))


def test_regression_with_a_text_target_is_one_line(tmp_path):
    root = tmp_path / "comp"
    root.mkdir()
    pd.DataFrame({"id": ["1", "2", "3"], "x": [1, 2, 3], "y": ["1.5", "high", "2"]}).to_csv(
        root / "train.csv", index=False)
    pd.DataFrame({"id": ["4"], "x": [4]}).to_csv(root / "test.csv", index=False)
    pd.DataFrame({"id": ["4"], "y": [0.0]}).to_csv(root / "sample_submission.csv", index=False)
    cfg = make_cfg(tmp_path, ["data=tabular", "model=mlp", "loss=mse", "data.task=regression",
                              f"data.root={root}", "data.target_col=y"])
    with pytest.raises(PodiumError) as err:
        train(cfg)
    message = str(err.value)
    assert "\n" not in message
    assert "data.task=regression needs a numeric y column" in message and "'high'" in message


def test_classification_loss_on_regression_is_one_line(tmp_path, demos):
    with pytest.raises(PodiumError) as err:
        run_demo(tmp_path, demos["regression"], "regression", "loss=ce")
    assert str(err.value) == ("loss torch.nn.CrossEntropyLoss (tasks: multiclass, binary) does "
                              "not fit data.task=regression: use loss=mse, huber or l1")


class RegressionOnly(torch.nn.Module):
    """A loss of one's own that declares its task as a class attribute."""

    tasks = ("regression",)

    def forward(self, preds, target):
        return (preds - target).abs().mean()


class Undeclared(RegressionOnly):
    tasks = None


@pytest.mark.parametrize("overrides", [
    [f"+loss._target_={__name__}.RegressionOnly"],
    ["+loss._target_=torch.nn.L1Loss", "+loss.tasks=[regression]"],
], ids=["class attribute", "config key"])
def test_a_users_loss_declares_its_task(tmp_path, overrides):
    """Accepted on the task it declares (and instantiated without the declaration), refused
    on another with the conf/loss options that fit."""
    from podium.build import build_loss, check_loss_task

    common = [*overrides, "+loss._partial_=true", "data=tabular", "model=mlp"]
    cfg = make_cfg(tmp_path, [*common, "data.task=regression"])
    loss = build_loss(cfg, class_counts=[])
    preds, target = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 1.0])
    torch.testing.assert_close(loss(preds, target), torch.nn.functional.l1_loss(preds, target))
    cfg = make_cfg(tmp_path, [*common, "data.task=multiclass"])
    with pytest.raises(PodiumError) as err:
        check_loss_task(cfg)
    assert str(err.value).endswith(
        "(tasks: regression) does not fit data.task=multiclass: use loss=ce, balanced_softmax, "
        "focal, label_smoothing, ldam_drw, soft_f1 or weighted_ce")


def test_a_loss_that_declares_nothing_is_accepted_and_logged(tmp_path, caplog):
    from podium.build import check_loss_task

    target = f"{__name__}.Undeclared"
    for task in ("regression", "multilabel"):
        cfg = make_cfg(tmp_path, [f"+loss._target_={target}", "+loss._partial_=true",
                                  "data=tabular", "model=mlp", f"data.task={task}"])
        caplog.clear()
        with caplog.at_level("INFO", logger="podium.build"):
            check_loss_task(cfg)
        assert [r.getMessage() for r in caplog.records] == [
            f"loss {target} declares no tasks: not checked against data.task={task} (declare "
            "them with loss.tasks=[...] or a `tasks` attribute on the class)"]


def test_monitor_never_logged_is_one_line_listing_the_keys(tmp_path, demos):
    root = demos["binary"]
    proc = run_cli("podium.train", "data=demo_binary", "debug=limit", "metric.monitor=val/nope",
                   f"data.root={root}", f"data.demo_root={root}",
                   f"paths.log_dir={tmp_path / 'logs'}", check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: metric.monitor=val/nope was never logged; logged keys: ")
    assert "val/auroc" in last and "val/loss" in last


