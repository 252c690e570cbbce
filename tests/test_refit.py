"""Training on every labelled row (`data.val_fraction=0`) and `make refit`."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from conftest import make_cfg, run_cli, run_dirs
from podium.data.base import TensorRows
from podium.data.splits import split_indices
from podium.errors import PodiumError

DEMO_ARGS = ["model.net.depth=8", "model.net.width=4", "print_config=false"]


def demo(root) -> list[str]:
    return [f"data.root={root}", f"data.demo_root={root}"]


def test_val_fraction_zero_keeps_every_row_for_training():
    labels = np.array([0, 0, 0, 1, 2, 2])  # class 1 has one row: no stratified split needed
    train, val = split_indices(labels, ["a", "b", "c"], 0.0, seed=0)
    assert train.tolist() == [0, 1, 2, 3, 4, 5] and len(val) == 0
    with pytest.raises(PodiumError, match=r"must be in \[0, 1\)"):
        split_indices(labels, ["a", "b", "c"], 1.0, seed=0)


def test_val_fraction_zero_trains_on_every_id_once_per_epoch(tmp_path, demo_root, monkeypatch):
    from podium.train import train

    served: list[list[int]] = []
    getitems = TensorRows.__getitems__

    def spy(self, items):
        if self.labels is not None and len(self.index) == len(self.inputs):  # training set
            served.append([int(self.index[i]) for i in items])
        return getitems(self, items)

    monkeypatch.setattr(TensorRows, "__getitems__", spy)
    cfg = make_cfg(tmp_path, ["data.val_fraction=0", "data.drop_last=false",
                              "trainer.max_epochs=2", *DEMO_ARGS, *demo(demo_root)])
    metrics = train(cfg).metrics
    n = len(pd.read_csv(demo_root / "train.csv"))
    batches_per_epoch = -(-n // cfg.data.batch_size)
    assert len(served) == 2 * batches_per_epoch
    for epoch in range(2):
        rows = sum(served[epoch * batches_per_epoch:(epoch + 1) * batches_per_epoch], [])
        assert sorted(rows) == list(range(n)), epoch  # every labelled id, once

    run = tmp_path / "run"
    assert (run / "submission.csv").is_file() and not (run / "oof.csv").exists()
    sample = pd.read_csv(demo_root / "sample_submission.csv", dtype=str)
    assert list(pd.read_csv(run / "submission.csv", dtype=str).id) == list(sample.id)
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["best_epoch"] == 1 and saved["epochs"] == 2 and saved["validation"] is False
    assert "val/f1_macro" not in metrics and "train/loss_epoch" in metrics
    best = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert best["epoch"] == last["epoch"] == 1  # the last epoch is the checkpoint
    for key, value in best["state_dict"].items():
        assert torch.equal(value, last["state_dict"][key]), key


@pytest.mark.parametrize(("overrides", "needle"), [
    (["callbacks=early_stopping"], "callbacks.early_stopping stops on val/f1_macro"),
    (["scheduler=plateau"], "scheduler.monitor=val/f1_macro"),
])
def test_options_that_need_validation_say_so(overrides, needle, tmp_path, demo_root):
    from podium.build import build_trainer

    cfg = make_cfg(tmp_path, ["data.val_fraction=0", *overrides, *demo(demo_root)])
    with pytest.raises(PodiumError, match=needle):
        build_trainer(cfg)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_root):
    """A 3-epoch run through the CLI (a few batches per epoch)."""
    logs = tmp_path_factory.mktemp("logs")
    run_cli("podium.train", "debug=limit", "trainer.max_epochs=3", f"paths.log_dir={logs}",
            *DEMO_ARGS, *demo(demo_root))
    return logs, run_dirs(logs)[0]


def test_best_epoch_is_the_epoch_of_the_best_checkpoint(trained):
    _, run = trained
    saved = json.loads((run / "metrics.json").read_text())
    best = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    assert saved["best_epoch"] == best["epoch"]
    scores = pd.read_csv(run / "csv" / "metrics.csv")[["epoch", "val/f1_macro"]].dropna()
    assert saved["best_epoch"] == int(scores.loc[scores["val/f1_macro"].idxmax(), "epoch"])


def refit_runs(logs):
    return sorted(p.parent for p in (logs / "refit").glob("*/*/metrics.json"))


def set_best_epoch(run, epoch):
    path = run / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "best_epoch": epoch}))


def test_refit_trains_the_run_on_all_rows_for_its_best_epoch_count(trained, demo_root, tmp_path):
    logs, run = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    set_best_epoch(copy, 1)  # the second epoch was best: refit trains two
    proc = run_cli("podium.refit", f"run={copy}", f"paths.log_dir={logs}")
    (refit,) = refit_runs(logs)
    assert refit.parent.name == "baseline"  # logs/refit/<the run's experiment>/<time>
    assert f"run folder: {refit}" in proc.stdout and "for 2 epochs" in proc.stdout
    summary = json.loads((refit / "metrics.json").read_text())
    assert summary["epochs"] == 2 and summary["best_epoch"] == 1
    assert summary["train_rows"] == len(pd.read_csv(demo_root / "train.csv"))
    epochs = pd.read_csv(refit / "csv" / "metrics.csv")["epoch"].dropna()
    assert epochs.max() == 1
    trained_cfg = OmegaConf.load(refit / ".hydra" / "config.yaml")
    original = OmegaConf.load(run / ".hydra" / "config.yaml")
    assert trained_cfg.data.val_fraction == 0 and trained_cfg.trainer.max_epochs == 2
    assert trained_cfg.model == original.model and trained_cfg.loss == original.loss
    # no loss= given: the run's saved config records the task's loss it trained with
    assert original.loss._target_ == "torch.nn.CrossEntropyLoss"
    assert (refit / "submission.csv").is_file() and not (refit / "oof.csv").exists()
    # the refit folder is a run like any other: make submit averages it
    run_cli("podium.submit", f"runs=[{refit}]", f"paths.log_dir={tmp_path / 'logs'}")


def test_refit_of_a_cv_folder_trains_the_folds_mean_best_epoch(trained, tmp_path):
    _, run = trained
    cv = tmp_path / "cv"
    for fold, best in ((0, 0), (1, 2)):  # 1 and 3 epochs: the mean is 2
        shutil.copytree(run, cv / str(fold))
        set_best_epoch(cv / str(fold), best)
    proc = run_cli("podium.refit", f"run={cv}", f"paths.log_dir={tmp_path / 'logs'}")
    assert "for 2 epochs" in proc.stdout
    (refit,) = refit_runs(tmp_path / "logs")
    assert json.loads((refit / "metrics.json").read_text())["refit_of"] == \
        [str(cv / "0"), str(cv / "1")]


def test_refit_without_a_best_epoch_says_what_to_pass(trained, tmp_path):
    _, run = trained
    copy = tmp_path / "old"
    shutil.copytree(run, copy)
    saved = json.loads((copy / "metrics.json").read_text())
    saved.pop("best_epoch")
    (copy / "metrics.json").write_text(json.dumps(saved))
    proc = run_cli("podium.refit", f"run={copy}", f"paths.log_dir={tmp_path}", check=False)
    assert proc.returncode == 2
    assert "has no best_epoch" in proc.stderr and "epochs=N" in proc.stderr


def test_predict_and_export_of_a_refit_keep_the_oof_it_borrows(trained, demo_root, tmp_path):
    """A refit has no validation rows: make predict and make export of it learn (and
    report) on the OOF of the run it refits, as its own submission did."""
    logs, run = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    set_best_epoch(copy, 0)
    run_cli("podium.refit", f"run={copy}", f"paths.log_dir={tmp_path / 'logs'}")
    (refit,) = refit_runs(tmp_path / "logs")
    oof_ids = sorted(pd.read_csv(copy / "oof.csv", dtype={"id": str}).id)
    own = json.loads((refit / "metrics.json").read_text())
    assert own["oof_rows"] == len(oof_ids)
    run_cli("podium.predict", f"runs=[{refit}]", f"data.root={demo_root}",
            f"paths.log_dir={tmp_path / 'logs'}")
    [predicted] = (tmp_path / "logs" / "predict").glob("*/metrics.json")
    assert json.loads(predicted.read_text())["oof_rows"] == len(oof_ids)
    run_cli("podium.export", f"runs=[{refit}]", f"paths.log_dir={tmp_path / 'logs'}")
    [bundle] = (tmp_path / "logs" / "export").glob("*/bundle.json")
    bundled = pd.read_csv(bundle.parent / "members" / "0" / "oof.csv", dtype={"id": str})
    assert sorted(bundled.id) == oof_ids


def test_refit_drops_early_stopping_it_could_not_run(tmp_path):
    """A recipe that early-stops (experiment=tabular) refits for the epochs its run chose:
    with every row training, nothing validates, so the stopping callback goes."""
    from podium.refit import refit_config

    cfg = make_cfg(tmp_path, ["experiment=tabular"])
    assert cfg.callbacks.early_stopping is not None
    refit = refit_config(cfg, 7, "tabular")
    assert refit.callbacks.early_stopping is None and refit.trainer.max_epochs == 7
    assert refit.callbacks.model_checkpoint is not None  # the others stay


@pytest.mark.parametrize(("task", "said"), [
    ("stack", "is a stack folder: refit its network, make refit RUN="),
    ("gbdt", "is a booster folder (make gbdt)"),
    ("submit", "is a submit folder (a blend, no model of its own)"),
    ("predict", "is a predict folder (a blend, no model of its own)")])
def test_a_folder_that_is_no_network_run_says_what_to_refit(tmp_path, task, said):
    from podium.refit import refit

    folder = tmp_path / task
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(f"task_name: {task}\n")
    (folder / "metrics.json").write_text("{}")  # no best_epoch: the old, misleading error
    cfg = OmegaConf.create({"run": str(folder), "epochs": None, "paths": {}})
    with pytest.raises(PodiumError, match=re.escape(said)):
        refit(cfg)
