"""The whole competition loop, end to end, on the demo folder."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score

from conftest import CONF, make_cfg, run_cli, run_dirs
from podium.train import train

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
RUN_FILES = ["checkpoints/best.ckpt", "checkpoints/last.ckpt", "metrics.json",
             "test_probs.csv", "submission.csv", "csv/metrics.csv", ".hydra/config.yaml"]


SMALL = ["model.net.depth=8", "model.net.width=4"]  # what the runs check needs no ResNet-20


def data_overrides(root) -> list[str]:
    return [f"data.root={root}", f"data.demo_root={root}"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_fast_dev_run_of_every_experiment(experiment, tmp_path, demo_root):
    data = data_overrides(demo_root)
    if experiment == "tabular":  # a table's recipe: the tabular demo
        from podium.data.demo import build_tabular_demo

        data = ["data=demo_binary", *data_overrides(build_tabular_demo(tmp_path / "t", "binary")),
                "data.eval_batch_size=16"]  # one batch is part of the test rows
    cfg = make_cfg(tmp_path, [f"experiment={experiment}", "debug=fdr", *data])
    metrics = train(cfg).metrics
    assert np.isfinite(metrics["val/loss"])
    # fast_dev_run predicts one batch only: a partial submission must not be written.
    assert not (tmp_path / "run" / "submission.csv").exists()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, demo_root):
    """Two short real runs through the CLI (different seeds), as `make train` does."""
    logs = tmp_path_factory.mktemp("logs")
    procs = [run_cli("podium.train", "debug=limit", f"seed={seed}", f"paths.log_dir={logs}", *SMALL,
                     *data_overrides(demo_root)) for seed in (1, 2)]
    return logs, run_dirs(logs), procs


def test_cli_run_writes_the_run_folder(two_runs, demo_root):
    logs, runs, procs = two_runs
    assert len(runs) == 2 and runs[0].parent.name == "baseline"
    for name in RUN_FILES:
        assert (runs[0] / name).is_file(), name
    out = procs[0].stdout
    assert f"run folder: {runs[0]}" in out
    assert "best val/f1_macro:" in out and "demo leaderboard macro-F1:" in out
    # the hold-out's score chose the checkpoint: said so where it is printed
    assert re.search(r"best val/f1_macro: \S+ \(this split chose the checkpoint: optimistic",
                     out)

    sample = pd.read_csv(demo_root / "sample_submission.csv", dtype=str)
    submission = pd.read_csv(runs[0] / "submission.csv", dtype=str)
    assert list(submission.columns) == list(sample.columns)
    assert list(submission.id) == list(sample.id)

    # The labels are the argmax of test_probs.csv mapped back to the original words.
    probs = pd.read_csv(runs[0] / "test_probs.csv", dtype={"id": str})
    assert list(probs.id) == list(sample.id)
    assert np.allclose(probs.iloc[:, 1:].sum(axis=1), 1.0, atol=1e-5)
    assert list(submission.label) == list(probs.columns[1:][probs.iloc[:, 1:].to_numpy().argmax(1)])

    # The leaderboard score is scikit-learn's macro-F1 against the held-back answers.
    answers = pd.read_csv(demo_root / "answers.csv", dtype=str)
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    expected = f1_score(answers.label, submission.label, average="macro")
    assert metrics["leaderboard/f1_macro"] == pytest.approx(expected)
    assert "val/f1_macro" in metrics and metrics["epochs"] == 2


def test_best_checkpoint_keeps_the_data_spec_and_best_score(two_runs):
    _, runs, _ = two_runs
    ckpt = torch.load(runs[0] / "checkpoints/best.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["spec"]["class_names"] == sorted(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    logged = pd.read_csv(runs[0] / "csv/metrics.csv")["val/f1_macro"].dropna()
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert metrics["val/f1_macro"] == pytest.approx(logged.max(), abs=1e-6)


def test_submit_averages_two_runs(two_runs, demo_root, tmp_path):
    logs, runs, _ = two_runs
    proc = run_cli("podium.submit", f"runs=[{runs[0]},{runs[1]}]", f"paths.log_dir={tmp_path}")
    [out_dir] = run_dirs(tmp_path, "submit")
    assert f"submission: {out_dir / 'submission.csv'}" in proc.stdout

    p1, p2 = (pd.read_csv(r / "test_probs.csv", dtype={"id": str}) for r in runs)
    mean = (p1.iloc[:, 1:].to_numpy() + p2.iloc[:, 1:].to_numpy()) / 2
    expected = p1.columns[1:][mean.argmax(axis=1)]
    submission = pd.read_csv(out_dir / "submission.csv", dtype=str)
    sample = pd.read_csv(demo_root / "sample_submission.csv", dtype=str)
    assert list(submission.columns) == list(sample.columns)
    assert list(submission.id) == list(sample.id)
    assert list(submission.label) == list(expected)


def test_submit_predicts_from_the_checkpoint_when_probs_are_missing(two_runs, tmp_path):
    _, runs, _ = two_runs
    run = tmp_path / "copy"
    shutil.copytree(runs[0], run)
    (run / "test_probs.csv").unlink()
    run_cli("podium.submit", f"runs=[{run}]", f"paths.log_dir={tmp_path}")
    [out_dir] = run_dirs(tmp_path, "submit")
    again = pd.read_csv(out_dir / "test_probs.csv", dtype={"id": str})
    original = pd.read_csv(runs[0] / "test_probs.csv", dtype={"id": str})
    assert np.allclose(again.iloc[:, 1:], original.iloc[:, 1:], atol=1e-5)


def test_resume_from_last_checkpoint_continues_the_epochs(two_runs, tmp_path, demo_root):
    _, runs, _ = two_runs
    last = runs[0] / "checkpoints/last.ckpt"
    run_cli("podium.train", f"ckpt_path={last}", "debug=limit", "trainer.max_epochs=3",
            "seed=1", f"paths.log_dir={tmp_path}", *SMALL, *data_overrides(demo_root))
    [resumed] = run_dirs(tmp_path)
    logged = pd.read_csv(resumed / "csv/metrics.csv")
    epochs = logged.dropna(subset=["train/loss_epoch"])["epoch"].unique()
    assert list(epochs) == [2]  # only the third epoch was trained: no restart from 0
    ckpt = torch.load(resumed / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 3 * 3  # limit_train_batches=3 per epoch, three epochs


def test_overfit_one_batch_memorises_it(tmp_path, demo_root):
    # a small ResNet at a constant, higher lr memorises the batch in ~11 steps (2.37 -> 0.11)
    cfg = make_cfg(tmp_path, ["debug=overfit", "trainer.max_epochs=15", "augment=none",
                              "model.net.depth=8", "model.net.width=8", "optimizer.lr=0.03",
                              "scheduler=none", *data_overrides(demo_root)])
    train(cfg)
    losses = pd.read_csv(tmp_path / "run/csv/metrics.csv")["train/loss_epoch"].dropna()
    assert losses.iloc[-1] < 0.1 * losses.iloc[0]
