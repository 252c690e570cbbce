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
    if task == "multilabel":
        return multilabel_submission(sample, ids, probs, class_names, id_col)
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
    if task == "multilabel":
        return validate_multilabel_submission(submission, sample, class_names, id_col)
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


# -- multi-label: label sets, or one column per label -------------------------------------------
THRESHOLD = 0.5  # a label is predicted when its probability is above this (as torchmetrics)


def multilabel_layout(sample: pd.DataFrame, class_names: Sequence[str], id_col: str) -> str:
    """"sets" (one column of space-separated labels), "binary" (a 0/1 column per label) or
    "probability" (a probability column per label), read from the sample submission."""
    columns = [c for c in sample.columns if c != id_col]
    names = [str(c) for c in class_names]
    if sorted(columns) == sorted(names):
        values = sample[columns].astype(str).apply(lambda col: col.str.strip())
        return "binary" if values.isin(["0", "1"]).all().all() else "probability"
    if len(columns) == 1 and columns[0] not in names:
        return "sets"
    unknown = [c for c in columns if c not in names]
    if unknown and len(columns) > 1:
        raise PodiumError(f"sample submission column '{unknown[0]}' is not a label the model "
                          f"knows (labels: {', '.join(names[:10])}); predict with a model "
                          f"trained on this competition")
    missing = [n for n in names if n not in columns]
    raise PodiumError(f"sample submission has columns {list(sample.columns)}: expected "
                      f"'{id_col}' and one label-set column, or one column per label (no "
                      f"column for '{missing[0] if missing else names[0]}')")


def multilabel_submission(sample: pd.DataFrame, ids: Sequence[str], probs: np.ndarray,
                          class_names: Sequence[str], id_col: str) -> pd.DataFrame:
    """Label sets (probability > THRESHOLD) in the sample submission's shape: one column of
    space-separated labels in class order (an empty set: an empty cell), or one column per
    label holding 0/1 (when the sample's hold only 0/1) or the probability."""
    from podium.labels import join_label_set

    if list(sample[id_col]) != list(ids):
        raise PodiumError(
            f"predicted ids do not follow the sample submission's {id_col} column; "
            f"predict with the same data.root the model was trained on"
        )
    layout = multilabel_layout(sample, class_names, id_col)
    submission = sample.copy()
    names = [str(c) for c in class_names]
    if layout == "sets":
        label_col = [c for c in sample.columns if c != id_col][0]
        chosen = np.asarray(names, dtype=object)
        submission[label_col] = [join_label_set(chosen[row > THRESHOLD]) for row in probs]
        return submission
    for i, name in enumerate(names):
        submission[name] = ((probs[:, i] > THRESHOLD).astype(int) if layout == "binary"
                            else probs[:, i])
    return submission


def validate_multilabel_submission(submission: pd.DataFrame, sample: pd.DataFrame,
                                   class_names: Sequence[str], id_col: str) -> None:
    """Header and ids as the sample's; label sets of known labels, or per-label columns
    of 0/1 or probabilities in [0, 1]."""
    from podium.labels import split_label_set

    if list(submission.columns) != list(sample.columns):
        raise PodiumError(f"submission header {list(submission.columns)} differs from the "
                          f"sample submission's {list(sample.columns)}")
    if len(submission) != len(sample) or list(submission[id_col].astype(str)) != list(
            sample[id_col].astype(str)):
        raise PodiumError(f"submission ids differ from the sample submission's "
                          f"({len(submission)} vs {len(sample)} rows, or another order)")
    layout = multilabel_layout(sample, class_names, id_col)
    names = {str(c) for c in class_names}
    if layout == "sets":
        label_col = [c for c in sample.columns if c != id_col][0]
        used = {label for cell in submission[label_col] for label in split_label_set(cell)}
        if used - names:
            raise PodiumError(f"submission has labels not seen in training: "
                              f"{sorted(used - names)[:5]}")
        return
    values = submission[[str(c) for c in class_names]].apply(pd.to_numeric, errors="coerce")
    allowed = values.isin([0, 1]) if layout == "binary" else (values >= 0) & (values <= 1)
    if not allowed.all().all():
        raise PodiumError(f"submission has per-label values outside "
                          f"{'{0, 1}' if layout == 'binary' else '[0, 1]'} or non-numeric")


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
