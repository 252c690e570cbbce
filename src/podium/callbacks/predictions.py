"""A run's predictions as files: `test_probs.csv` and `oof.csv` (podium.run), nothing more.

After `trainer.predict` with the best checkpoint, the test set's and the oof rows'
probabilities are written (the oof rows: a hold-out's validation split, or a fold's held-out
rows, which under k-fold chose nothing: podium.data.splits.nested_split); the submission is
made from them by the one road every ensemble takes (podium.submission.ensemble). With
test-time augmentation the module predicts both views in the same pass
(podium.model.module), and `*_tta.csv` hold the averaged views.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from podium import run
from podium.data.base import PREDICT_SETS
from podium.io import write_atomic

log = logging.getLogger(__name__)


def plain_view(probs: torch.Tensor) -> torch.Tensor:
    """The prediction without test-time augmentation: (N, C) of (N, C) or (N, 2, C)."""
    return probs[:, 0] if probs.ndim == 3 else probs


def tta_view(probs: torch.Tensor) -> torch.Tensor | None:
    """The prediction averaged over the tta views, None when there were none."""
    return probs[:, 1] if probs.ndim == 3 else None


def gather_predictions(trainer: L.Trainer, predictions, batch_indices) -> list[torch.Tensor]:
    """One tensor per predict dataloader, in dataset order, with every rank's shard.

    Under DDP, `trainer.predict` gives each rank a disjoint shard (Lightning's
    UnrepeatedDistributedSampler: no padding); the dataset indices of each shard come
    with it, so the shards are gathered and put back in order. Call it on every rank.
    """
    if predictions and isinstance(predictions[0], torch.Tensor):  # one dataloader: flat
        predictions, batch_indices = [predictions], [batch_indices]
    if trainer.world_size == 1:
        return [torch.cat(p).float().cpu() for p in predictions]
    import torch.distributed as dist

    local = [(torch.cat(p).float().cpu(), [i for batch in idx for i in batch])
             for p, idx in zip(predictions, batch_indices, strict=True)]

    shards: list = [None] * trainer.world_size
    dist.all_gather_object(shards, local)
    gathered = []
    for k in range(len(local)):
        probs = torch.cat([shard[k][0] for shard in shards])
        index = torch.tensor([i for shard in shards for i in shard[k][1]])
        gathered.append(probs[index.argsort()])
    return gathered


class GatheredWriter(BasePredictionWriter):
    """A writer of `trainer.predict`'s output that sees every rank's rows: the test set's
    and the oof rows' predictions, gathered (in order) on rank zero, which calls
    `write(datamodule, test, oof)` (oof: None without oof rows)."""

    def __init__(self, output_dir: str) -> None:
        super().__init__(write_interval="epoch")
        self.output_dir = Path(output_dir)

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           predictions, batch_indices) -> None:
        if trainer.datamodule is None:
            return
        gathered = gather_predictions(trainer, predictions, batch_indices)  # every rank
        if trainer.is_global_zero:
            by_name = dict(zip(PREDICT_SETS, gathered, strict=False))
            self.write(trainer.datamodule, by_name["test"], by_name.get("oof"))

    def write(self, data, test: torch.Tensor, oof: torch.Tensor | None) -> None:
        raise NotImplementedError


class PredictionWriter(GatheredWriter):
    """After `trainer.predict`: `test_probs.csv` and, with oof rows, `oof.csv` (the hold-out,
    or the fold's held-out rows under cross-validation); `test_probs_tta.csv`/`oof_tta.csv`
    with tta views. Rows are gathered from every rank under DDP; rank zero writes."""

    def write(self, data, test: torch.Tensor, oof: torch.Tensor | None) -> None:
        if len(test) != len(data.test_ids) or len(oof if oof is not None else ()) != len(
                data.oof_idx):
            log.warning("predicted only part of the data (fast_dev_run or limit_predict_"
                        "batches): no predictions written")
            return
        for view, name in ((plain_view, lambda n: n), (tta_view, run.tta_name)):
            if view(test) is None:
                continue
            write_atomic(self.output_dir / name(run.TEST_PROBS), run.probs_frame(
                data.test_ids, view(test).numpy(), data.class_names, data.id_col
            ).to_csv(index=False))
            if oof is not None:
                write_atomic(self.output_dir / name(run.OOF), run.oof_frame(
                    data.oof_ids, view(oof).numpy(), data.class_names, data.id_col,
                    data.fold or 0, data.target_col, data.oof_labels
                ).to_csv(index=False))
