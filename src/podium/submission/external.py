"""Members made outside podium: a folder holding only `oof.csv` + `test_probs.csv`.

A teammate's notebook or another library joins an ensemble by writing podium's two
prediction files (podium.run; README "Any folder can be a member"): no config, no
checkpoint. An ensemble needs from a member its task, class columns, id column and target
column, and the competition (data folder, metric) it blends for. The files tell the first
four: the id column is test_probs.csv's first column, the class columns the others (one
column: a regression's prediction), the target column oof.csv's one column that is neither
the id, `fold` nor a class. The competition comes from the podium runs blended with it,
whose data config the folder must agree with; an ensemble of such folders alone is told it
(`external.data_root`, `external.metric` of conf/submit.yaml). Every disagreement (id
column, classes, target column, OOF ids or labels that are not the training table's) is one
line before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from podium import run
from podium.errors import PodiumError

FOLD = "fold"
FORMAT = "README: Any folder can be a member"


@dataclass
class Header:
    """What a member folder's file headers say."""

    id_col: str
    classes: list[str]
    target_col: str | None  # None: no oof.csv
    missing: list[str]      # test_probs.csv's columns that oof.csv lacks


def is_external(folder: Path) -> bool:
    """A folder of predictions only: test_probs.csv, no training config of its own (none,
    or an ensemble's: no `data`) and no folds (a cross-validation folder's sub-folders)."""
    folder = Path(folder)
    if not (folder / run.TEST_PROBS).is_file() or any(folder.glob(f"*/{run.CONFIG}")):
        return False
    config = folder / run.CONFIG
    return not config.is_file() or "data" not in OmegaConf.load(config)


def read_header(folder: Path) -> Header:
    """The id column, class columns (sorted as podium sorts labels) and target column of a
    member folder's files."""
    from podium.data.labels import sort_labels
    from podium.io import read_csv

    path = Path(folder) / run.TEST_PROBS
    columns = list(read_csv(path, [], "a member's test probabilities").columns)
    if len(columns) < 2:
        raise PodiumError(f"{path} has the columns {columns}: a member's test_probs.csv needs "
                          f"the id column first, then one column per class (see {FORMAT})")
    id_col, classes = columns[0], sort_labels(columns[1:])
    oof = Path(folder) / run.OOF
    if not oof.is_file():
        return Header(id_col, classes, None, [])
    header = list(read_csv(oof, [], "a member's out-of-fold predictions").columns)
    rest = [c for c in header if c not in (id_col, FOLD, *classes)]
    missing = [c for c in (id_col, *classes) if c not in header]
    if len(rest) != 1 and not missing:
        raise PodiumError(f"{oof}: columns {rest} besides the id, '{FOLD}' and the classes: "
                          f"oof.csv needs exactly one, the true label (see {FORMAT})")
    return Header(id_col, classes, rest[0] if len(rest) == 1 else None, missing)


def reference_classes(member) -> list[str] | None:
    """A podium member's class columns (its test_probs.csv header; None: not written yet)."""
    from podium.data.labels import sort_labels

    path = member.run / run.TEST_PROBS
    if not path.is_file():
        return None
    return sort_labels([str(c) for c in pd.read_csv(path, nrows=0).columns[1:]])


def check_agrees(folder: Path, header: Header, data: DictConfig, classes: Sequence[str] | None,
                 other: str) -> None:
    """The folder's files name the id column, classes and target column of the others."""
    where = Path(folder) / run.TEST_PROBS
    if header.id_col != data.id_col:
        raise PodiumError(f"{where} starts with the column '{header.id_col}', {other} have the "
                          f"id column '{data.id_col}': write the ids first, under that name")
    if classes is not None and list(classes) != header.classes:
        raise PodiumError(f"{where} has the class columns {header.classes}, {other} "
                          f"{list(classes)}: only predictions of the same classes can be "
                          f"blended (one column per class, named as the training labels)")
    check_oof_columns(folder, header)
    if header.target_col is not None and header.target_col != data.target_col:
        raise PodiumError(f"{Path(folder) / run.OOF} has the label column "
                          f"'{header.target_col}', {other} '{data.target_col}': name it so")


def check_oof_columns(folder: Path, header: Header) -> None:
    """oof.csv has test_probs.csv's id and class columns."""
    if header.missing:
        raise PodiumError(f"{Path(folder) / run.OOF} lacks the column(s) {header.missing} of "
                          f"its test_probs.csv: oof.csv needs the id, the true label and the "
                          f"same class columns (see {FORMAT})")


def check_rows(folder: Path, data: DictConfig) -> None:
    """The OOF ids are training ids and their labels the training table's (when the
    competition folder has train.csv with the id and target columns)."""
    import numpy as np

    from podium.io import read_csv

    oof_path, table = Path(folder) / run.OOF, Path(data.root) / data.get("train_csv", "train.csv")
    if not oof_path.is_file() or not table.is_file():
        return
    columns = set(pd.read_csv(table, nrows=0).columns)
    if not {data.id_col, data.target_col} <= columns:
        return
    train = read_csv(table, [data.id_col, data.target_col], "the training labels")
    truth = dict(zip(train[data.id_col], train[data.target_col], strict=True))
    oof = read_csv(oof_path, [data.id_col, data.target_col], "a member's out-of-fold "
                   "predictions", id_col=data.id_col)
    unknown = [i for i in oof[data.id_col] if i not in truth]
    if unknown:
        raise PodiumError(f"{oof_path}: {len(unknown)} id(s) are not in {table}, e.g. "
                          f"{unknown[0]}: the OOF rows must be this competition's training ids")
    given = oof[data.target_col].tolist()
    expected = [truth[i] for i in oof[data.id_col]]
    if data.get("task") == "regression":
        same = np.isclose(pd.to_numeric(pd.Series(given), errors="coerce"),
                          pd.to_numeric(pd.Series(expected), errors="coerce"), rtol=1e-5)
    else:  # a label set in any order is the same set
        same = np.array([sorted(a.split()) == sorted(b.split())
                         for a, b in zip(given, expected, strict=True)])
    if not same.all():
        row = int(np.flatnonzero(~same)[0])
        raise PodiumError(f"{oof_path}: id {oof[data.id_col].iloc[row]} has the label "
                          f"'{given[row]}', {table} says '{expected[row]}' ({int((~same).sum())}"
                          f" row(s) differ): the OOF labels must be the training table's")


def infer_task(folder: Path, header: Header) -> str:
    """One column: regression; labels that are sets of the classes: multilabel; two
    classes: binary; more: multiclass."""
    if len(header.classes) == 1:
        return "regression"
    oof = Path(folder) / run.OOF
    if header.target_col is not None and oof.is_file():
        labels = set(pd.read_csv(oof, dtype=str, keep_default_na=False)[header.target_col])
        if not labels <= set(header.classes):
            tokens = {t for label in labels for t in label.split()}
            if tokens <= set(header.classes):
                return "multilabel"
            unknown = sorted(labels - set(header.classes))[0]
            raise PodiumError(f"{oof}: label '{unknown}' is none of the class columns "
                              f"{header.classes}")
    return "binary" if len(header.classes) == 2 else "multiclass"


def standalone_config(folder: Path, header: Header, options: DictConfig | None) -> DictConfig:
    """The competition of an ensemble of outside folders only: the data folder and metric
    given in `options` (conf/submit.yaml's `external`), the rest from the files."""
    from podium.model.metrics import resolve_metric

    check_oof_columns(folder, header)
    root = (options or {}).get("data_root")
    if not root:
        raise PodiumError(f"{folder} holds only predictions (no .hydra/config.yaml): give its "
                          f"competition folder with external.data_root=<folder> (or blend it "
                          f"with a podium run of that competition)")
    if header.target_col is None:
        raise PodiumError(f"{folder} has no {run.OOF}: its label column cannot be told; write "
                          f"oof.csv (see {FORMAT}) or blend it with a podium run")
    answers = Path(root) / "answers.csv"  # a demo's answer key, as its data config names it
    data = {"root": str(root), "id_col": header.id_col, "target_col": header.target_col,
            "task": infer_task(folder, header), "train_csv": "train.csv",
            "sample_submission": "sample_submission.csv",
            "answers": str(answers) if answers.is_file() else None}
    cfg = OmegaConf.create({"data": data, "metric": {"competition": options.get("metric"),
                                                     "monitor": None, "mode": None, "k": 3}})
    return resolve_metric(cfg)


def complete_external(members: list, options: DictConfig | None) -> list:
    """Give every outside member (cfg None) the competition's config: the first podium
    member's data and metric (or, with none, `standalone_config`), after checking its files
    agree with it; the others' classes are the first member's."""
    reference = next((m for m in members if m.cfg is not None), None)
    outside = [m for m in members if m.cfg is None]
    if not outside:
        return members
    if reference is not None:
        base = OmegaConf.create({key: OmegaConf.to_container(reference.cfg[key], resolve=True)
                                 for key in ("data", "metric")})
        classes, other = reference_classes(reference), f"the podium run {reference.run}'s files"
    else:
        first = outside[0]
        header = read_header(first.run)
        base, classes = standalone_config(first.run, header, options), header.classes
        other = f"{first.run}'s files"
    for member in outside:
        header = read_header(member.run)
        check_agrees(member.run, header, base.data, classes, other)
        check_rows(member.run, base.data)
        member.cfg = base.copy()
    return members
