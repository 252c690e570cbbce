"""Checks during training that stop a run with one line instead of a wasted run or a long
traceback."""

from __future__ import annotations

import lightning as L
import torch

from podium.errors import PodiumError
from podium.model.metrics import never_logged


class FiniteLossGuard(L.Callback):
    """Stop at the first non-finite training loss, saying where and what usually causes it.

    Lightning's EarlyStopping(check_finite=True) only looks at the monitored metric once per
    epoch; by then a NaN has already been trained into the weights. The checkpoints written
    before the failing step stay as they were.
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs,
                           batch, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss).all():
            raise PodiumError(
                f"training loss became {loss.item()} at epoch {trainer.current_epoch}, "
                f"batch {batch_idx} (global step {trainer.global_step}): lower optimizer.lr, "
                f"set trainer.gradient_clip_val=1.0, or use trainer.precision=32-true; "
                f"the checkpoints saved before it are kept"
            )


class MonitorCheck(L.Callback):
    """`metric.monitor` must be a logged key: a one-line error listing the logged keys at the
    first validation end, before ModelCheckpoint/EarlyStopping raise their own long ones."""

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        logged = trainer.callback_metrics
        if trainer.sanity_checking or self.monitor in logged or self.monitor.startswith("train/"):
            return
        raise PodiumError(never_logged(self.monitor, logged))
