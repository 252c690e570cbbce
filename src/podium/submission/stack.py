"""The members' predictions as the chain takes them: one array of views, folders, rows.

A folder given (a run, a cross-validation folder, an outside folder) is one blend member;
its folds' test probabilities are averaged with their weights, their OOF rows put together
(each id once). Every folder's OOF rows are then matched by id alone (a label written as
float32 text and another folder's `0.1` are the same row; the labels are the first
folder's), and only the ids every folder predicted are kept, said in one line.
Before stacking, each member's probabilities are moved by Bayes' rule to the test prior
(`to_test_prior`: the first step of the chain, nothing learned).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from podium.errors import PodiumError
from podium.submission.members import Member, Predictions


@dataclass
class Stack:
    """`test` (V, M, T, C) and `oof_x` (V, M, N, C): views (plain[, tta]) x folders x rows
    x classes; `oof`: the OOF rows' id, fold and label columns (None: no OOF rows)."""

    folders: list[Path]
    weights: np.ndarray            # the folders' given shares (sum 1)
    class_names: list[str]
    test_ids: list
    test: np.ndarray
    oof: pd.DataFrame | None
    oof_x: np.ndarray | None
    note: str | None = None        # ids predicted by some folders only


def folder_of(member: Member) -> Path:
    return Path(member.folder or member.run)


def stack(members: Sequence[Member], views: Sequence[Sequence[Predictions]], id_col: str,
          target_col: str) -> Stack:
    """`views[v][i]`: member i's predictions in view v (every member has every view)."""
    first = views[0][0].test
    class_names = [str(c) for c in first.columns[1:]]
    for member, predictions in zip(members, views[0], strict=True):
        test = predictions.test
        if [str(c) for c in test.columns[1:]] != class_names:
            raise PodiumError(
                f"{member.run} was trained on classes {list(test.columns[1:])}, "
                f"{members[0].run} on {class_names}: only runs of the same competition can "
                f"be averaged")
        if not test.iloc[:, 0].equals(first.iloc[:, 0]):
            raise PodiumError(f"{member.run} predicted other test ids than {members[0].run}")
    folders = list(dict.fromkeys(folder_of(m) for m in members))
    groups = [[i for i, m in enumerate(members) if folder_of(m) == f] for f in folders]
    given = np.asarray([sum(members[i].weight for i in g) for g in groups], np.float64)

    def test_of(view: Sequence[Predictions], group: list[int]) -> np.ndarray:
        w = np.asarray([members[i].weight for i in group], np.float64)
        w = w / w.sum() if w.sum() > 0 else np.full(len(group), 1 / len(group))
        arrays = np.stack([view[i].test[class_names].to_numpy(np.float64) for i in group])
        return np.tensordot(w, arrays, axes=1)

    test = np.stack([np.stack([test_of(view, g) for g in groups]) for view in views])
    oof, oof_x, note = stack_oof(views, groups, folders, class_names, id_col, target_col)
    return Stack(folders, given / given.sum(), class_names, first.iloc[:, 0].tolist(), test,
                 oof, oof_x, note)


def stack_oof(views, groups, folders, class_names, id_col, target_col):
    """(id/fold/label frame, (V, M, N, C) probabilities, note) of the ids every folder
    predicted out of fold; (None, None, None) when a folder has none."""
    from podium.run import label_col

    target_col = label_col(target_col, class_names)
    frames = [[pd.concat([view[i].oof for i in g if view[i].oof is not None],
                         ignore_index=True) if any(view[i].oof is not None for i in g)
               else None for g in groups] for view in views]
    if any(f is None for f in frames[0]):
        return None, None, None
    per_folder = [[f.groupby(id_col, sort=False).agg(
        {c: "first" if c in (target_col, "fold") else "mean" for c in f.columns
         if c != id_col}) for f in row] for row in frames]
    ids = per_folder[0][0].index
    for folder in per_folder[0][1:]:
        ids = ids.intersection(folder.index, sort=False)
    largest = max(len(f) for f in per_folder[0])
    note = None
    if len(ids) < largest:
        note = (f"OOF: {largest - len(ids)} id(s) predicted out of fold by only some of "
                f"{', '.join(map(str, folders))}: every learned step uses the {len(ids)} "
                f"ids all of them predicted")
    if len(ids) == 0:
        raise PodiumError(f"the members' oof.csv files share no id: {', '.join(map(str, folders))}"
                          f" were validated on other rows (use the same data.n_folds and seed)")
    head = per_folder[0][0].loc[ids]
    keep = [target_col] + (["fold"] if "fold" in head and head["fold"].notna().all() else [])
    oof = head[keep].reset_index()
    x = np.stack([np.stack([f.loc[ids, class_names].to_numpy(np.float64) for f in row])
                  for row in per_folder])
    return oof, x, note


def to_test_prior(predictions: Predictions, member: Member, prior: np.ndarray,
                  target_col: str) -> Predictions:
    """A member's test and OOF probabilities moved by Bayes' rule (podium.prior.shift) from
    the class prior they carry (its score_prior; else its OOF rows' class shares, what plain
    cross-entropy carries) to `prior`; as they are when neither is known."""
    from podium.prior import shift

    names = [str(c) for c in predictions.test.columns[1:]]
    if set(member.score_prior) == set(names):
        source = np.asarray([member.score_prior[n] for n in names], np.float64)
    elif predictions.oof is not None:
        from podium.run import label_col

        counts = predictions.oof[label_col(target_col, names)].astype(str).value_counts()
        source = counts.reindex(names, fill_value=0).to_numpy(np.float64) / len(predictions.oof)
    else:
        return predictions

    def moved(frame: pd.DataFrame | None) -> pd.DataFrame | None:
        if frame is None:
            return None
        frame = frame.copy()
        frame[names] = shift(frame[names].to_numpy(np.float64), source, prior)
        return frame

    return Predictions(moved(predictions.test), moved(predictions.oof))


def choose_test_prior(setting: str, raw: Stack, data) -> tuple[np.ndarray | None, dict | None,
                                                                 list[str]]:
    """The prior validation and post-processing target (podium.prior): `uniform` or a CSV
    as given, `estimate` by EM on the members' averaged test probabilities (calibrated on
    the OOF rows), `train` none. Whatever the setting, the EM estimate is compared with the
    prior assumed (the OOF rows' class shares for `train`): a total variation above 0.2
    (more for a small test set: podium.prior.far_from) is a one-line warning naming
    data.test_prior. Returns (prior or None, report, warnings)."""
    from podium import prior
    from podium.submission.oof import truth

    task = data.get("task", "multiclass")
    prior.check_setting(setting, task)
    if task not in prior.CLASSIFICATION:
        return None, None, []
    names = raw.class_names
    target = prior.resolve(setting, names, data.root)
    if raw.oof is None:
        warning = ([] if setting != "estimate" else
                   ["data.test_prior=estimate: no validation predictions to calibrate on; the "
                    "training prior is kept"])
        return target, None, warning
    y = truth(raw.oof, names, data.target_col, task)
    shares = np.bincount(y, minlength=len(names)) / len(y)
    test = np.tensordot(raw.weights, raw.test[0], axes=1)
    oof = np.tensordot(raw.weights, raw.oof_x[0], axes=1)
    estimated = prior.estimate(test, oof, y, shares)
    target = estimated if setting == "estimate" else target
    assumed = shares if target is None else target
    distance = prior.total_variation(estimated, assumed)
    report = {"setting": setting, "prior": dict(zip(names, assumed.tolist(), strict=True)),
              "train_prior": dict(zip(names, shares.tolist(), strict=True)),
              "estimated": dict(zip(names, estimated.tolist(), strict=True)),
              "total_variation": distance}
    warnings = []
    if distance > prior.far_from(assumed, len(test)) and setting != "estimate":
        other = "estimate, uniform" if setting == "train" else "estimate"
        warnings.append(f"the test predictions imply a class prior far from data.test_prior="
                        f"{setting} (total variation {distance:.2f}; EM estimate: "
                        f"{prior.describe(estimated, names)}): set data.test_prior={other} "
                        f"or a CSV of class,share")
    return target, report, warnings
