"""What a competition folder holds, read before any group is built: a table or images,
and (`data.task=auto`) its task.

A new user points `data.root` at a folder and names the target column; these choices
follow from the folder so that a table never reaches an image network and a Yes/No target
is scored as binary. The entry point applies them to the config (podium.config.resolve_data)
and says so in one line each.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from podium.data.labels import infer_task


def looks_tabular(root: Path, train_csv: str = "train.csv", test_csv: str = "test.csv") -> bool:
    """`train.csv` and `test.csv` side by side, with no `train/` or `test/` image folder:
    the files Kaggle gives for a table."""
    return ((root / train_csv).is_file() and (root / test_csv).is_file()
            and not (root / "train").is_dir() and not (root / "test").is_dir())


def folder_task(root: Path, train_csv: str, target_col: str) -> tuple[str, str] | None:
    """(task, why) from the target column of `train.csv` (or the class folders of
    `train/`); None when the folder cannot tell yet (not built, no such column: the
    datamodule reports that later, with its own message)."""
    path = root / train_csv
    if path.is_file():
        try:
            values = pd.read_csv(path, usecols=[target_col], dtype=str, keep_default_na=False,
                                 encoding="utf-8-sig")[target_col].tolist()
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError):
            return None
        task, why = infer_task(values)
        return task, f"{train_csv}'s {target_col}: {why}"
    folder = root / "train"
    if folder.is_dir():
        classes = sorted(p.name for p in folder.iterdir()
                         if p.is_dir() and not p.name.startswith("."))
        if len(classes) >= 2:
            return ("binary" if len(classes) == 2 else "multiclass",
                    f"{len(classes)} class folders in train/")
    return None
