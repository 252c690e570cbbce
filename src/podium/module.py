"""ClassifierModule: the network, its loss, its metrics and its optimiser, nothing more.

The Trainer owns the loop (train/eval modes, zero_grad/backward/step, accumulation,
precision, checkpointing); this module only says what one step computes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from podium.metrics import classification_metrics


class ClassifierModule(L.LightningModule):
    """Images in as uint8 (N, C, H, W); normalised here, on the device, batched.

    Args:
        net: any classifier returning logits (N, num_classes).
        loss: logits, targets -> scalar; may expose `set_epoch(epoch, max_epochs)`.
        optimizer: factory `params -> Optimizer` (a Hydra `_partial_`).
        scheduler: None, or Lightning's lr-scheduler dict whose `scheduler` is a factory
            `optimizer -> LRScheduler`, plus `interval`, `frequency`, `monitor`.
        class_names: original label values in index order (kept in the checkpoint).
        mean, std: per-channel normalisation in [0, 1] units (kept in the checkpoint).
        channels_last: NHWC memory format; faster convolutions on CPU and tensor cores.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: dict[str, Any] | None = None,
        class_names: Sequence[str] = (),
        mean: Sequence[float] = (0.5,),
        std: Sequence[float] = (0.5,),
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "loss", "optimizer", "scheduler"], logger=False)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.to(memory_format=self.memory_format)
        self.loss = loss
        self.optimizer_factory, self.scheduler_config = optimizer, scheduler
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std_t), persistent=False)
        self.register_buffer(
            "shift", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) / std_t,
            persistent=False,
        )
        metrics = classification_metrics(len(class_names))
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")

    def forward(self, images: Tensor) -> Tensor:
        x = images.float().mul_(self.scale).sub_(self.shift)
        return self.net(x.contiguous(memory_format=self.memory_format))

    def on_train_epoch_start(self) -> None:
        if hasattr(self.loss, "set_epoch"):  # e.g. deferred re-weighting
            self.loss.set_epoch(self.current_epoch, self.trainer.max_epochs)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, targets = batch
        logits = self(images)
        loss = self.loss(logits, targets)
        self.train_metrics.update(logits.detach(), targets)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        images, targets = batch
        logits = self(images)
        self.val_metrics.update(logits, targets)
        self.log("val/loss", self.loss(logits, targets), on_epoch=True, prog_bar=True)
        self.log_dict(self.val_metrics, on_epoch=True, prog_bar=True)

    def predict_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        """Class probabilities (float32): what ensembling and submissions average."""
        return self(batch).float().softmax(dim=1)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if not self.scheduler_config:
            return optimizer
        scheduler = dict(self.scheduler_config)
        scheduler["scheduler"] = scheduler["scheduler"](optimizer)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
