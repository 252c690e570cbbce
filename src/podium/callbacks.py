"""The callbacks Lightning lacks: writing predictions as competition files."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from podium.submission import write_submission

log = logging.getLogger(__name__)


class SubmissionWriter(BasePredictionWriter):
    """After `trainer.predict`, write `test_probs.csv` and a validated `submission.csv`.

    Ids, the sample submission and the class names come from the datamodule, so the file
    always follows the sample submission's header and order with the original labels.
    """

    def __init__(self, output_dir: str) -> None:
        super().__init__(write_interval="epoch")
        self.output_dir = Path(output_dir)
        self.path: Path | None = None

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           predictions, batch_indices) -> None:
        if not trainer.is_global_zero:
            return
        data = trainer.datamodule
        probs = torch.cat(predictions).float().cpu().numpy()
        if len(probs) != len(data.test_ids):  # fast_dev_run / limit_predict_batches
            log.warning("predicted %d of %d test images: no submission written",
                        len(probs), len(data.test_ids))
            return
        self.path = write_submission(self.output_dir, data.sample, data.test_ids, probs,
                                     data.class_names, data.id_col)
        log.info("submission written to %s", self.path)
