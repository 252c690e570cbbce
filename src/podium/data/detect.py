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


def header(path: Path) -> list[str] | None:
    """A CSV file's column names; None when it cannot be read."""
    try:
        return list(pd.read_csv(path, nrows=0, encoding="utf-8-sig").columns)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError):
        return None


def sample_columns(root: Path, train_csv: str, sample_csv: str, id_col: str,
                   target_col: str) -> dict[str, str]:
    """`{"id_col": ..., "target_col": ...}` for the names train.csv lacks, from a two-column
    sample submission whose columns train.csv holds (Kaggle's `PassengerId,Survived`); {}
    when train.csv holds both names or the sample cannot tell."""
    columns, sample = header(root / train_csv), header(root / sample_csv)
    if columns is None or sample is None or len(sample) != 2:
        return {}
    return {key: found for key, given, found in (("id_col", id_col, sample[0]),
                                                  ("target_col", target_col, sample[1]))
            if given not in columns and found in columns}


def target_values(root: Path, train_csv: str, target_col: str) -> list[str] | None:
    """train.csv's target column as text; None when it cannot be read (yet)."""
    try:
        return pd.read_csv(root / train_csv, usecols=[target_col], dtype=str,
                           keep_default_na=False, encoding="utf-8-sig")[target_col].tolist()
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError):
        return None


def class_folders(root: Path) -> list[str]:
    """The class folders of `train/`, sorted."""
    return sorted(p.name for p in (root / "train").iterdir()
                  if p.is_dir() and not p.name.startswith("."))


def folder_task(root: Path, train_csv: str, target_col: str) -> tuple[str, str] | None:
    """(task, why) from the target column of `train.csv` (or the class folders of
    `train/`); None when the folder cannot tell yet (not built, no such column: the
    datamodule reports that later, with its own message)."""
    if (root / train_csv).is_file():
        values = target_values(root, train_csv, target_col)
        if values is None:
            return None
        task, why = infer_task(values)
        return task, f"{train_csv}'s {target_col}: {why}"
    if (root / "train").is_dir():
        classes = class_folders(root)
        if len(classes) >= 2:
            return ("binary" if len(classes) == 2 else "multiclass",
                    f"{len(classes)} class folders in train/")
    return None


def binary_classes(root: Path, train_csv: str, target_col: str) -> list[str] | None:
    """The two sorted classes of a binary folder (train.csv's target column, or its class
    folders); None when the folder cannot tell yet."""
    from podium.data.labels import sort_labels

    if (root / train_csv).is_file():
        values = target_values(root, train_csv, target_col)
        if values is None:
            return None
        classes = sort_labels([v for v in values if str(v).strip() != ""])
    elif (root / "train").is_dir():
        classes = class_folders(root)
    else:
        return None
    return classes if len(classes) == 2 else None


def positive_class(root: Path, train_csv: str, target_col: str,
                   named: str | None = None) -> tuple[int, str]:
    """(index among the two sorted classes, why) of a binary task's positive class, the one
    binary F1 scores: `named` (data.positive_class), else the second of the two sorted
    classes: 1 of 0/1, True of False/True, yes of no/yes (scikit-learn's pos_label=1), the
    class a placeholder sample submission (all 0, all False) does not hold."""
    from podium.errors import PodiumError

    classes = binary_classes(root, train_csv, target_col)
    if named is not None and str(named) != "":
        if classes is None:
            raise PodiumError(f"data.positive_class={named}: {root / train_csv} does not hold "
                              f"two classes in {target_col} to choose from")
        if str(named) not in classes:
            raise PodiumError(f"data.positive_class={named} is not a class of {target_col} "
                              f"({', '.join(classes)}): name one of them")
        return classes.index(str(named)), f"{named} (data.positive_class)"
    if classes is None:
        return 1, "the second of the two sorted classes"
    return 1, (f"{classes[1]} (the second of {', '.join(classes)}; set data.positive_class "
               f"to choose)")


def sample_labels(root: Path, sample_csv: str, id_col: str, train_csv: str,
                  target_col: str) -> list[str] | None:
    """The distinct cells of the sample submission's one prediction column when every cell
    is a whole number and one of a binary folder's two classes (0/1: the file will hold
    labels, and a probability there contradicts it); None otherwise (probabilities, text
    labels, another layout, a folder that cannot tell)."""
    classes = binary_classes(root, train_csv, target_col)
    path = root / sample_csv
    if classes is None or not path.is_file():
        return None
    try:
        sample = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError):
        return None
    columns = [c for c in sample.columns if c != id_col]
    if len(columns) != 1 or sample.empty:
        return None
    held = sorted(set(sample[columns[0]].str.strip()))
    whole = pd.to_numeric(pd.Series(held), errors="coerce")
    if whole.isna().any() or (whole != whole.round()).any():
        return None
    return held if set(held) <= set(classes) else None
