"""What a network's outputs mean before they become predictions.

- A regression network learns a standardised (optionally log1p) target (podium.data.targets):
  `TargetScale` maps its outputs back to the competition's units for the metrics and every
  file, and `OutputLoss` feeds the loss the target in the network's units.
- An ensemble network (TabM) returns one output per member, (N, k, C): the loss is the mean
  of every member's loss (as the TabM paper trains), the prediction the members' mean
  probability (classification) or mean output (regression) (`CompetitionModule`).
"""

from __future__ import annotations

from torch import Tensor, nn


class TargetScale:
    """The DataSpec's `target_scale` ({"transform": none|log1p, "mean", "std"}; empty: the
    identity) as two maps between the competition's units and the network's."""

    def __init__(self, scale: dict | None = None) -> None:
        scale = scale or {}
        self.log1p = scale.get("transform") == "log1p"
        self.mean, self.std = float(scale.get("mean", 0.0)), float(scale.get("std", 1.0))

    def encode(self, y: Tensor) -> Tensor:
        return ((y.log1p() if self.log1p else y) - self.mean) / self.std

    def decode(self, z: Tensor) -> Tensor:
        y = z * self.std + self.mean
        return y.expm1() if self.log1p else y


class OutputLoss(nn.Module):
    """`loss` on what the network outputs: the targets encoded by `scale` (regression), an
    ensemble's k members' outputs (N, k, ...) scored each against the same targets."""

    def __init__(self, loss: nn.Module, scale: TargetScale | None = None,
                 members: bool = False) -> None:
        super().__init__()
        self.loss, self.scale, self.members = loss, scale, members

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        if self.scale is not None:
            targets = self.scale.encode(targets.float())
        if self.members:
            k = outputs.shape[1]
            outputs = outputs.flatten(0, 1)
            targets = targets.repeat_interleave(k, dim=0)
        return self.loss(outputs, targets)

    def set_epoch(self, epoch: int, max_epochs: int) -> None:
        if hasattr(self.loss, "set_epoch"):
            self.loss.set_epoch(epoch, max_epochs)


def member_mean(values: Tensor, ensemble_ndim: int) -> Tensor:
    """The mean over the members (dim 1) when `values` has an ensemble's extra dimension."""
    return values.mean(dim=1) if values.ndim == ensemble_ndim else values


def wrap_loss(loss: nn.Module, net: nn.Module, spec) -> nn.Module:
    """The loss as the module calls it: unchanged for a plain classifier, else OutputLoss."""
    scale = TargetScale(spec.target_scale) if spec.task == "regression" else None
    members = bool(getattr(net, "members", 0))
    if scale is None and not members:
        return loss
    return OutputLoss(loss, scale, members)

