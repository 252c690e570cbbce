"""The run folder: the names of the files a run writes, and reading them back.

Every run (train, refit, a cross-validation fold), every ensemble (cv, submit, predict) and
a folder written by hand share one layout, so any of them can be a member of an ensemble:
`test_probs.csv` (id + one column per class; regression: the prediction) and `oof.csv`
(id, fold, label, the same columns for the validation rows). Labels and ids are read as
text: a class named `None` or `NA` stays a class, an id `007` keeps its zeros.

A class may be named like the target column (a `dead` column holding `alive` / `dead`):
the class columns always carry the class names (what ensembles, blends and outside members
read), so oof.csv's column of true labels moves to `<target>_true` (`dead_true`; again
`_true` while that too is a class), `label_col`; files without such a class read as before.
A class named `fold` or like the id column is refused before training (`check_class_names`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from podium.errors import PodiumError

if TYPE_CHECKING:  # pandas loads when a file is read or written: entry points start light
    import pandas as pd

HYDRA_DIR = Path(".hydra")                 # Hydra's record: config.yaml, hydra.yaml, overrides
CONFIG = HYDRA_DIR / "config.yaml"        # the composed config (re-runnable)
BEST_CHECKPOINT = Path("checkpoints") / "best.ckpt"
TEST_PROBS = "test_probs.csv"             # the test set's probabilities
OOF = "oof.csv"                           # the validation rows' probabilities
TTA_SUFFIX = "_tta"                       # test_probs_tta.csv, oof_tta.csv: with tta views
METRICS = "metrics.json"
SUBMISSION = "submission.csv"


LABEL_SUFFIX = "_true"  # oof.csv's label column when a class is named like the target column
FOLD = "fold"


def label_col(target_col: str, class_names: Sequence[str]) -> str:
    """oof.csv's column of true labels: the target column's name, `_true` appended while a
    class is named so."""
    classes, name = {str(c) for c in class_names}, str(target_col)
    while name in classes:
        name += LABEL_SUFFIX
    return name


def label_in(frame: pd.DataFrame, target_col: str) -> str:
    """The column of true labels of an OOF frame read or built by podium (its class columns
    float32, its labels text): the target column's, or `label_col`'s name when the target
    column's is a class column."""
    import pandas as pd

    name = str(target_col)
    while name + LABEL_SUFFIX in frame.columns and pd.api.types.is_float_dtype(frame[name]):
        name += LABEL_SUFFIX
    return name


def check_class_names(class_names: Sequence[str], id_col: str, path: Path) -> None:
    """A class named `fold` or like the id column would share a column name with them in
    test_probs.csv / oof.csv: one line before anything is trained."""
    clash = [c for c in map(str, class_names) if c in (FOLD, str(id_col))]
    if clash:
        raise PodiumError(f"{path}: a class is named '{clash[0]}', like the run files' "
                          f"{'fold' if clash[0] == FOLD else 'id'} column: rename that label "
                          f"in the target column (e.g. '{clash[0]}_')")


def tta_name(name: str) -> str:
    """`test_probs.csv` -> `test_probs_tta.csv`: the same predictions with the tta views."""
    stem, dot, ext = name.rpartition(".")
    return f"{stem}{TTA_SUFFIX}{dot}{ext}"


def probs_frame(ids: Sequence[str], probs: np.ndarray, class_names: Sequence[str],
                id_col: str) -> pd.DataFrame:
    """id + one probability column per class: the file ensembles average."""
    import pandas as pd

    frame = pd.DataFrame(probs, columns=[str(c) for c in class_names])
    frame.insert(0, id_col, list(ids))
    return frame


def oof_frame(ids: Sequence[str], probs: np.ndarray, class_names: Sequence[str], id_col: str,
              fold: int, target_col: str, labels: Sequence) -> pd.DataFrame:
    """oof.csv's rows: id, fold, the true label (as the competition spells it, in
    `label_col`), the probs."""
    frame = probs_frame(ids, probs, class_names, id_col)
    frame.insert(1, FOLD, fold)
    frame.insert(2, label_col(target_col, class_names), [str(v) for v in labels])
    return frame


def redo(path: Path) -> str:
    """What to do about a run's unusable prediction file."""
    return (f"a run's {Path(path).name} is podium's own output: predict again, or leave "
            f"{Path(path).parent} out of the ensemble")


def read_probs(path: Path, id_col: str) -> pd.DataFrame:
    """A run's test_probs.csv: id + one finite number per class (regression: the prediction
    column), each id once; every problem one line naming the run folder and the file.
    Probabilities come back as the float32 they were predicted in (the text round-trips
    exactly), so a file and a fresh prediction average identically; the class columns in
    class order (sorted as podium sorts labels), whatever order a hand-written file has:
    the positive class of a binary task is the second."""
    from podium.data.labels import sort_labels
    from podium.io import read_csv

    frame = read_csv(path, [id_col], "a run's test probabilities", id_col=id_col,
                     fix=redo(path), remedy=redo(path))
    columns = [c for c in frame.columns if c != id_col]
    if not columns:
        raise PodiumError(f"{path} has only the column '{id_col}': it needs one probability "
                          f"column per class; {redo(path)}")
    return numbers(frame[[id_col, *sort_labels(columns)]], path, columns, id_col)


def read_oof(path: Path, id_col: str, target_col: str,
             classes: Sequence[str] = ()) -> pd.DataFrame | None:
    """A run's oof.csv, or None: id (each once), the true label as text (`None`, `NA` and
    an empty multi-label set stay what they are), probabilities as in `read_probs` in
    every other column; `classes` (the columns of its test_probs.csv, or the model's) must
    be there. The labels are in `label_col` (without `classes`: the last of target_col,
    target_col_true, ... in the file)."""
    import pandas as pd

    from podium.io import read_csv

    if not Path(path).is_file():
        return None
    label = label_col(target_col, classes)
    frame = read_csv(path, [id_col, label, *map(str, classes)], "a run's out-of-fold "
                     "predictions", id_col=id_col, fix=redo(path), remedy=redo(path))
    if not len(classes):
        while label + LABEL_SUFFIX in frame.columns:
            label += LABEL_SUFFIX
    if FOLD in frame:  # a number, or empty where an ensemble averaged the folds away
        frame[FOLD] = pd.to_numeric(frame[FOLD].replace("", np.nan), errors="coerce")
    columns = [c for c in frame.columns if c not in (id_col, FOLD, label)]
    return numbers(frame, path, columns, id_col)


def numbers(frame: pd.DataFrame, path: Path, columns: Sequence[str], id_col: str
            ) -> pd.DataFrame:
    """`columns` as float32; a cell that is no finite number (text, empty, NaN, inf, out
    of float32's range) is named with its column, id and row."""
    import pandas as pd

    for column in columns:
        with np.errstate(over="ignore"):  # 1e300: inf in float32, reported below
            values = pd.to_numeric(frame[column].str.strip(), errors="coerce").astype(
                np.float32)
        bad = np.flatnonzero(~np.isfinite(values.to_numpy()))
        if len(bad):
            raise PodiumError(
                f"{path}: column '{column}' holds '{frame[column].iloc[bad[0]]}' for id "
                f"{frame[id_col].iloc[bad[0]]} (row {bad[0] + 1}; {len(bad)} bad value(s)), "
                f"not a finite number; {redo(path)}")
        frame[column] = values
    return frame


def read_metrics(run: Path) -> dict:
    """A run's metrics.json ({} when it has none)."""
    path = Path(run) / METRICS
    return json.loads(path.read_text()) if path.is_file() else {}
