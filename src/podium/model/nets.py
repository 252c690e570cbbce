"""Networks: a small CIFAR-style ResNet (fast on CPU) and any timm model by name."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class BasicBlock(nn.Module):
    """3x3 -> 3x3 residual block; a 1x1 projection when the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn1(self.conv1(x)).relu()
        return (self.bn2(self.conv2(out)) + self.shortcut(x)).relu()


class CosineLinear(nn.Linear):
    """Cosine-similarity classifier: logits in [-1, 1] (what LDAM's scale s=30 expects)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))


class CifarResNet(nn.Module):
    """ResNet for small images (He et al. 2016, sec. 4.2): depth 6n+2, widths w, 2w, 4w.

    depth=20 is ResNet-20, depth=32 the ResNet-32 of the long-tail papers, depth=8 a
    quick baseline. Works for any input size >= 4 pixels (global average pooling).
    `cosine_head=True` swaps the linear classifier for a cosine one (LDAM's setting).
    """

    def __init__(self, depth: int = 20, num_classes: int = 10, in_chans: int = 3,
                 width: int = 16, cosine_head: bool = False) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"model.net.depth={depth}: use 6n+2 (8, 14, 20, 32, 44, 56, 110)")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        layers, planes = [], width
        for stage, out in enumerate((width, 2 * width, 4 * width)):
            for block in range(n):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(BasicBlock(planes, out, stride))
                planes = out
        self.layers = nn.Sequential(*layers)
        classifier = CosineLinear if cosine_head else nn.Linear
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), classifier(planes, num_classes)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layers(self.stem(x)))


class MLP(nn.Module):
    """Tabular features (N, F) -> logits (N, num_classes) (regression: num_classes = 1).

    Linear -> ReLU -> Dropout per hidden layer; any input is flattened first, so
    (N, C, H, W) images work too. The last layer is `head` (see optim.classifier_head).
    With a table's `features` (the DataSpec's column layout) the category columns are
    one-hot encoded (or embedded: podium.model.tabular.TableInputs) first.
    """

    def __init__(self, in_features: int, num_classes: int, hidden: tuple[int, ...] = (128, 64),
                 dropout: float = 0.1, features: dict | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        if features:
            from podium.model.tabular import TableInputs

            inputs = TableInputs(features)
            layers, in_features = [inputs], sum(inputs.widths)
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))
