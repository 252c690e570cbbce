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

from podium.datamodule import CompetitionDataModule, TensorRows
from podium.errors import PodiumError
from podium.io import read_csv
from podium.spec import DataSpec


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


def as_model_input(frame: pd.DataFrame, numeric: Sequence[str]) -> pd.DataFrame:
    """Numbers as floats (empty -> NaN, imputed), everything else as text categories."""
    frame = frame.copy()
    for column in numeric:
        frame[column] = pd.to_numeric(frame[column].replace("", np.nan), errors="coerce")
    return frame


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
        self.numeric: list[str] = []
        self.transformer = None
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
        numeric = numeric_columns(self.train_frame, self.features)
        categorical = (list(self.categorical_cols) if self.categorical_cols is not None
                       else [c for c in self.features if c not in numeric])
        self.numeric = [c for c in numeric if c not in categorical]
        self.transformer = feature_transformer(self.numeric, categorical)
        self.transformer.fit(as_model_input(self.train_frame.iloc[self.train_idx], self.numeric))
        x = self.transform(self.train_frame)
        labels = torch.from_numpy(self.labels)
        self.train_set = TensorRows(x[self.train_idx], labels[self.train_idx])
        self.val_set = TensorRows(x[self.val_idx], labels[self.val_idx])
        return DataSpec(**self.spec_fields(), net_inputs={"in_features": int(x.shape[1])})

    def read_test_frame(self) -> pd.DataFrame:
        """test.csv's feature rows in the sample submission's order."""
        path = self.root / self.test_csv
        test = read_csv(path, [self.id_col, *self.features], "the test table")
        test = test.set_index(self.id_col)
        missing = [i for i in self.test_ids if i not in test.index]
        if missing:
            raise PodiumError(f"{path}: no row for sample submission id {missing[0]} "
                              f"({len(missing)} missing)")
        return test.loc[self.test_ids, self.features].reset_index(drop=True)

    def read_test(self) -> Dataset:
        return TensorRows(self.transform(self.test_frame))

    def transform(self, frame: pd.DataFrame) -> torch.Tensor:
        values = self.transformer.transform(as_model_input(frame, self.numeric))
        return torch.from_numpy(np.asarray(values, dtype=np.float32))
