"""The run folder: the names of the files a run writes, and reading them back.

Every run (train, refit, a cross-validation fold), every ensemble (cv, submit, predict) and
a folder written by hand share one layout, so any of them can be a member of an ensemble:
`test_probs.csv` (id + one column per class; regression: the prediction) and `oof.csv`
(id, fold, label, the same columns for the validation rows). Labels and ids are read as
text: a class named `None` or `NA` stays a class, an id `007` keeps its zeros.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

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
    """oof.csv's rows: id, fold, the true label (as the competition spells it), the probs."""
    frame = probs_frame(ids, probs, class_names, id_col)
    frame.insert(1, "fold", fold)
    frame.insert(2, target_col, [str(v) for v in labels])
    return frame


def read_probs(path: Path, id_col: str) -> pd.DataFrame:
    """A test_probs.csv: ids as text, probabilities as the float32 they were predicted in
    (the text round-trips exactly), so a file and a fresh prediction average identically."""
    import pandas as pd

    frame = pd.read_csv(path, dtype={id_col: str})
    return frame.astype({c: np.float32 for c in frame.columns[1:]})


def read_oof(path: Path, id_col: str, target_col: str) -> pd.DataFrame | None:
    """A run's oof.csv, or None; labels as text (`None`, `NA` and an empty multi-label set
    stay what they are), probabilities as in `read_probs`."""
    import pandas as pd

    if not Path(path).is_file():
        return None
    frame = pd.read_csv(path, dtype={id_col: str, target_col: str}, keep_default_na=False)
    return frame.astype({c: np.float32 for c in frame.columns[3:]})


def read_metrics(run: Path) -> dict:
    """A run's metrics.json ({} when it has none)."""
    path = Path(run) / METRICS
    return json.loads(path.read_text()) if path.is_file() else {}
