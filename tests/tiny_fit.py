"""Short real fits on the demo folder for the optimisation tests.

A tiny ResNet (depth 8, width 4) on 8x8 digits, one torch thread (two threads spin and
stall when another process holds a core), the LR logged at every optimizer step.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from conftest import make_cfg

TINY = ["model.net.depth=8", "model.net.width=4", "++trainer.limit_val_batches=1",
        "trainer.log_every_n_steps=1", "++trainer.enable_progress_bar=false"]
TRAIN_BATCHES = 5  # the demo's training split: 368 images, batch 64, drop_last


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fit(tmp_path: Path, demo_root: Path, overrides: list[str] = (), callbacks: list = (),
        ckpt_path: str | None = None):
    """Compose the real config, fit; returns (cfg, trainer, module, datamodule)."""
    from podium.build import build_run

    cfg = make_cfg(tmp_path, [f"data.root={demo_root}", f"data.demo_root={demo_root}",
                              *TINY, *overrides])
    datamodule, module, trainer = build_run(cfg)
    trainer.callbacks.extend(callbacks)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return cfg, trainer, module, datamodule


def logged_lrs(run_dir: Path) -> pd.DataFrame:
    """LearningRateMonitor's columns of csv/metrics.csv: one row per optimizer step.

    Under accumulation the monitor logs once per batch with the same step; those rows must
    agree. Columns: `lr-<Optimizer>/<param group>`.
    """
    frame = pd.read_csv(run_dir / "csv" / "metrics.csv")
    lr = frame[["step", *[c for c in frame.columns if c.startswith("lr-")]]].dropna()
    assert (lr.groupby("step").nunique() == 1).all().all(), "one lr per optimizer step"
    return lr.groupby("step").first()


class FakeMetric(Callback):
    """Logs `val/fake` = values[epoch] at each validation: a metric the test controls."""

    def __init__(self, values: list[float]) -> None:
        self.values = values

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        pl_module.log("val/fake", self.values[trainer.current_epoch])
