"""Learning curves from the CSV logger's metrics.csv: `report/learning_curves.png`.

Three panels: the loss (train/loss_epoch and val/loss per epoch), the monitored metric
(val/<name>, with train/<name> when it is logged) per epoch, and the learning rate
(LearningRateMonitor's lr-* columns) per optimizer step; a dashed line marks the epoch of
the best checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import pandas as pd

from podium.callbacks.checkpoints import checkpoint_epoch

log = logging.getLogger(__name__)


def per_epoch(frame: pd.DataFrame, column: str) -> pd.Series:
    """The last logged value of `column` in each epoch (epoch-level rows only)."""
    rows = frame.dropna(subset=[column])
    return rows.groupby("epoch")[column].last()


def plot_learning_curves(metrics_csv: Path, output: Path, monitor: str | None = None,
                         best_epoch: int | None = None):
    """Draw the three panels from `metrics_csv` into `output` (PNG); returns the figure.
    `best_epoch` (best.ckpt's) is marked on the loss and metric panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = pd.read_csv(metrics_csv)
    if "epoch" not in frame:
        frame["epoch"] = 0
    if not monitor or monitor not in frame:
        monitor = next((c for c in frame.columns if c.startswith("val/") and c != "val/loss"),
                       None)

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    loss_ax, metric_ax, lr_ax = axes
    for column in ("train/loss_epoch", "val/loss"):
        if column in frame:
            curve = per_epoch(frame, column)
            loss_ax.plot(curve.index, curve.values, marker=".", label=column)
    loss_ax.set(title="loss", xlabel="epoch")

    if monitor:
        train_twin = "train/" + monitor.split("/", 1)[-1]
        for column in (train_twin, monitor):
            if column in frame and column != "train/loss":
                curve = per_epoch(frame, column)
                is_monitor = column == monitor
                metric_ax.plot(curve.index, curve.values, marker=".", label=column,
                               linewidth=2 if is_monitor else 1)
    metric_ax.set(title=monitor or "no val/ metric logged", xlabel="epoch")
    if best_epoch is not None:
        for ax in (loss_ax, metric_ax):
            ax.axvline(best_epoch, color="gray", linestyle="--", linewidth=1,
                       label=f"best.ckpt (epoch {best_epoch})")

    lr_columns = [c for c in frame.columns if c.startswith("lr-")]
    for column in lr_columns:
        rows = frame.dropna(subset=[column])
        x = rows["step"] if "step" in rows else rows.index
        lr_ax.plot(x, rows[column], label=column, drawstyle="steps-post")
    lr_ax.set(title="learning rate", xlabel="step")
    if lr_columns:
        lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))

    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=90)
    plt.close(fig)
    return fig


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
