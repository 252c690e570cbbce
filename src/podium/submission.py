"""From class probabilities to a submission file the leaderboard will accept.

Class indices become the competition's original labels; the file gets the sample
submission's header and row order; it is validated before it is written, written to a
temporary file and renamed (no partial file on any failure), and never replaces an
existing file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from podium.errors import PodiumError
from podium.io import write_atomic


def probs_frame(ids: Sequence[str], probs: np.ndarray, class_names: Sequence[str],
                id_col: str) -> pd.DataFrame:
    """id + one probability column per class: the file ensembles average."""
    frame = pd.DataFrame(probs, columns=[str(c) for c in class_names])
    frame.insert(0, id_col, list(ids))
    return frame


def make_submission(sample: pd.DataFrame, ids: Sequence[str], probs: np.ndarray,
                    class_names: Sequence[str], id_col: str,
                    task: str = "multiclass") -> pd.DataFrame:
    """Argmax -> original label (regression: the prediction itself), in the sample
    submission's columns and row order."""
    if list(sample[id_col]) != list(ids):
        raise PodiumError(
            f"predicted ids do not follow the sample submission's {id_col} column; "
            f"predict with the same data.root the model was trained on"
        )
    label_cols = [c for c in sample.columns if c != id_col]
    if len(label_cols) != 1:
        raise PodiumError(
            f"sample submission has columns {list(sample.columns)}: expected '{id_col}' "
            f"and one label column"
        )
    submission = sample.copy()
    if task == "regression":
        submission[label_cols[0]] = probs.reshape(len(probs), -1)[:, 0]
    else:
        submission[label_cols[0]] = np.asarray(class_names, dtype=object)[probs.argmax(axis=1)]
    return submission


def validate_submission(submission: pd.DataFrame, sample: pd.DataFrame,
                        class_names: Sequence[str], id_col: str,
                        task: str = "multiclass") -> None:
    """What the leaderboard checks: header, ids and their order, known labels (regression:
    finite numbers), no gaps."""
    if list(submission.columns) != list(sample.columns):
        raise PodiumError(
            f"submission header {list(submission.columns)} differs from the sample "
            f"submission's {list(sample.columns)}"
        )
    if len(submission) != len(sample) or not (
        submission[id_col].astype(str).values == sample[id_col].astype(str).values
    ).all():
        raise PodiumError(
            f"submission ids differ from the sample submission's ({len(submission)} vs "
            f"{len(sample)} rows, or another order)"
        )
    label_col = [c for c in sample.columns if c != id_col][0]
    labels = submission[label_col]
    if labels.isna().any():
        raise PodiumError(f"submission has empty {label_col} values")
    if task == "regression":
        values = pd.to_numeric(labels, errors="coerce")
        if not np.isfinite(values.to_numpy(dtype=float)).all():
            raise PodiumError(f"submission has non-numeric or infinite {label_col} values")
        return
    unknown = set(labels.astype(str)) - {str(c) for c in class_names}
    if unknown:
        raise PodiumError(
            f"submission has labels not seen in training: {sorted(unknown)[:5]}"
        )


def write_submission(out_dir: Path, sample: pd.DataFrame, ids: Sequence[str],
                     probs: np.ndarray, class_names: Sequence[str], id_col: str,
                     task: str = "multiclass") -> Path:
    """Write `test_probs.csv` and the validated `submission.csv`; return the latter's path.

    Regression: `probs` is the prediction (N, 1); `test_probs.csv` holds it as its column."""
    if not np.isfinite(probs).all():
        raise PodiumError("predicted probabilities contain NaN/inf: the model diverged")
    submission = make_submission(sample, ids, probs, class_names, id_col, task)
    validate_submission(submission, sample, class_names, id_col, task)
    out_dir = Path(out_dir)
    write_atomic(out_dir / "test_probs.csv",
                 probs_frame(ids, probs, class_names, id_col).to_csv(index=False))
    return write_atomic(out_dir / "submission.csv", submission.to_csv(index=False))
