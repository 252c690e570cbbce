"""The callbacks Lightning lacks: writing predictions as competition files, and weight
averaging (EMA) whose average is the model podium validates, checkpoints and predicts with."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, WeightAveraging

from podium.errors import PodiumError
from podium.submission import probs_frame, write_atomic, write_submission

log = logging.getLogger(__name__)


class SubmissionWriter(BasePredictionWriter):
    """After `trainer.predict`, write `test_probs.csv`, a validated `submission.csv` and
    `oof.csv` (the validation split's probabilities: out-of-fold under cross-validation).

    Ids, the sample submission and the class names come from the datamodule, so the file
    always follows the sample submission's header and order with the original labels.
    """

    def __init__(self, output_dir: str) -> None:
        super().__init__(write_interval="epoch")
        self.output_dir = Path(output_dir)

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           predictions, batch_indices) -> None:
        data = trainer.datamodule
        if not trainer.is_global_zero or data is None:
            return
        test, val = (torch.cat(p).float().cpu().numpy() for p in predictions)
        if len(test) != len(data.test_ids) or len(val) != len(data.val_ids):
            log.warning("predicted only part of the data (fast_dev_run or limit_predict_"
                        "batches): no submission written")
            return
        path = write_submission(self.output_dir, data.sample, data.test_ids, test,
                                data.class_names, data.id_col)
        oof = probs_frame(data.val_ids, val, data.class_names, data.id_col)
        oof.insert(1, "fold", data.fold or 0)
        oof.insert(2, data.target_col, data.val_labels)
        write_atomic(self.output_dir / "oof.csv", oof.to_csv(index=False))
        log.info("submission written to %s", path)


class AveragedWeights(WeightAveraging):
    """Lightning's WeightAveraging (EMA with `multi_avg_fn=get_ema_multi_avg_fn(decay)`),
    made to hand its average to podium's `validate/predict(ckpt_path=best.ckpt)`.

    During fit Lightning validates the average and writes it as every checkpoint's
    `state_dict` (the raw weights go to `current_model_state`), so best.ckpt holds the
    average. But when a later `trainer.validate/predict` on the same Trainer restores that
    checkpoint, Lightning loads `current_model_state` back into the model, and prediction
    would use the raw weights. The average here lives only during fit: afterwards the
    checkpoint's `state_dict` (the average) is what validation and prediction use.
    """

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        if stage == "fit":
            self._average_model = None

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict) -> None:
        if self._average_model is not None:  # resuming fit; otherwise keep the average
            super().on_load_checkpoint(trainer, pl_module, checkpoint)


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

