"""A tabular competition folder as a LightningDataModule (a sibling of the image one).

Contract: `<root>/train.csv` (id, feature columns, target), `<root>/test.csv` (id, the same
feature columns), `<root>/sample_submission.csv` (id + one prediction column). Columns
that are entirely numeric are imputed (median) and standardised, the others one-hot
encoded (unknown test categories -> all zeros); both are fitted on the training split
only, so the validation score is what the test set will see. Features are float32
tensors held in memory; the model (model=mlp) takes `in_features` from the DataSpec.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from podium.data.base import CompetitionDataModule, TensorRows
from podium.errors import PodiumError
from podium.io import check_columns, check_same_ids, read_csv
from podium.spec import DataSpec


def numeric_columns(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """Columns whose non-empty values all parse as numbers."""
    found = []
    for column in columns:
        values = frame[column][frame[column].str.strip() != ""]
        if len(values) and pd.to_numeric(values, errors="coerce").notna().all():
            found.append(column)
    return found


def as_numbers(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values.replace("", np.nan), errors="coerce")


def fit_features(frame: pd.DataFrame, numeric: Sequence[str],
                 categorical: Sequence[str]) -> dict:
    """The encoders' fitted values as plain numbers and strings (they travel in the DataSpec,
    so a checkpoint read with weights_only=True can encode a new test table): per numeric
    column [median, mean, std] of the median-imputed values (what scikit-learn's
    SimpleImputer + StandardScaler learn), per categorical column its sorted categories
    (OneHotEncoder's)."""
    stats = {}
    for column in numeric:
        values = as_numbers(frame[column])
        median = float(values.median()) if values.notna().any() else 0.0
        filled = values.fillna(median)
        std = float(filled.std(ddof=0))
        stats[column] = [median, float(filled.mean()), std if std > 0 else 1.0]
    categories = {c: sorted(set(frame[c].astype(str))) for c in categorical}
    return {"columns": list(frame.columns), "numeric": stats, "categorical": categories}


def encode_features(frame: pd.DataFrame, features: dict) -> np.ndarray:
    """float32 (N, F): standardised numbers, then one-hot categories (unknown -> zeros)."""
    blocks = [((as_numbers(frame[c]).fillna(median) - mean) / std).to_numpy()[:, None]
              for c, (median, mean, std) in features["numeric"].items()]
    for column, categories in features["categorical"].items():
        values = frame[column].astype(str).to_numpy()[:, None]
        blocks.append(values == np.asarray(categories, dtype=object)[None, :])
    if not blocks:
        return np.zeros((len(frame), 0), dtype=np.float32)
    return np.concatenate([b.astype(np.float32) for b in blocks], axis=1)


class TabularDataModule(CompetitionDataModule):
    """CSV features -> standardised/one-hot float32 tensors.

    Options: `test_csv`, `feature_cols` (None: every column but id, target, group and
    `drop_cols`), `categorical_cols` (None: every column that is not entirely numeric).
    """

    def __init__(self, root: str, test_csv: str = "test.csv",
                 feature_cols: Sequence[str] | None = None, drop_cols: Sequence[str] = (),
                 categorical_cols: Sequence[str] | None = None, **kwargs) -> None:
        super().__init__(root, **kwargs)
        self.test_csv = test_csv
        self.feature_cols = list(feature_cols) if feature_cols else None
        self.drop_cols, self.categorical_cols = list(drop_cols), categorical_cols
        self.features: list[str] = []
        self.train_frame = self.test_frame = pd.DataFrame()

    def read_inputs(self) -> pd.DataFrame:
        self.check_root(self.test_csv)
        train = self.read_labels()
        skip = {self.id_col, self.target_col, *self.target_cols, *self.drop_cols,
                *filter(None, [self.group_col])}
        self.features = self.feature_cols or [c for c in train.columns if c not in skip]
        if not self.features:
            raise PodiumError(f"{self.root / self.train_csv} has no feature columns besides "
                              f"{', '.join(sorted(skip))}")
        self.train_frame = train[self.features]
        self.test_frame = self.read_test_frame()  # checked now, before any training
        return train

    def build_sets(self) -> DataSpec:
        """Encoders fitted on the training split only: the validation score is what the
        test set will see."""
        numeric = numeric_columns(self.train_frame, self.features)
        categorical = (list(self.categorical_cols) if self.categorical_cols is not None
                       else [c for c in self.features if c not in numeric])
        numeric = [c for c in numeric if c not in categorical]
        features = fit_features(self.train_frame.iloc[self.train_idx], numeric, categorical)
        x = torch.from_numpy(encode_features(self.train_frame, features))
        labels = torch.from_numpy(self.labels)
        self.train_set = TensorRows(x[self.train_idx], labels[self.train_idx])
        self.val_set = TensorRows(x[self.val_idx], labels[self.val_idx])
        return DataSpec(**self.spec_fields(), net_inputs={"in_features": int(x.shape[1])},
                        features=features)

    def find_test(self) -> None:
        """A model trained elsewhere (make predict): its feature columns, from the spec."""
        self.features = list(self.spec.features["columns"])
        self.test_frame = self.read_test_frame("the model was trained on them: give the "
                                               "test table every feature column it was "
                                               "trained on")

    def read_test_frame(self, fix: str | None = None) -> pd.DataFrame:
        """test.csv's feature rows in the sample submission's order: one row per id of the
        sample submission (no other), every feature column there (`fix`: what to do when
        one is not)."""
        path = self.root / self.test_csv
        test = read_csv(path, [self.id_col], "the test table", id_col=self.id_col)
        fix = fix or (f"the test table needs every feature column of {self.train_csv} (or "
                      f"leave a column out of both with data.drop_cols)")
        check_columns(test, path, self.features, fix, kind="feature column")
        check_same_ids(path, test[self.id_col].tolist(), self.test_ids,
                       self.sample_submission_path, f"{self.test_csv} and "
                       f"{self.sample_submission_path} must list the same test ids (is "
                       f"data.test_csv or data.sample_submission another competition's?)")
        test = test.set_index(self.id_col)
        return test.loc[self.test_ids, self.features].reset_index(drop=True)

    def read_test(self) -> Dataset:
        return TensorRows(torch.from_numpy(encode_features(self.test_frame, self.spec.features)))
