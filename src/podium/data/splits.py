"""Validation splits: a seeded stratified hold-out, or fold `data.fold` of a k-fold, or none.

The same seed gives the same folds in every run, so `make cv` is a multirun over
`data.fold` and every fold's held-out ids are out-of-fold exactly once. Under k-fold the
choices a fold makes (best checkpoint, early stopping, the epoch) use an inner validation
split carved from the fold's training rows (`nested_split`), never its held-out rows: those
are predicted once, for `oof.csv`, and their score stays honest. Multi-label targets (a
multi-hot (N, C) array) are split by iterative stratification (Sechidis et al. 2011, the
`iterative-stratification` package), which keeps every label's frequency in each fold close
to the whole set's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from podium.errors import PodiumError


def split_indices(
    labels: np.ndarray, class_names: Sequence[str], val_fraction: float, seed: int,
    n_folds: int | None = None, fold: int | None = None, groups: Sequence[str] | None = None,
    stratify: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified hold-out split, or fold `fold` of a seeded StratifiedKFold.

    With `groups` (e.g. a patient id), StratifiedGroupKFold keeps each group in one fold,
    and a hold-out keeps each group wholly in training or validation (`group_holdout`).
    `stratify=False` (regression targets): plain shuffled KFold / GroupKFold / hold-out.
    Multi-hot `labels` (N, C): iterative stratification (`multilabel_split`).
    `val_fraction=0` (no folds): every row trains, the validation split is empty.
    """
    from sklearn.model_selection import (
        GroupKFold,
        KFold,
        StratifiedGroupKFold,
        StratifiedKFold,
        train_test_split,
    )

    if n_folds and (fold is None or not 0 <= fold < n_folds):
        raise PodiumError(f"data.fold={fold} must be in 0..{n_folds - 1} for "
                          f"data.n_folds={n_folds}")
    if not n_folds and not 0 <= val_fraction < 1:
        raise PodiumError(f"data.val_fraction={val_fraction} must be in [0, 1) "
                          "(0: train on every labelled row, no validation)")
    index = np.arange(len(labels))
    if not n_folds and val_fraction == 0:
        return index, index[:0]
    if labels.ndim == 2:
        return multilabel_split(labels, val_fraction, seed, n_folds, fold, groups)
    if stratify:
        counts = np.bincount(labels, minlength=len(class_names))
        need = n_folds if n_folds else 2
        if counts.min() < need:
            name = class_names[int(counts.argmin())]
            raise PodiumError(
                f"class '{name}' has {counts.min()} example(s); a stratified split needs at "
                f"least {need} (add examples, merge the class, or lower data.n_folds)"
            )
    if n_folds:
        kinds = {(True, False): StratifiedKFold, (True, True): StratifiedGroupKFold,
                 (False, False): KFold, (False, True): GroupKFold}
        folds = kinds[(stratify, groups is not None)](n_folds, shuffle=True, random_state=seed)
        return list(folds.split(index, labels, groups))[fold]
    if groups is not None:
        return group_holdout(labels, val_fraction, seed, groups, stratify)
    n_val = max(int(round(val_fraction * len(labels))), len(class_names) if stratify else 1)
    train_idx, val_idx = train_test_split(index, test_size=n_val, random_state=seed,
                                          stratify=labels if stratify else None)
    return np.sort(train_idx), np.sort(val_idx)


def group_holdout(labels: np.ndarray, val_fraction: float, seed: int, groups: Sequence[str],
                  stratify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A hold-out that keeps every group wholly in training or in validation.

    Classification: one fold of a seeded StratifiedGroupKFold with about 1 / val_fraction
    splits (0.2: 5 splits, one validates; at most one split per group, at least 2), so the
    classes stay balanced as far as whole groups allow. Regression: GroupShuffleSplit
    (`val_fraction` of the groups).
    """
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

    index, n_groups = np.arange(len(labels)), len(set(groups))
    if n_groups < 2:
        raise PodiumError(f"data.group_col holds {n_groups} group: a grouped validation split "
                          "needs at least 2 (unset data.group_col, or give the rows groups)")
    if stratify:
        n_splits = int(np.clip(round(1 / val_fraction), 2, n_groups))
        splitter = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)
    else:
        splitter = GroupShuffleSplit(1, test_size=val_fraction, random_state=seed)
    train_idx, val_idx = next(splitter.split(index, labels, groups))
    return np.sort(train_idx), np.sort(val_idx)


class Split(NamedTuple):
    """A run's rows (indices into train.csv): `train` the model trains on, `val` Lightning
    validates on (checkpoint, early stopping, monitored values), `oof` predicted for
    oof.csv. A single hold-out: `val` is `oof`. Fold f of a k-fold: `oof` is the fold's
    held-out rows and `val` an inner split of its training rows (nested selection)."""

    train: np.ndarray
    val: np.ndarray
    oof: np.ndarray


def nested_split(
    labels: np.ndarray, class_names: Sequence[str], val_fraction: float, seed: int,
    n_folds: int | None = None, fold: int | None = None, groups: Sequence[str] | None = None,
    stratify: bool = True,
) -> Split:
    """`split_indices`, and under k-fold an inner validation split of the fold's training
    rows: `val_fraction` of them, stratified and grouped like the outer split (0: none, the
    fold trains on all its training rows and keeps the last epoch). The held-out rows never
    choose anything for the model that predicts them."""
    train_idx, held_out = split_indices(labels, class_names, val_fraction, seed, n_folds, fold,
                                        groups, stratify)
    if not n_folds:
        return Split(train_idx, held_out, held_out)
    inner_groups = None if groups is None else [groups[i] for i in train_idx]
    try:
        inner_train, inner_val = split_indices(labels[train_idx], class_names, val_fraction,
                                               seed, groups=inner_groups, stratify=stratify)
    except PodiumError as err:
        raise PodiumError(f"fold {fold}'s inner validation split (data.val_fraction="
                          f"{val_fraction} of its training rows): {err}; or data.val_fraction=0"
                          " (no inner validation: the last epoch)") from err
    return Split(train_idx[inner_train], train_idx[inner_val], held_out)


def multilabel_split(labels: np.ndarray, val_fraction: float, seed: int,
                     n_folds: int | None = None, fold: int | None = None,
                     groups: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Iterative stratification of multi-hot labels: a hold-out or fold `fold` of k.

    With `groups`, GroupKFold keeps each group within one fold (iterative stratification
    has no grouped form: grouping is what keeps the validation score honest, so it wins).
    """
    from iterstrat.ml_stratifiers import (
        MultilabelStratifiedKFold,
        MultilabelStratifiedShuffleSplit,
    )
    from sklearn.model_selection import GroupKFold, GroupShuffleSplit

    index = np.arange(len(labels))
    targets = (labels > 0.5).astype(np.int64)
    if n_folds:
        folds = (GroupKFold(n_folds, shuffle=True, random_state=seed) if groups is not None
                 else MultilabelStratifiedKFold(n_folds, shuffle=True, random_state=seed))
        train_idx, val_idx = list(folds.split(index, targets, groups))[fold]
        return np.sort(train_idx), np.sort(val_idx)
    if groups is not None:
        splitter = GroupShuffleSplit(1, test_size=val_fraction, random_state=seed)
    else:
        n_val = max(int(round(val_fraction * len(labels))), 1)
        splitter = MultilabelStratifiedShuffleSplit(1, test_size=n_val, random_state=seed)
    train_idx, val_idx = next(splitter.split(index, targets, groups))
    return np.sort(train_idx), np.sort(val_idx)
