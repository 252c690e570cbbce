"""What accuracy hides: per-class precision/recall/F1/support and the confusion matrix
(multi-label data: the per-label table, a label predicted when its probability is above 0.5).

Written at the end of every classification run from the best checkpoint's predictions on
the validation split: `report/per_class.csv`, `report/confusion_matrix.png`, and the table
printed to the terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from podium.callbacks.predictions import GatheredWriter, plain_view


def per_class_table(labels: np.ndarray, predicted: np.ndarray,
                    class_names: Sequence[str]) -> pd.DataFrame:
    """One row per class (precision, recall, f1, support) in class-index order."""
    from sklearn.metrics import precision_recall_fscore_support

    index = np.arange(len(class_names))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=index, zero_division=0
    )
    return pd.DataFrame({"class": [str(c) for c in class_names], "precision": precision,
                         "recall": recall, "f1": f1, "support": support})


def print_table(table: pd.DataFrame, title: str) -> None:
    """A rich table on the terminal; classes that are never predicted stand out (F1 = 0)."""
    from rich.console import Console
    from rich.table import Table

    shown = Table(title=title)
    for column in table.columns:
        shown.add_column(column, justify="left" if column == "class" else "right")
    for row in table.itertuples(index=False):
        cells = [row[0], *(f"{v:.3f}" for v in row[1:4]), str(int(row[4]))]
        style = "red" if row.f1 == 0 and row.support > 0 else None
        shown.add_row(*cells, style=style)
    Console(width=100).print(shown)


def save_confusion_matrix(labels: np.ndarray, predicted: np.ndarray,
                          class_names: Sequence[str], path: Path) -> Path:
    """Counts, rows = true class, columns = predicted class (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(labels, predicted, labels=np.arange(len(class_names)))
    size = max(4.0, 0.5 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, [str(c) for c in class_names], rotation=90)
    ax.set_yticks(ticks, [str(c) for c in class_names])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(class_names) <= 30:
        high = matrix.max() / 2 if matrix.size else 0
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                    color="white" if count > high else "black")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_class_report(output_dir: Path, labels: np.ndarray, probs: np.ndarray,
                       class_names: Sequence[str]) -> pd.DataFrame:
    """`report/per_class.csv` + `report/confusion_matrix.png` (single-label); prints the
    table. `labels`: class indices (N,) or multi-hot (N, C)."""
    from podium.io import write_atomic

    multilabel = labels.ndim == 2  # multi-hot: a label is predicted above 0.5, no confusion
    predicted = (probs > 0.5).astype(int) if multilabel else probs.argmax(axis=1)
    truth = (labels > 0.5).astype(int) if multilabel else labels
    table = per_class_table(truth, predicted, class_names)
    report = Path(output_dir) / "report"
    write_atomic(report / "per_class.csv", table.to_csv(index=False), replace=True)
    if not multilabel:  # a multi-label image has no single (true, predicted) cell
        save_confusion_matrix(labels, predicted, class_names, report / "confusion_matrix.png")
    print_table(table, "oof rows (validation split or the fold's held-out rows), best "
                "checkpoint: per class")
    return table


class ClassReport(GatheredWriter):
    """After `trainer.predict` (the best checkpoint), the oof rows' per-class
    precision/recall/F1/support table and confusion matrix in `report/` (classification).
    Under DDP every rank's shard is gathered first: the report covers the whole split."""

    def write(self, data, test: torch.Tensor, oof: torch.Tensor | None) -> None:
        if oof is None or data.task == "regression":
            return
        oof = plain_view(oof).numpy()
        if len(oof) != len(data.oof_idx):
            return  # fast_dev_run / limit_predict_batches: part of the split only
        write_class_report(self.output_dir, data.labels[data.oof_idx], oof, data.class_names)
