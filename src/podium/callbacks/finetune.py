"""Fine-tuning a pretrained network: the new head learns first, on a frozen backbone or on
its features computed once (linear probing), then the whole network trains."""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial

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


class LinearProbe(L.Callback):
    """Linear probing, then fine-tuning (LP-FT, Kumar et al. 2022): before the first
    training step the new classifier head is fitted alone on the frozen backbone's
    features, so fine-tuning starts from a head that already fits instead of sending a zero
    or random head's gradients into the pretrained features.

    The features are computed once per training image (eval mode, no augmentation, no
    gradient): one forward pass each, where frozen epochs (FreezeBackbone) cost one per
    epoch. The head is a regularised linear model under the run's own loss, fitted by
    L-BFGS (convex: no lr, no epochs); its L2 penalty is chosen among `penalties` by the
    loss on a seeded fifth of the training rows held out, then the head is refitted on
    every training row. Validation rows are not used: they still choose the checkpoint
    alone. A resumed run skips it (the checkpoint holds the head).
    """

    HELD_OUT = 0.2

    def __init__(self, penalties: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1),
                 max_iter: int = 200) -> None:
        if not penalties or min(penalties) < 0:
            raise PodiumError(f"callbacks.linear_probe.penalties={list(penalties)} must be "
                              "one or more L2 penalties >= 0")
        self.penalties, self.max_iter = list(penalties), max_iter

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.ckpt_path:
            return
        start = time.perf_counter()
        head = linear_head(pl_module.net)
        pl_module.set_epoch(0)  # the loss as the first epoch trains
        datamodule = trainer.datamodule
        features, targets = head_inputs(
            pl_module, head, datamodule.loader(datamodule.train_set, datamodule.eval_batch_size))
        fit = partial(fit_linear, head, loss=pl_module.loss, regression=pl_module.regression,
                      max_iter=self.max_iter)
        generator = torch.Generator().manual_seed(int(getattr(datamodule, "seed", 0) or 0))
        order = torch.randperm(len(targets), generator=generator)
        cut = int(len(order) * self.HELD_OUT)
        held, kept = order[:cut], order[cut:]
        losses = {p: fit(features[kept], targets[kept], p, features[held], targets[held])
                  for p in self.penalties} if len(self.penalties) > 1 else {}
        penalty = min(losses, key=losses.get) if losses else self.penalties[0]
        final = fit(features, targets, penalty, features, targets)
        said = ", ".join(f"{p:g}: {v:.4f}" for p, v in losses.items())
        if trainer.is_global_zero:
            print(f"linear probe: the head fitted on {len(targets)} training rows' frozen "
                  f"features ({features.shape[1]} each, one forward pass per row, "
                  f"{time.perf_counter() - start:.0f} s); L2 penalty {penalty:g}"
                  + (f" (held-out loss {said})" if said else "")
                  + f"; training loss {final:.4f}", flush=True)


def linear_head(net: torch.nn.Module) -> torch.nn.Linear:
    from podium.model.optim import classifier_head

    heads = classifier_head(net)
    last = heads[0] if len(heads) == 1 else None
    if isinstance(last, torch.nn.Sequential):  # CifarResNet: pool, flatten, linear
        last = last[-1]
    if type(last) is not torch.nn.Linear:  # a subclass (a cosine head) computes otherwise
        found = type(last).__name__ if last is not None else [type(h).__name__ for h in heads]
        raise PodiumError(f"callbacks.linear_probe needs a torch.nn.Linear classifier head (or "
                          f"a Sequential ending in one), but {type(net).__name__}'s is {found}")
    return last


@torch.no_grad()
def head_inputs(pl_module: L.LightningModule, head: torch.nn.Module, loader
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """What reaches the head (its input, captured by a hook) for every row of `loader`, in
    eval mode, and the rows' targets."""
    captured: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda m, args, out: captured.append(args[0].float()))
    was_training = pl_module.training
    pl_module.eval()
    targets = []
    try:
        for inputs, target in loader:
            pl_module(inputs.to(pl_module.device))
            targets.append(target.to(pl_module.device))
    finally:
        hook.remove()
        pl_module.train(was_training)
    return torch.cat(captured).flatten(1), torch.cat(targets)


def fit_linear(head: torch.nn.Linear, features: torch.Tensor, targets: torch.Tensor,
               penalty: float, eval_features: torch.Tensor, eval_targets: torch.Tensor, *,
               loss: torch.nn.Module, regression: bool, max_iter: int) -> float:
    """`head` fitted from zero by L-BFGS to mean loss + penalty/2 * |weight|^2 (the bias
    free, as scikit-learn's LogisticRegression with C = 1 / (rows * penalty)); returns the
    loss on `eval_features` (no penalty)."""
    def outputs(x: torch.Tensor) -> torch.Tensor:
        out = head(x)
        return out.squeeze(-1) if regression else out

    targets = targets.float() if regression else targets
    eval_targets = eval_targets.float() if regression else eval_targets
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1, max_iter=max_iter,
                                  history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = loss(outputs(features), targets) + penalty / 2 * head.weight.square().sum()
        value.backward()
        return value

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        return float(loss(outputs(eval_features), eval_targets))
