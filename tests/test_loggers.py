"""Loggers (csv, tensorboard, wandb offline, mlflow file store), learning curves and the
printed config tree: every file lands in the run folder and nowhere else."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from PIL import Image

from conftest import CONF, ROOT, make_cfg
from podium.train import train

SHORT = ["debug=limit", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
         "trainer.limit_val_batches=1"]
STRAYS = ("wandb", "mlruns", "lightning_logs", "tensorboard", "csv", "report")


def short_run(tmp_path: Path, demo_root: Path, monkeypatch, *overrides: str) -> Path:
    """One short real run from an empty working folder; returns the run folder.

    (`debug=fdr` swaps every logger for Lightning's DummyLogger, so nothing would be
    written: a 1-epoch, 2-batch run exercises the loggers instead.)
    """
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = {name for name in STRAYS if (ROOT / name).exists()}
    cfg = make_cfg(tmp_path, [*SHORT, f"data.root={demo_root}", f"data.demo_root={demo_root}",
                              *overrides])
    train(cfg)
    assert list(cwd.iterdir()) == [], "something was written to the working folder"
    assert {name for name in STRAYS if (ROOT / name).exists()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "logs", "run"]
    assert [p.name for p in (tmp_path / "logs").iterdir()] == [".cache"]  # decoded images
    return tmp_path / "run"


def test_logger_files_compose_to_one_entry_each():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    targets = {"csv": "CSVLogger", "tensorboard": "TensorBoardLogger",
               "wandb": "WandbLogger", "mlflow": "MLFlowLogger"}
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for name, target in targets.items():
            cfg = compose("train", overrides=[f"logger={name}"])
            assert list(cfg.logger) == [name]
            assert cfg.logger[name]._target_ == f"lightning.pytorch.loggers.{target}"
        assert list(compose("train", overrides=["logger=many"]).logger) == ["csv", "tensorboard"]
        cfg = compose("train", overrides=["logger=wandb"])
        assert cfg.logger.wandb.offline is True
        cfg = compose("train", overrides=["logger=mlflow"])
        mlflow = OmegaConf.to_container(cfg.logger.mlflow)  # unresolved: no Hydra run here
        assert mlflow["tracking_uri"] == "file:${paths.output_dir}/mlruns"


def test_csv_and_tensorboard_together_with_curves_and_config_tree(tmp_path, demo_root,
                                                                   monkeypatch, capsys):
    run = short_run(tmp_path, demo_root, monkeypatch, "logger=many")
    assert (run / "csv" / "metrics.csv").is_file()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))

    png = run / "report" / "learning_curves.png"
    with Image.open(png) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(png) as image:
        width, height = image.size
    assert width > 2.5 * height  # three panels side by side

    tree = (run / "config_tree.txt").read_text()
    heads = [line[4:] for line in tree.splitlines() if line[:4] in ("├── ", "└── ")]
    order = ["data", "model", "loss", "optimizer", "scheduler", "sampler", "augment", "trainer"]
    assert heads[:8] == order and "logger" in heads[8:] and "hydra" not in heads
    assert "CSVLogger" in tree and "TensorBoardLogger" in tree
    out = capsys.readouterr().out  # printed: the changed keys only (print_config=full: all)
    assert "├── data" not in out and "logger=many" in out
    assert "logger.tensorboard._target_=lightning.pytorch.loggers.TensorBoardLogger" in out


def test_tensorboard_replaces_csv_and_print_config_off(tmp_path, demo_root, monkeypatch,
                                                        caplog):
    with caplog.at_level(logging.INFO, logger="podium.callbacks"):
        run = short_run(tmp_path, demo_root, monkeypatch, "logger=tensorboard",
                        "print_config=false")
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert not (run / "csv").exists()
    assert not (run / "config_tree.txt").exists()
    assert not (run / "report" / "learning_curves.png").exists()
    assert "no CSV logger" in caplog.text


def test_wandb_offline_writes_inside_the_run_folder(tmp_path, demo_root, monkeypatch):
    wandb = pytest.importorskip("wandb")
    for key in ("WANDB_MODE", "WANDB_DIR", "WANDB_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    try:
        run = short_run(tmp_path, demo_root, monkeypatch, "logger=wandb")
    finally:
        wandb.finish()
    offline = list((run / "wandb").glob("offline-run-*"))
    assert offline and list(offline[0].glob("*.wandb"))


def test_mlflow_file_store_inside_the_run_folder(tmp_path, demo_root, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = short_run(tmp_path, demo_root, monkeypatch, "logger=mlflow")
    logged = list((run / "mlruns").glob("*/*/metrics/val/loss"))
    assert logged, sorted(str(p.relative_to(run)) for p in (run / "mlruns").rglob("*"))[:20]


def hand_made_metrics(path: Path) -> Path:
    rows = []
    for epoch in range(3):
        for step in range(epoch * 4, epoch * 4 + 4):
            rows.append({"epoch": None, "step": step, "lr-AdamW": 0.1 / (epoch + 1)})
            rows.append({"epoch": epoch, "step": step, "train/loss_step": 2.0 - step / 10})
        rows.append({"epoch": epoch, "step": step, "val/loss": 1.5 - epoch / 10,
                     "val/f1_macro": 0.5 + epoch / 10, "val/acc": 0.9})
        rows.append({"epoch": epoch, "step": step, "train/loss_epoch": 1.8 - epoch / 10,
                     "train/f1_macro": 0.4 + epoch / 10})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_learning_curves_draw_loss_monitor_and_lr(tmp_path):
    from podium.callbacks.curves import plot_learning_curves

    out = tmp_path / "report" / "learning_curves.png"
    fig = plot_learning_curves(hand_made_metrics(tmp_path / "metrics.csv"), out, "val/f1_macro")
    with Image.open(out) as image:
        assert image.format == "PNG"
    assert len(fig.axes) == 3
    lines = [{line.get_label(): line for line in ax.get_lines()} for ax in fig.axes]
    assert set(lines[0]) == {"train/loss_epoch", "val/loss"}
    assert list(lines[0]["val/loss"].get_xdata()) == [0, 1, 2]
    assert list(lines[0]["val/loss"].get_ydata()) == pytest.approx([1.5, 1.4, 1.3])
    assert set(lines[1]) == {"train/f1_macro", "val/f1_macro"}
    assert fig.axes[1].get_title() == "val/f1_macro"
    assert list(lines[2]) == ["lr-AdamW"] and len(lines[2]["lr-AdamW"].get_xdata()) == 12


def test_learning_curves_callback_needs_a_csv_logger_and_rank_zero(tmp_path, caplog):
    from lightning.pytorch.loggers import CSVLogger

    from podium.callbacks.curves import LearningCurves

    csv = CSVLogger(tmp_path, name="csv", version="")
    # created as in fit (clears an existing metrics.csv): the file the callback reads
    assert csv.experiment.metrics_file_path == str(Path(csv.log_dir) / "metrics.csv")
    hand_made_metrics(Path(csv.log_dir) / "metrics.csv")
    callback = LearningCurves(str(tmp_path), monitor="val/f1_macro")
    png = tmp_path / "report" / "learning_curves.png"

    callback.on_fit_end(SimpleNamespace(is_global_zero=False, loggers=[csv]), None)
    assert not png.exists()
    with caplog.at_level(logging.INFO, logger="podium.callbacks"):
        callback.on_fit_end(SimpleNamespace(is_global_zero=True, loggers=[]), None)
    assert not png.exists() and "no CSV logger" in caplog.text
    callback.on_fit_end(SimpleNamespace(is_global_zero=True, loggers=[csv]), None)
    assert png.is_file()
