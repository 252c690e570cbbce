"""The hand-written reference podium's long-tailed recipe must beat: a plain PyTorch loop.

Logit-adjusted cross-entropy (Menon et al. 2021, tau 1), SGD lr 0.1 Nesterov (momentum 0.9,
weight decay 5e-4 on every parameter) + OneCycleLR per step, the same shift + flip
augmentation, batch 128, channels-last CifarResNet. Only the data (the cached uint8 images
and the stratified 20 % validation split, seed 42) comes from podium's datamodule, so the
loop is scored on exactly the split podium's runs are scored on. Macro-F1 on that split
after every epoch (scikit-learn); the row reports the best epoch, as podium's runs do, and
the last. Prints one JSON line.

    python scripts/plain_loop.py [--data ../shared/data/cifar10-lt] [--epochs 15] [--depth 8]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import balanced_accuracy_score, f1_score

from podium.data.image import ImageDataModule
from podium.model.augment import RandomFlip, RandomShift
from podium.model.nets import CifarResNet

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cifar10-lt"


def evaluate(net, images, labels, mean, std) -> np.ndarray:
    """Predicted classes of `images` (uint8), in batches of 512."""
    net.eval()
    preds = []
    with torch.no_grad():
        for x in images.split(512):
            x = ((x.float() / 255 - mean) / std).contiguous(memory_format=torch.channels_last)
            preds.append(net(x).argmax(1))
    net.train()
    return torch.cat(preds).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    start = time.perf_counter()

    data = ImageDataModule(str(args.data), seed=args.seed, val_fraction=0.2,
                           cache_dir=str(ROOT / "logs" / ".cache"))
    data.setup("fit")
    train, val = data.train_set, data.val_set
    images, labels = train.inputs[torch.from_numpy(train.index)], train.labels
    val_images, val_labels = val.inputs[torch.from_numpy(val.index)], val.labels.numpy()
    mean = torch.tensor(data.spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.spec.std).view(1, -1, 1, 1)
    counts = torch.bincount(labels, minlength=len(data.class_names)).float()
    log_prior = (counts / counts.sum()).log()

    torch.manual_seed(args.seed)
    net = CifarResNet(depth=args.depth, width=args.width, num_classes=len(counts),
                      in_chans=images.shape[1]).to(memory_format=torch.channels_last)
    augment = torch.nn.Sequential(RandomShift(0.125), RandomFlip())
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                                weight_decay=5e-4)
    steps = args.epochs * -(-len(images) // args.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=steps)

    f1s, balanced, accuracy = [], [], []
    for _ in range(args.epochs):
        for idx in torch.randperm(len(images)).split(args.batch_size):
            x = augment(images[idx]).float()
            x = ((x / 255 - mean) / std).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(net(x) + log_prior, labels[idx])  # logit adjustment
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        pred = evaluate(net, val_images, val_labels, mean, std)
        f1s.append(f1_score(val_labels, pred, average="macro"))
        balanced.append(balanced_accuracy_score(val_labels, pred))
        accuracy.append(float((pred == val_labels).mean()))
    best = int(np.argmax(f1s))
    print(json.dumps({
        "experiment": "plain_loop", "depth": args.depth, "epochs": args.epochs,
        "f1_macro": f1s[best], "balanced_accuracy": balanced[best],
        "accuracy": accuracy[best], "best_epoch": best,
        "f1_macro_last": f1s[-1], "f1_per_epoch": [round(f, 4) for f in f1s],
        "wall_s": round(time.perf_counter() - start, 1),
    }))


if __name__ == "__main__":
    main()
