"""Weight averaging (EMA) whose average is the model podium validates, checkpoints and
predicts with."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import WeightAveraging


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
            self._average_model = None  # private WeightAveraging state, checked: lightning 2.6.6

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict) -> None:
        if self._average_model is not None:  # resuming fit; otherwise keep the average
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
