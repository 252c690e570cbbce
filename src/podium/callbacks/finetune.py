"""Fine-tuning a pretrained network: its backbone frozen while the new head learns."""

from __future__ import annotations

import lightning as L
import torch

from podium.errors import PodiumError


class FreezeBackbone(L.Callback):
    """Fine-tuning: the backbone (everything but the classifier head) frozen for the first
    `epochs` epochs while the new head learns, then trained with it.

    Lightning's `BaseFinetuning.freeze` / `make_trainable` do the (un)freezing: parameters
    stop requiring gradients and BatchNorm layers stop updating their statistics. Unlike
    Lightning's BackboneFinetuning, which adds the backbone to the optimizer as a new group
    when it unfreezes (a group the lr scheduler never learns about), the optimizer holds
    every parameter from the start: torch's optimizers skip a parameter without a
    gradient, so the frozen ones stay put (no momentum, no weight decay), and the schedule
    and the groups (`model.backbone_lr_mult`, `model.layer_decay`) cover the backbone from
    the first step it trains. Decided per epoch, so a resumed run freezes the same way.
    """

    def __init__(self, epochs: int = 1) -> None:
        if epochs < 0:
            raise PodiumError(f"callbacks.freeze_backbone.epochs={epochs} must be >= 0")
        self.epochs = epochs

    @staticmethod
    def backbone(net: torch.nn.Module) -> list[torch.nn.Module]:
        from lightning.pytorch.callbacks import BaseFinetuning

        from podium.model.optim import classifier_head

        heads = classifier_head(net)
        if not heads:
            raise PodiumError(f"callbacks.freeze_backbone needs a classifier head, but "
                              f"{type(net).__name__} has neither get_classifier() (timm) "
                              "nor .head")
        head = {id(m) for h in heads for m in h.modules()}
        return [m for m in BaseFinetuning.flatten_modules(net) if id(m) not in head]

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from lightning.pytorch.callbacks import BaseFinetuning

        modules = self.backbone(pl_module.net)
        if trainer.current_epoch < self.epochs:
            BaseFinetuning.freeze(modules, train_bn=False)
        else:
            BaseFinetuning.make_trainable(modules)
