"""CompetitionModule: the network, its loss, its metrics and its optimiser, nothing more.

The Trainer owns the loop (train/eval modes, zero_grad/backward/step, accumulation,
precision, checkpointing); this module only says what one step computes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection

from podium.model.metrics import task_metrics
from podium.model.optim import check_plateau_monitor, total_training_steps
from podium.model.outputs import TargetScale, member_mean
from podium.spec import DataSpec

TRAIN_METRICS = ("acc", "f1_macro", "mae")
TRAIN_METRICS_EVERY = 32  # training batches buffered between two updates of their metrics


def channels_last_safe(net: nn.Module) -> bool:
    """False when the net has a strided 1x1 convolution over fewer than 8 channels: torch
    2.14.1's channels_last CPU backward of that convolution corrupts the heap on AVX2-only
    processors (`free(): invalid next size`; measured for 2 to 6 input channels, e.g. the
    shortcut of a width-4 CifarResNet). Such nets are tiny: contiguous costs them nothing."""
    return not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride != (1, 1)
                   and m.in_channels < 8 for m in net.modules())


class CompetitionModule(L.LightningModule):
    """The network, its loss, its metrics and its optimiser for one competition task.

    Inputs arrive as uint8 images (N, C, H, W), normalised here on the device, batched; or
    as float feature rows (tabular: the spec has no `mean`, nothing is normalised).

    Args:
        net: any network returning logits (N, num_classes), or (N, 1) for regression.
        spec: podium.spec.DataSpec: task, class names, normalisation; kept in every
            checkpoint (as plain types) so a run folder alone can predict.
        loss: logits, targets -> scalar; may expose `set_epoch(epoch, max_epochs)`.
        optimizer: factory `params -> Optimizer`, called with the network (a Hydra
            `_partial_` of podium.model.optim.build_optimizer, which groups its parameters).
        scheduler: None, or Lightning's lr-scheduler dict whose `scheduler` is a factory
            `optimizer -> LRScheduler`, plus `interval`, `frequency`, `monitor`. A factory
            taking `total_steps` gets the run's optimizer steps from the Trainer.
        channels_last: NHWC memory format; faster convolutions on CPU and tensor cores.
        augment: batch transform applied to each training batch on the device, before
            normalisation (uint8 images in, uint8 out; e.g. podium.model.augment.RandomShift).
        tta: deterministic batch transforms (e.g. a horizontal flip); prediction averages
            the probabilities of the original and every transformed view.
        metric_k: k of map@k, ndcg@k, acc_top{k}.
        mix: (images, labels) -> (images, soft targets (N, C)) after `augment` on training
            batches (podium.model.augment.BatchMix: MixUp/CutMix); the loss gets the soft
            targets, the training metrics the hard labels. May expose `set_epoch`.

    Tasks: multiclass | binary (two logits, softmax) | regression (one output, squeezed;
    float targets; prediction is the output itself) | multilabel (one logit per label,
    sigmoid; multi-hot float targets).
    """

    def __init__(
        self,
        net: nn.Module,
        spec: DataSpec,
        loss: nn.Module | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: dict[str, Any] | None = None,
        channels_last: bool = False,
        augment: Callable[[Tensor], Tensor] | None = None,
        tta: Sequence[Callable[[Tensor], Tensor]] = (),
        metric_k: int = 3,
        mix: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None,
        score_prior: Sequence[float] | Callable[[], Sequence[float]] = (),
    ) -> None:
        super().__init__()
        self.save_hyperparameters({"spec": spec.to_dict(), "channels_last": channels_last,
                                   "metric_k": metric_k}, logger=False)
        self.spec = spec
        self.augment, self.tta, self.mix = augment, list(tta), mix
        self.memory_format = (torch.channels_last if channels_last and channels_last_safe(net)
                              else torch.contiguous_format)
        self.net = net.to(memory_format=self.memory_format)
        self.loss = loss
        self.optimizer_factory, self.scheduler_config = optimizer, scheduler
        self.normalise = len(spec.mean) > 0
        std_t = torch.tensor(spec.std or (1.0,), dtype=torch.float32).view(1, -1, 1, 1)
        mean_t = torch.tensor(spec.mean or (0.0,), dtype=torch.float32).view(1, -1, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std_t), persistent=False)
        self.register_buffer("shift", mean_t / std_t, persistent=False)
        self.regression = spec.task == "regression"
        self.target_scale = TargetScale(spec.target_scale)  # the network's units -> the target's
        self.multilabel = spec.task == "multilabel"
        metrics = task_metrics(spec.task, len(spec.class_names), metric_k)
        # val/: under the test set's class prior (data.test_prior) when one is set: each row
        # weighs test_prior[c] / train_prior[c], and the probabilities move by Bayes' rule
        # from the prior they carry (podium.prior.score_prior) to it, as the submission's
        # will; val_train_prior/: the same rows unweighted, as the network predicts them.
        # A callable score prior follows the loss's epoch (deferred re-weighting).
        self.score_prior_of = score_prior if callable(score_prior) else (lambda: score_prior)
        self.register_buffer("prior_ratio", None, persistent=False)
        self.score_prior: tuple[float, ...] = ()
        self.refresh_score_prior()
        weights = spec.class_weights
        self.val_metrics = (metrics if weights is None else task_metrics(
            spec.task, len(spec.class_names), metric_k, weights)).clone(prefix="val/")
        self.val_train_prior = (None if weights is None
                                else metrics.clone(prefix="val_train_prior/"))
        # On (augmented) training batches two metrics tell over- from under-fitting; the
        # whole collection every step would cost ~10% of a small model's step time.
        train_keys = [k for k in TRAIN_METRICS if k in metrics] or list(metrics)
        self.train_metrics = MetricCollection(  # no merged states (see podium.model.metrics)
            {k: metrics[k] for k in train_keys}, compute_groups=False).clone(prefix="train/")
        self.train_loss = MeanMetric()  # train/loss_epoch, weighted by batch size
        self.train_batches: list[tuple[Tensor, Tensor, Tensor]] = []

    def forward(self, images: Tensor) -> Tensor:
        if not self.normalise:
            return self.net(images.float())
        # converted into a new tensor of the net's layout: a one-channel batch's strides can
        # pass for both layouts (a shifted batch is channels-last), and the convolutions then
        # run channels-last whatever the net's format (see channels_last_safe)
        x = torch.empty_like(images, dtype=torch.float32, memory_format=self.memory_format)
        return self.net(x.copy_(images).mul_(self.scale).sub_(self.shift))

    def outputs_and_scores(self, inputs: Tensor, targets: Tensor
                           ) -> tuple[Tensor, Tensor, Tensor]:
        """(what the loss takes, what the metrics take, targets): regression squeezes
        (N, 1) -> (N,) with float targets; classification metrics get probabilities."""
        outputs = self(inputs)
        if self.regression:
            outputs = outputs.squeeze(-1)  # (N,), or (N, k) from an ensemble's k members
            scores = self.target_scale.decode(member_mean(outputs.detach().float(), 2))
            return outputs, scores, targets.float()
        return outputs, self.probabilities(outputs.detach().float()), targets

    def probabilities(self, logits: Tensor) -> Tensor:
        """Softmax over the classes; multilabel: a sigmoid per label (labels are not exclusive).
        An ensemble's (N, k, C) logits: its members' mean probability."""
        probs = logits.sigmoid() if self.multilabel else logits.softmax(dim=-1)
        return member_mean(probs, 3)

    def on_train_epoch_start(self) -> None:
        self.set_epoch(self.current_epoch)

    def set_epoch(self, epoch: int) -> None:
        """The loss and the mix as they train in `epoch` (e.g. deferred re-weighting, clean
        last epochs), and the class prior the probabilities carry then."""
        max_epochs = self.trainer.max_epochs if self._trainer is not None else None
        for part in (self.loss, self.mix):
            if hasattr(part, "set_epoch") and max_epochs is not None:
                part.set_epoch(epoch, max_epochs)
        self.refresh_score_prior()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint validates and predicts as it was trained: the loss (and the score
        prior) of its own epoch, not of the last epoch fitted."""
        if "epoch" in checkpoint:
            self.set_epoch(int(checkpoint["epoch"]))

    def refresh_score_prior(self) -> None:
        """`score_prior` and the Bayes move of validation (`prior_ratio`) as they are now."""
        from podium.prior import bayes_ratio

        self.score_prior = tuple(float(p) for p in self.score_prior_of())
        if self.spec.class_weights is None or not self.score_prior:
            return
        device = self.prior_ratio.device if self.prior_ratio is not None else None
        self.prior_ratio = torch.tensor(bayes_ratio(self.score_prior, self.spec.test_prior),
                                        dtype=torch.float32, device=device)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, targets = batch
        if self.augment is not None:
            images = self.augment(images)
        soft = None
        if self.mix is not None:  # MixUp/CutMix: soft targets for the loss only
            images, soft = self.mix(images, targets)
        logits, scores, targets = self.outputs_and_scores(images, targets)
        loss = self.loss(logits, targets if soft is None else soft)
        self.train_batches.append((scores, targets, loss.detach()))
        if len(self.train_batches) == TRAIN_METRICS_EVERY:
            self.update_train_metrics()
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            # only on the steps the loggers write (Lightning's rule): each self.log costs
            # ~1 ms, a few % of a small model's step
            self.log("train/loss_step", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        images, targets = batch
        logits, scores, targets = self.outputs_and_scores(images, targets)
        self.val_metrics.update(self.under_test_prior(scores), targets)
        self.log("val/loss", self.loss(logits, targets), on_epoch=True, prog_bar=True)
        self.log_dict(self.val_metrics, on_epoch=True, prog_bar=True)
        if self.val_train_prior is not None:
            self.val_train_prior.update(scores, targets)
            self.log_dict(self.val_train_prior, on_epoch=True)

    def under_test_prior(self, probs: Tensor) -> Tensor:
        """The probabilities moved to data.test_prior by Bayes' rule, as podium.prior.shift
        moves the files' (as they are without a test prior)."""
        if self.prior_ratio is None:
            return probs
        moved = probs * self.prior_ratio.to(probs.dtype)
        return moved / moved.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(probs.dtype).tiny)

    def predict_step(self, batch: Tensor | tuple[Tensor, Tensor], batch_idx: int,
                     dataloader_idx: int = 0) -> Tensor:
        """Class probabilities (float32): what ensembles average. With `tta` views, both
        the plain prediction and the mean over every view, (N, 2, C), from one pass over the
        data, so that the views are proven against the plain prediction without a second."""
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        views = [self.prediction(images)] + [self.prediction(t(images)) for t in self.tta]
        if len(views) == 1:
            return views[0]
        return torch.stack([views[0], torch.stack(views).mean(dim=0)], dim=1)

    def prediction(self, images: Tensor) -> Tensor:
        """Probabilities; regression: the output itself (N, 1), test_probs.csv's column."""
        outputs = self(images).float()
        if self.regression:
            return self.target_scale.decode(member_mean(outputs, 3))
        return self.probabilities(outputs)

    def update_train_metrics(self) -> None:
        """Update the training metrics with the buffered batches at once: an update costs
        ~1 ms of Python whatever its size, a few % of a small model's step."""
        if not self.train_batches:
            return
        scores, targets, losses = zip(*self.train_batches, strict=True)
        self.train_metrics.update(torch.cat(scores), torch.cat(targets))
        sizes = torch.tensor([len(t) for t in targets], dtype=torch.float32)
        self.train_loss.update(torch.stack(losses).float(), sizes.to(losses[0].device))
        self.train_batches.clear()

    def on_train_epoch_end(self) -> None:
        # computed and logged once per epoch: Lightning's self.log costs ~1 ms per call
        self.update_train_metrics()
        self.log_dict({"train/loss_epoch": self.train_loss.compute(),
                       **self.train_metrics.compute()})
        self.train_loss.reset()
        self.train_metrics.reset()
        check_plateau_monitor(self.trainer)  # a one-line error instead of Lightning's

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.net)
        if not self.scheduler_config:
            return optimizer
        scheduler = dict(self.scheduler_config)
        factory = scheduler["scheduler"]
        if "total_steps" in inspect.signature(factory).parameters:  # warmup_cosine, one_cycle
            factory = partial(factory, total_steps=total_training_steps(self.trainer))
        scheduler["scheduler"] = factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
