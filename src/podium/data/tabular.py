"""A tabular competition folder as a LightningDataModule (a sibling of the image one).

Contract: `<root>/train.csv` (id, feature columns, target), `<root>/test.csv` (id, the same
feature columns), `<root>/sample_submission.csv` (id + one prediction column). Each column
gets a kind (podium.data.columns: numeric, categorical, text-like, id-like, constant; the run
prints one line per kind) and numeric and categorical columns an encoder, fitted on the
training split only, so the validation score is what the test set will see. Features are
one float32 tensor held in memory (transformed numbers, then category indices); the tabular
networks (model=tabm, model=mlp) read its layout from the DataSpec's `features`.

Before the kinds are decided, columns are made from columns (podium.data.engineering): the
competitor's `data.features_fn`, date parts, text through tf-idf + SVD, constant and one-level
columns dropped. `train_frame` / `test_frame` hold the result (text cells, one column per
feature, `features` their names): what the network encodes and what the trees read.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import Dataset

from podium.data.base import CompetitionDataModule, TensorRows
from podium.data.columns import column_kinds, encode, fit_encoders, summary_lines
from podium.data.engineering import (
    apply_features_fn,
    engineer,
    engineering_lines,
    fit_engineering,
    one_level,
)
from podium.errors import PodiumError
from podium.io import check_columns, check_same_ids, read_csv
from podium.spec import DataSpec

MADE: dict[tuple, tuple] = {}  # the frames last made in this process, by their inputs


def frame_key(frame: pd.DataFrame) -> tuple:
    """A frame's identity by content: its columns and a hash of every cell."""
    import hashlib

    cells = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return tuple(frame.columns), hashlib.sha1(cells.tobytes()).hexdigest()


class TabularDataModule(CompetitionDataModule):
    """CSV features -> one float32 tensor: transformed numbers, then category indices.

    Options: `test_csv`, `feature_cols` (None: every column but id, target, group and
    `drop_cols`), `categorical_cols` (None: by kind, podium.data.columns),
    `numeric_transform` (standard | quantile), `num_bins` (piecewise-linear bins per numeric
    column), `rare_min_count` (rarer levels share one), `features_fn` (module:function, the
    competitor's own columns), `dates` (date columns to parts), `text_components` (SVD
    components per text column; 0: text dropped), `text_analyzer` (word | char_wb),
    `text_ngrams` ([low, high]), `text_max_terms` (the tf-idf vocabulary's size).
    """

    def __init__(self, root: str, test_csv: str = "test.csv",
                 feature_cols: Sequence[str] | None = None, drop_cols: Sequence[str] = (),
                 categorical_cols: Sequence[str] | None = None,
                 numeric_transform: str = "quantile", num_bins: int = 48,
                 rare_min_count: int = 5, features_fn: str | None = None, dates: bool = True,
                 text_components: int = 8, text_analyzer: str = "word",
                 text_ngrams: Sequence[int] = (1, 2), text_max_terms: int = 2000,
                 **kwargs) -> None:
        super().__init__(root, **kwargs)
        self.test_csv = test_csv
        self.feature_cols = list(feature_cols) if feature_cols else None
        self.drop_cols, self.categorical_cols = list(drop_cols), categorical_cols
        self.numeric_transform, self.num_bins = numeric_transform, num_bins
        self.rare_min_count = rare_min_count
        self.features_fn = features_fn or None
        self.engineering_settings = {
            "dates": bool(dates), "text_components": int(text_components),
            "text_analyzer": text_analyzer, "text_ngrams": [int(n) for n in text_ngrams],
            "text_max_terms": int(text_max_terms)}
        self.features: list[str] = []  # the frames' columns: what the models read
        self.inputs: list[str] = []    # the table's columns they are made from
        self.engineering: dict = {}
        self.kinds: dict[str, list[str]] = {}  # column_kinds of train_frame's columns
        self.train_frame = self.test_frame = pd.DataFrame()

    def read_inputs(self) -> pd.DataFrame:
        self.check_root(self.test_csv)
        train = self.read_labels()
        table = train.drop(columns=[self.target_col, *self.target_cols], errors="ignore")
        changed = None
        if self.features_fn:  # the competitor's own columns, before anything is decided
            mine = apply_features_fn(table, self.features_fn, self.root / self.train_csv,
                                     self.id_col)
            changed = ([c for c in mine.columns if c not in table.columns],
                       [c for c in table.columns if c not in mine.columns])
            table = mine
        skip = {self.id_col, self.target_col, *self.target_cols, *self.drop_cols,
                *filter(None, [self.group_col])}
        self.inputs = self.feature_cols or [c for c in table.columns if c not in skip]
        if not self.inputs:
            raise PodiumError(f"{self.root / self.train_csv} has no feature columns besides "
                              f"{', '.join(sorted(skip))}")
        check_columns(table, self.root / self.train_csv, self.inputs,
                      "data.feature_cols names a column the table lacks (after "
                      "data.features_fn, when given)", kind="feature column")
        test = self.read_test_frame()  # checked now, before any training
        self.make_features(table[self.inputs].reset_index(drop=True), test, changed)
        return train

    def make_features(self, train: pd.DataFrame, test: pd.DataFrame,
                      changed: tuple | None = None) -> None:
        """The frames the models read: date and text columns made into numbers, constant
        and one-level columns dropped (podium.data.engineering), one line per family
        (`changed`: the columns features_fn added and removed). Nothing here depends on the
        fold: `make cv`'s folds in one process make them once (`MADE`)."""
        key = (frame_key(train), frame_key(test), str(self.root), self.rare_min_count,
               repr(self.categorical_cols), repr(self.engineering_settings))
        if key not in MADE:
            MADE.clear()
            MADE[key] = self.made_frames(train, test)
        self.engineering, self.features, self.kinds, frames, dropped = MADE[key]
        self.train_frame, self.test_frame = (frame.copy() for frame in frames)
        lines = engineering_lines(self.engineering, dropped, self.rare_min_count,
                                  self.features_fn, changed or ((), ()))
        if lines and rank_zero_only.rank == 0:
            print("\n".join(lines), flush=True)

    def made_frames(self, train: pd.DataFrame, test: pd.DataFrame) -> tuple:
        """(engineering, feature columns, their kinds, (train, test) frames, dropped)."""
        engineering = fit_engineering(train, test, self.categorical_cols,
                                      **self.engineering_settings)
        train, test = engineer(train, engineering), engineer(test, engineering)
        kinds = column_kinds(train, list(train.columns), self.root / self.train_csv,
                             self.categorical_cols)
        dropped = one_level(train, kinds, self.rare_min_count)
        features = [c for c in train.columns if c not in dropped]
        if not features:
            raise PodiumError(f"{self.root / self.train_csv}: every feature column is constant "
                              f"or has one level ({', '.join(dropped)}): nothing to learn from")
        kinds = {kind: [c for c in columns if c not in dropped] for kind, columns in kinds.items()}
        return engineering, features, kinds, (train[features], test[features]), dropped

    def build_sets(self) -> DataSpec:
        """Encoders fitted on the rows the model trains on only: the validation and OOF
        scores are what the test set will see."""
        kinds = self.kinds
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
        features.update(self.made_frame_features())
        return DataSpec(**self.spec_fields(), net_inputs={"in_features": int(x.shape[1])},
                        features=features)

    def find_test(self) -> None:
        """A model trained elsewhere (make predict): the test frame rebuilt from its spec."""
        self.test_frame = self.made_test_frame(self.spec.features)

    def made_frame_features(self) -> dict:
        """How the frames were made, as plain JSON-able types: `columns` (the frames'),
        `inputs` (the table's columns they come from), `features_fn`, `engineering` (the
        date parts and the text transforms). The DataSpec's `features` holds them; a model
        without a DataSpec (a tree folder) saves them to predict a new folder."""
        return {"columns": list(self.features), "inputs": list(self.inputs),
                "features_fn": self.features_fn, "engineering": self.engineering}

    def made_test_frame(self, features: dict) -> pd.DataFrame:
        """This folder's test table (after `read_sample`) made into the frame a model
        trained with `features` (`made_frame_features`, or a DataSpec's; older specs: the
        columns only) reads: its own columns' function, date parts and text transforms."""
        self.features = list(features["columns"])
        self.inputs = list(features.get("inputs", self.features))
        self.features_fn = features.get("features_fn")
        test = self.read_test_frame("the model was trained on them: give the test table every "
                                    "feature column it was trained on")
        return engineer(test, features.get("engineering", {}))[self.features]

    def read_test_frame(self, fix: str | None = None) -> pd.DataFrame:
        """test.csv's input rows in the sample submission's order (after `features_fn`): one
        row per id of the sample submission (no other), every input column there (`fix`:
        what to do when one is not)."""
        path = self.root / self.test_csv
        test = read_csv(path, [self.id_col], "the test table", id_col=self.id_col)
        fix = fix or (f"the test table needs every feature column of {self.train_csv} (or "
                      f"leave a column out of both with data.drop_cols)")
        if self.features_fn:
            test = apply_features_fn(test, self.features_fn, path, self.id_col)
        check_columns(test, path, self.inputs, fix, kind="feature column")
        check_same_ids(path, test[self.id_col].tolist(), self.test_ids,
                       self.sample_submission_path, f"{self.test_csv} and "
                       f"{self.sample_submission_path} must list the same test ids (is "
                       f"data.test_csv or data.sample_submission another competition's?)")
        test = test.set_index(self.id_col)
        return test.loc[self.test_ids, self.inputs].reset_index(drop=True)

    def read_test(self) -> Dataset:
        return TensorRows(torch.from_numpy(encode(self.test_frame, self.spec.features)))
