"""A tabular competition folder as a LightningDataModule (a sibling of the image one).

Contract: `<root>/train.csv` (id, feature columns, target), `<root>/test.csv` (id, the same
feature columns), `<root>/sample_submission.csv` (id + one prediction column). Each column
gets a kind (podium.data.columns: numeric, categorical, text-like, id-like, constant; the run
prints one line per kind) and numeric and categorical columns an encoder, fitted on the
training split only, so the validation score is what the test set will see. Features are
one float32 tensor held in memory (transformed numbers, then category indices); the tabular
networks (model=tabm, model=mlp) read its layout from the DataSpec's `features`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import Dataset

from podium.data.base import CompetitionDataModule, TensorRows
from podium.data.columns import column_kinds, encode, fit_encoders, summary_lines
from podium.errors import PodiumError
from podium.io import check_columns, check_same_ids, read_csv
from podium.spec import DataSpec


class TabularDataModule(CompetitionDataModule):
    """CSV features -> one float32 tensor: transformed numbers, then category indices.

    Options: `test_csv`, `feature_cols` (None: every column but id, target, group and
    `drop_cols`), `categorical_cols` (None: by kind, podium.data.columns),
    `numeric_transform` (standard | quantile), `num_bins` (piecewise-linear bins per numeric
    column), `rare_min_count` (rarer levels share one).
    """

    def __init__(self, root: str, test_csv: str = "test.csv",
                 feature_cols: Sequence[str] | None = None, drop_cols: Sequence[str] = (),
                 categorical_cols: Sequence[str] | None = None,
                 numeric_transform: str = "quantile", num_bins: int = 48,
                 rare_min_count: int = 5, **kwargs) -> None:
        super().__init__(root, **kwargs)
        self.test_csv = test_csv
        self.feature_cols = list(feature_cols) if feature_cols else None
        self.drop_cols, self.categorical_cols = list(drop_cols), categorical_cols
        self.numeric_transform, self.num_bins = numeric_transform, num_bins
        self.rare_min_count = rare_min_count
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
        """Encoders fitted on the rows the model trains on only: the validation and OOF
        scores are what the test set will see."""
        kinds = column_kinds(self.train_frame, self.features, self.root / self.train_csv,
                             self.categorical_cols)
        train_split = self.train_frame.iloc[self.train_idx]
        features = fit_encoders(train_split, kinds, self.numeric_transform, self.num_bins,
                                self.rare_min_count)
        if rank_zero_only.rank == 0:
            print("\n".join(summary_lines(train_split, kinds, features)), flush=True)
        x = torch.from_numpy(encode(self.train_frame, features))
        labels = torch.from_numpy(self.labels)
        self.train_set = TensorRows(x[self.train_idx], labels[self.train_idx])
        self.val_set = TensorRows(x[self.val_idx], labels[self.val_idx])
        self.oof_set = TensorRows(x[self.oof_idx], labels[self.oof_idx])
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
        return TensorRows(torch.from_numpy(encode(self.test_frame, self.spec.features)))
