"""The callbacks Lightning lacks: writing predictions as competition files, weight
averaging (EMA) whose average is the model podium validates, checkpoints and predicts with,
reports, checks and fine-tuning (resume-safe checkpoints: podium.checkpoints)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, WeightAveraging

from podium.checkpoints import checkpoint_epoch
from podium.datamodule import PREDICT_SETS
from podium.errors import PodiumError
from podium.io import write_atomic
from podium.metrics import LABEL_METRICS, never_logged
from podium.submission import Shape, choose_format, probs_frame, write_submission
from podium.thresholds import best_threshold

log = logging.getLogger(__name__)


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


class SubmissionWriter(BasePredictionWriter):
    """After `trainer.predict`, write `test_probs.csv`, a validated `submission.csv` and
    `oof.csv` (the validation split's probabilities: out-of-fold under cross-validation).

    Ids, the sample submission and the class names come from the datamodule, so the file
    always follows the sample submission's header and order with the original labels. The
    shape (podium.submission.choose_format) is decided, printed and checked when the run
    starts, so a sample submission that fits no format stops it before any training.
    """

    def __init__(self, output_dir: str, format: str = "auto", competition: str | None = None,
                 k: int = 3) -> None:
        super().__init__(write_interval="epoch")
        self.output_dir = Path(output_dir)
        self.format, self.competition, self.k = format, competition, k
        self.shape: Shape | None = None
        self.path: Path | None = None  # the submission written (submission-N.csv if taken)
        self.threshold: dict | None = None  # a binary label file's learned decision threshold

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        data = trainer.datamodule
        if data is None or data.sample is None or self.shape is not None:
            return
        self.shape = choose_format(self.format, data.sample, data.id_col, data.class_names,
                                   data.task, f"val/{self.competition}", self.k)
        if trainer.is_global_zero:
            print(f"submission format: {self.shape.format} ({self.shape.why})", flush=True)

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           predictions, batch_indices) -> None:
        data = trainer.datamodule
        if data is None:
            return
        gathered = gather_predictions(trainer, predictions, batch_indices)  # every rank
        if not trainer.is_global_zero:
            return
        # no validation split (data.val_fraction=0): the test set only, and no oof.csv
        by_name = dict(zip(PREDICT_SETS, (p.numpy() for p in gathered), strict=False))
        test, val = by_name["test"], by_name.get("val")
        if len(test) != len(data.test_ids) or len(val if val is not None else ()) != len(
                data.val_ids):
            log.warning("predicted only part of the data (fast_dev_run or limit_predict_"
                        "batches): no submission written")
            return
        shape = self.shape
        if data.task == "binary" and shape.format == "label" and val is not None and \
                self.competition in LABEL_METRICS:  # the cut that the metric wants, not 0.5
            self.threshold = best_threshold(val[:, 1], data.labels[data.val_idx],
                                            self.competition)
            shape = replace(shape, threshold=self.threshold["threshold"])
        path = self.path = write_submission(self.output_dir, data.sample, data.test_ids, test,
                                            data.class_names, data.id_col, data.task, shape)
        log.info("submission written to %s", path)
        if val is None:
            log.info("no validation split (data.val_fraction=0): no oof.csv written")
            return
        oof = probs_frame(data.val_ids, val, data.class_names, data.id_col)
        oof.insert(1, "fold", data.fold or 0)
        oof.insert(2, data.target_col, data.val_labels)
        write_atomic(self.output_dir / "oof.csv", oof.to_csv(index=False))


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


class ClassReport(BasePredictionWriter):
    """After `trainer.predict` (the best checkpoint), the validation split's per-class
    precision/recall/F1/support table and confusion matrix in `report/` (classification)."""

    def __init__(self, output_dir: str) -> None:
        super().__init__(write_interval="epoch")
        self.output_dir = Path(output_dir)

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           predictions, batch_indices) -> None:
        from podium.report import write_class_report

        data = trainer.datamodule
        if (not trainer.is_global_zero or data is None or not data.has_validation
                or len(predictions) < 2 or data.task == "regression"):
            return
        val = torch.cat(predictions[PREDICT_SETS.index("val")]).float().cpu().numpy()
        if len(val) != len(data.val_idx):
            return  # fast_dev_run / limit_predict_batches: part of the split only
        write_class_report(self.output_dir, data.labels[data.val_idx], val, data.class_names)


class MonitorCheck(L.Callback):
    """`metric.monitor` must be a logged key: a one-line error listing the logged keys at the
    first validation end, before ModelCheckpoint/EarlyStopping raise their own long ones."""

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        logged = trainer.callback_metrics
        if trainer.sanity_checking or self.monitor in logged or self.monitor.startswith("train/"):
            return
        raise PodiumError(never_logged(self.monitor, logged))


class LearningCurves(L.Callback):
    """At the end of fit, `report/learning_curves.png` from the CSV logger's metrics.csv:
    loss, the monitored metric and the learning rate, with best.ckpt's epoch marked (rank
    zero; needs `logger` to hold a CSVLogger, otherwise it says so in the log and draws
    nothing)."""

    def __init__(self, output_dir: str, monitor: str | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.monitor = monitor

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from lightning.pytorch.loggers import CSVLogger

        from podium.curves import plot_learning_curves

        if not trainer.is_global_zero:
            return
        csv = next((lg for lg in trainer.loggers if isinstance(lg, CSVLogger)), None)
        if csv is None:
            log.info("no CSV logger (logger=csv or many): no learning curves drawn")
            return
        csv.save()  # flush what is still buffered
        metrics = Path(csv.log_dir) / "metrics.csv"
        if not metrics.is_file():
            log.info("%s was not written: no learning curves drawn", metrics)
            return
        checkpoint = getattr(trainer, "checkpoint_callback", None)
        monitor = self.monitor or getattr(checkpoint, "monitor", None)
        path = self.output_dir / "report" / "learning_curves.png"
        plot_learning_curves(metrics, path, monitor,
                             best_epoch=checkpoint_epoch(getattr(checkpoint, "best_model_path",
                                                                 None)))
        log.info("learning curves written to %s", path)


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

        from podium.optim import classifier_head

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
