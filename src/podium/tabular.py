"""A tabular competition folder as a LightningDataModule, and its embedded demos.

Contract: `<root>/train.csv` (id, feature columns, target), `<root>/test.csv` (id, the same
feature columns), `<root>/sample_submission.csv` (id + one prediction column). Columns
that are entirely numeric are imputed (median) and standardised, the others one-hot
encoded (unknown test categories -> all zeros); both are fitted on the training split
only, so the validation score is what the test set will see. Features are float32
tensors held in memory; the model (model=mlp) takes `in_features` from `net_inputs`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from podium.datamodule import (
    CompetitionDataModule,
    TensorImageDataset,
    check_values,
    encode_target,
    read_csv,
    split_indices,
)
from podium.demo import built_aside
from podium.errors import PodiumError

log = logging.getLogger(__name__)


def numeric_columns(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """Columns whose non-empty values all parse as numbers."""
    found = []
    for column in columns:
        values = frame[column][frame[column].str.strip() != ""]
        if len(values) and pd.to_numeric(values, errors="coerce").notna().all():
            found.append(column)
    return found


def feature_transformer(numeric: Sequence[str], categorical: Sequence[str]):
    """scikit-learn ColumnTransformer: impute + standardise numbers, one-hot the rest."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
         list(numeric)),
        ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False),
         list(categorical)),
    ])


class TabularDataModule(CompetitionDataModule):
    """CSV features -> standardised/one-hot float32 tensors; same splits, loaders and
    attributes as the image datamodule (`net_inputs={"in_features": F}`, no image stats)."""

    def __init__(self, root: str, test_csv: str = "test.csv",
                 feature_cols: Sequence[str] | None = None, drop_cols: Sequence[str] = (),
                 categorical_cols: Sequence[str] | None = None, demo: str | None = None,
                 **kwargs) -> None:
        kwargs.pop("sample_transform", None)  # image augmentation does not apply
        super().__init__(root, **kwargs)
        self.test_csv, self.demo = test_csv, demo
        self.feature_cols = list(feature_cols) if feature_cols else None
        self.drop_cols, self.categorical_cols = list(drop_cols), categorical_cols

    def prepare_data(self) -> None:
        """Build the embedded demo on first use (only at its own path, never elsewhere)."""
        if (self.demo and self.demo_root
                and self.root.resolve() == self.demo_root.resolve()
                and not (self.root / self.train_csv).exists()):
            log.info("building the %s demo competition in %s", self.demo, self.root)
            build_tabular_demo(self.root, self.demo)

    def read_folder(self) -> None:
        if not self.root.is_dir():
            raise PodiumError(
                f"data.root={self.root} is not a folder: set data.root=<competition folder> "
                f"holding {self.train_csv}, {self.test_csv} and {self.sample_submission_path}"
            )
        train = read_csv(self.root / self.train_csv, [self.id_col, self.target_col],
                         "the training table")
        check_values(train, self.root / self.train_csv, self.id_col, self.target_col)
        skip = {self.id_col, self.target_col, *self.drop_cols, *filter(None, [self.group_col])}
        features = self.feature_cols or [c for c in train.columns if c not in skip]
        if not features:
            raise PodiumError(f"{self.root / self.train_csv} has no feature columns besides "
                              f"{', '.join(sorted(skip))}")
        test = read_csv(self.root / self.test_csv, [self.id_col, *features], "the test table")
        sample = read_csv(self.root / self.sample_submission_path, [self.id_col],
                          "the sample submission")
        test = test.set_index(self.id_col)
        missing = [i for i in sample[self.id_col] if i not in test.index]
        if missing:
            raise PodiumError(f"{self.root / self.test_csv}: no row for sample submission id "
                              f"{missing[0]} ({len(missing)} missing)")
        self.labels, self.class_names = encode_target(
            train[self.target_col].tolist(), self.task, self.root / self.train_csv,
            self.target_col,
        )
        self.features = features
        self.train_frame = train[features]
        self.test_frame = test.loc[sample[self.id_col], features].reset_index(drop=True)
        self.train_ids, self.test_ids = train[self.id_col].tolist(), sample[self.id_col].tolist()
        self.groups = train[self.group_col].tolist() if self.group_col else None
        self.sample = sample

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.read_folder()
            self.train_idx, self.val_idx = split_indices(
                self.labels, self.class_names, self.val_fraction, self.seed, self.n_folds,
                self.fold, self.groups, stratify=self.task != "regression",
            )
            numeric = numeric_columns(self.train_frame, self.features)
            categorical = (list(self.categorical_cols) if self.categorical_cols is not None
                           else [c for c in self.features if c not in numeric])
            numeric = [c for c in numeric if c not in categorical]
            self.transformer = feature_transformer(numeric, categorical)
            self.transformer.fit(self.as_model_input(self.train_frame.iloc[self.train_idx],
                                                     numeric))
            self.numeric = numeric
            x = self.transform(self.train_frame)
            labels = torch.from_numpy(self.labels)
            self.train_set = TensorImageDataset(x[self.train_idx], labels[self.train_idx])
            self.val_set = TensorImageDataset(x[self.val_idx], labels[self.val_idx])
            self.class_counts = [] if self.task == "regression" else np.bincount(
                self.labels[self.train_idx], minlength=len(self.class_names)).tolist()
            self.mean, self.std = [], []  # no image normalisation in the module
            self.net_inputs = {"in_features": int(x.shape[1])}
        if stage == "predict" and self.test_set is None:
            self.test_set = TensorImageDataset(self.transform(self.test_frame))

    @staticmethod
    def as_model_input(frame: pd.DataFrame, numeric: Sequence[str]) -> pd.DataFrame:
        """Numbers as floats (empty -> NaN, imputed), everything else as text categories."""
        frame = frame.copy()
        for column in numeric:
            frame[column] = pd.to_numeric(frame[column].replace("", np.nan), errors="coerce")
        return frame

    def transform(self, frame: pd.DataFrame) -> torch.Tensor:
        values = self.transformer.transform(self.as_model_input(frame, self.numeric))
        return torch.from_numpy(np.asarray(values, dtype=np.float32))


# -- the embedded demos ---------------------------------------------------------------------
DEMOS = ("regression", "binary")


def build_tabular_demo(root: str | Path, kind: str, seed: int = 0,
                       test_fraction: float = 0.2) -> Path:
    """Write a demo folder from scikit-learn's bundled data (no download), atomically.

    regression: diabetes (442 rows, 10 features, `sex` as a text category so one-hot is
    exercised; target = disease progression, a float). binary: breast cancer (569 rows,
    30 features; target `malignant` | `benign`).
    """
    from sklearn.datasets import load_breast_cancer, load_diabetes

    if kind not in DEMOS:
        raise PodiumError(f"data.demo={kind} is unknown: use one of {', '.join(DEMOS)}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    if kind == "regression":
        data = load_diabetes(as_frame=True, scaled=False)
        features = data.frame.drop(columns="target")
        features["sex"] = features["sex"].map({1.0: "a", 2.0: "b"})
        target = data.frame["target"].astype(float)
    else:
        data = load_breast_cancer(as_frame=True)
        features = data.frame.drop(columns="target")
        target = pd.Series(np.asarray(data.target_names)[data.target], name="target")
    n = len(features)
    ids = [f"{i:05d}" for i in rng.permutation(n)]
    order = rng.permutation(n)
    n_test = int(round(test_fraction * n))
    test_idx, train_idx = order[:n_test], order[n_test:]
    table = features.assign(target=target.to_numpy())
    table.insert(0, "id", ids)

    with built_aside(root) as tmp:
        table.iloc[train_idx].to_csv(tmp / "train.csv", index=False)
        table.iloc[test_idx].drop(columns="target").to_csv(tmp / "test.csv", index=False)
        table.iloc[test_idx][["id", "target"]].to_csv(tmp / "answers.csv", index=False)
        placeholder = 0.0 if kind == "regression" else str(target.iloc[0])
        sample = table.iloc[test_idx][["id"]].assign(target=placeholder)
        sample.to_csv(tmp / "sample_submission.csv", index=False)
    return root
