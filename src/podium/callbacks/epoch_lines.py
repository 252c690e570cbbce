"""One plain line per epoch for output that is not a terminal (a file, a pipe, a job log).

Lightning's progress bar draws only on a terminal: sent to a file, a 14-minute run shows
nothing until it ends. `EpochLines` prints, once each epoch is complete,

epoch=3  train/loss=0.8123  val/f1_macro=0.4567 (best)  lr=2.25e-03  elapsed=0:00:41  eta=0:02:13

(rank zero, flushed at once; a cross-validation's fold adds `cv_eta=`, the time left to its
last fold at this fold's pace) and switches the progress bar off there, since its redraws
are noise in a file. On a terminal the bar stays as it is (`enabled: auto`). Either way
the fit starts with one line: budget, device, the rule that picks best.ckpt.
"""

from __future__ import annotations

import math
import sys
import time
from datetime import timedelta

import lightning as L

from podium.errors import PodiumError


def setting(enabled: bool | str) -> bool | str:
    """`auto`, True or False (the strings `true`/`false` too); anything else is an error."""
    if isinstance(enabled, str) and enabled.lower() in ("true", "false"):
        enabled = enabled.lower() == "true"
    if enabled == "auto" or isinstance(enabled, bool):
        return enabled
    raise PodiumError(f"callbacks.epoch_lines.enabled={enabled!r} must be auto, true or "
                      "false (auto: one line per epoch when stdout is not a terminal)")


def wants_lines(enabled: bool | str) -> bool:
    """`auto`: lines when stdout is not a terminal; `true`/`false` force them on/off."""
    enabled = setting(enabled)
    return not sys.stdout.isatty() if enabled == "auto" else enabled


def clock(seconds: float) -> str:
    """H:MM:SS, whole seconds."""
    return str(timedelta(seconds=round(seconds)))


def number(value) -> str:
    """A logged value as 4 decimals; `-` when it was not logged."""
    if value is None:
        return "-"
    value = float(value)
    return f"{value:.4f}" if math.isfinite(value) else str(value)


class EpochLines(L.Callback):
    """Print one line per finished training epoch: epoch (0-based, as in csv/metrics.csv),
    `train/loss` (the epoch mean, train/loss_epoch), the monitored metric (`-` in an epoch
    without validation; `(best)` when it improved), the learning rate of the epoch's last
    step (the largest over parameter groups: the head's), elapsed time and an estimate of
    the time left (to trainer.max_epochs / max_steps; early stopping can end sooner).

    The line is printed when the next epoch starts or training ends: the epoch's train
    loss is logged by the LightningModule after the callbacks' `on_train_epoch_end`.
    """

    def __init__(self, enabled: bool | str = "auto", monitor: str | None = None,
                 mode: str = "max", folds_after: float = 0) -> None:
        self.enabled = setting(enabled)  # a bad value fails when the trainer is built
        self.monitor, self.mode = monitor, mode
        self.folds_after = folds_after  # a cv: the folds still to run after this one, per job
        self.active = False  # printing epoch lines in this fit
        self.announce = False  # printing the first line (on a terminal too, unless false)
        self.pending: int | None = None  # the finished epoch whose line is not printed yet
        self.validated: int | None = None  # the last epoch that ran validation
        self.best: float | None = None
        self.lr: float | None = None
        self.start = 0.0
        self.first_epoch = self.first_step = 0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self.active = trainer.is_global_zero and wants_lines(self.enabled)
        self.announce = trainer.is_global_zero and self.enabled is not False
        bar = trainer.progress_bar_callback
        if self.active and bar is not None and not sys.stdout.isatty():
            bar.disable()  # its redraws land in the file as noise; the lines replace it

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.announce:
            print(self.first_line(trainer), flush=True)
        self.start = time.monotonic()
        self.first_epoch, self.first_step = trainer.current_epoch, trainer.global_step
        score = getattr(trainer.checkpoint_callback, "best_model_score", None)
        self.best = float(score) if score is not None else None  # kept across a resume

    def first_line(self, trainer: L.Trainer) -> str:
        """The budget, the device (Lightning's own device lines are silenced) and the rule
        that picks best.ckpt."""
        budget = (f"epochs {trainer.current_epoch}..{trainer.max_epochs - 1}"
                  if trainer.max_epochs and trainer.max_epochs > 0
                  else f"{trainer.max_steps} steps")
        return (f"fit: {budget}, {trainer.num_training_batches} batches each, on "
                f"{trainer.strategy.root_device} x{trainer.world_size}; best checkpoint by "
                f"{self.monitor} ({self.mode})")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch,
                             batch_idx: int) -> None:
        if self.active and trainer.optimizers:  # the lr this step uses (before it is stepped)
            self.lr = max(group["lr"] for group in trainer.optimizers[0].param_groups)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.validated = trainer.current_epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.active:
            self.pending = trainer.current_epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.flush(trainer, final=False)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.flush(trainer, final=True)

    def flush(self, trainer: L.Trainer, final: bool) -> None:
        if self.pending is None:
            return
        print(self.line(trainer, self.pending, final), flush=True)
        self.pending = None

    def line(self, trainer: L.Trainer, epoch: int, final: bool) -> str:
        logged = trainer.callback_metrics
        parts = [f"epoch={epoch}", f"train/loss={number(logged.get('train/loss_epoch'))}"]
        if self.monitor and self.monitor != "train/loss":
            fresh = self.validated == epoch or self.monitor.startswith("train/")
            value = logged.get(self.monitor) if fresh else None
            parts.append(f"{self.monitor}={number(value)}{self.mark_best(value)}")
        parts.append(f"lr={self.lr:.2e}" if self.lr is not None else "lr=-")
        elapsed = time.monotonic() - self.start
        left = 0 if final else self.remaining(trainer, epoch, elapsed)
        parts += [f"elapsed={clock(elapsed)}", f"eta={clock(left)}"]
        if self.folds_after:
            parts.append(f"cv_eta={clock(left + self.folds_after * (elapsed + left))}")
        return "  ".join(parts)

    def mark_best(self, value) -> str:
        if value is None or not math.isfinite(float(value)):
            return ""
        value = float(value)
        better = self.best is None or (value > self.best if self.mode == "max"
                                       else value < self.best)
        if better:
            self.best = value
        return " (best)" if better else ""

    def remaining(self, trainer: L.Trainer, epoch: int, elapsed: float) -> float:
        """Seconds left at this run's pace: the nearer of max_epochs and max_steps."""
        estimates = []
        if trainer.max_epochs and trainer.max_epochs > 0:
            per_epoch = elapsed / (epoch - self.first_epoch + 1)
            estimates.append(per_epoch * max(trainer.max_epochs - epoch - 1, 0))
        steps = trainer.global_step - self.first_step
        if trainer.max_steps and trainer.max_steps > 0 and steps > 0:
            estimates.append(elapsed / steps * max(trainer.max_steps - trainer.global_step, 0))
        return min(estimates) if estimates else 0.0
