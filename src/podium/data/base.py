"""A competition folder as a LightningDataModule: CSVs read once, tensors held in memory.

`CompetitionDataModule` is the shared base: it reads the labels, splits them (stratified
hold-out, or fold `data.fold` of a k-fold with an inner validation split of the fold's
training rows: podium.data.splits.nested_split), serves the loaders and declares the
`DataSpec` (podium.spec) after `setup()`. Two siblings fill in the inputs:
- `ImageDataModule` (podium.data.image): `<root>/train/<id>.<ext>` (or class folders
  `train/<class>/`: podium.data.layouts) and `<root>/test/<id>.<ext>` decoded once into one uint8
  tensor (podium.data.decode).
- `TabularDataModule` (podium.data.tabular): feature columns of CSVs, encoded to float32.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from podium.data.labels import (
    check_values,
    encode_target,
    encode_target_columns,
    infer_task,
    join_label_set,
)
from podium.data.layouts import ClassFolders
from podium.data.samplers import EpochSeeded
from podium.data.splits import nested_split
from podium.data.targets import check_target_transform, fit_target_scale
from podium.errors import PodiumError
from podium.io import read_csv, read_sample_submission
from podium.spec import DataSpec

log = logging.getLogger(__name__)


class TensorRows(Dataset):
    """Rows of one tensor (uint8 images (N, C, H, W) or float features (N, F)), optional
    labels, optional per-sample transform.

    `index` selects the rows of `inputs` this dataset serves, lazily (the train and
    validation splits share one tensor; a memory-mapped cache is never copied into RAM);
    without it every row. `labels` has one entry per item served.
    """

    def __init__(
        self, inputs: torch.Tensor, labels: torch.Tensor | None = None,
        transform: Callable | None = None, index: np.ndarray | None = None,
    ) -> None:
        self.inputs, self.labels, self.transform, self.index = inputs, labels, transform, index

    def __len__(self) -> int:
        return len(self.inputs) if self.index is None else len(self.index)

    def __getitem__(self, i: int):
        row = self.inputs[i if self.index is None else int(self.index[i])]
        if self.transform is not None:
            row = self.transform(row)
        return row if self.labels is None else (row, self.labels[i])

    def __getitems__(self, items: list[int]):
        """A whole batch in one indexing operation (the DataLoader calls this instead of
        `__getitem__` per item, then `collate_batch`)."""
        rows = torch.as_tensor(items if self.index is None else self.index[items])
        inputs = self.inputs[rows]
        if self.transform is not None:
            inputs = torch.stack([self.transform(row) for row in inputs])
        return inputs if self.labels is None else (inputs, self.labels[items])


def collate_batch(batch):
    """TensorRows.__getitems__ returns the batch already stacked."""
    return batch


class CompetitionDataModule(L.LightningDataModule):
    """The shared base: labels read and split, loaders served, the DataSpec declared.

    A sibling implements `read_inputs()` (read and check its input files after the labels)
    and `build_sets()` (the train/val/oof datasets and the spec's input fields), and
    `read_test()` (the test set, sample-submission order). After `setup()`:
    `spec` (podium.spec.DataSpec), `train_set`, `val_set`, `oof_set`, `train_ids`, `labels`,
    `train_idx`/`val_idx`/`oof_idx`, `test_ids`, `sample` (the sample submission);
    `test_set` after `setup("predict")`.

    Rows (podium.data.splits.Split): `train_idx` the model trains on (the spec's class
    counts, encoders and image statistics come from them), `val_idx` Lightning validates on
    (checkpoint, early stopping, every monitored value), `oof_idx` predicted once for
    oof.csv. A hold-out validates on its oof rows; fold f of a k-fold validates on an inner
    split of its training rows and predicts its held-out rows, which choose nothing.
    """

    def __init__(
        self,
        root: str,
        id_col: str = "id",
        target_col: str = "label",
        train_csv: str = "train.csv",
        sample_submission: str = "sample_submission.csv",
        group_col: str | None = None,
        task: str = "multiclass",
        val_fraction: float = 0.2,
        n_folds: int | None = None,
        fold: int | None = None,
        seed: int = 42,
        batch_size: int | None = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        sampler: Callable[..., Sampler] | None = None,
        drop_last: bool = True,
        demo: str | None = None,
        demo_root: str | None = None,
        answers: str | None = None,
        target_cols: Sequence[str] | None = None,
        label_sep: str = " ",
        test_prior: str = "train",
        target_transform: str = "none",
        positive_class: str | None = None,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.id_col, self.target_col, self.group_col = id_col, target_col, group_col
        self.train_csv, self.sample_submission_path = train_csv, sample_submission
        self.task, self.target_transform = task, target_transform  # task "auto": from the labels
        self.val_fraction, self.n_folds, self.fold, self.seed = val_fraction, n_folds, fold, seed
        self.batch_size = batch_size  # None: from the training rows (rows_batch_size)
        self.fixed_eval_batch_size = eval_batch_size
        self.num_workers, self.sampler = num_workers, sampler
        self.drop_last = drop_last  # a last partial batch of a few images: noisy BatchNorm
        self.demo, self.demo_root = demo, Path(demo_root) if demo_root else None
        self.answers = Path(answers) if answers else None  # a demo's answer key
        # multilabel: 0/1 columns, one per label, instead of a column of label sets
        self.target_cols, self.label_sep = list(target_cols or []), label_sep
        self.test_prior = str(test_prior)  # podium.prior: train | uniform | estimate | a CSV
        self.positive_class = positive_class  # binary F1's class (podium.data.detect)
        self.spec: DataSpec | None = None
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.oof_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.train_ids: list[str] = []
        self.test_ids: list[str] = []
        self.labels = np.zeros(0)
        self.class_names: list[str] = []
        self.train_idx = self.val_idx = self.oof_idx = np.zeros(0, dtype=np.int64)
        self.sample: pd.DataFrame | None = None

    # -- reading the folder ---------------------------------------------------------------
    def prepare_data(self) -> None:
        """Build an embedded demo on first use (only at its own path, never elsewhere)."""
        if self.demo_root and self.root.resolve() == self.demo_root.resolve():
            from podium.data.demo import build_if_missing

            build_if_missing(self.root, self.demo, self.train_csv)

    def check_root(self, inputs: str) -> None:
        if not self.root.is_dir():
            raise PodiumError(
                f"data.root={self.root} is not a folder: set data.root=<competition folder> "
                f"holding {self.train_csv}, {inputs} and {self.sample_submission_path}"
            )

    def read_labels(self, extra_columns: Sequence[str] = (), layout: ClassFolders | None = None,
                    sample: pd.DataFrame | None = None) -> pd.DataFrame:
        """train.csv (or a `layout`'s labels: podium.data.layouts) checked and encoded, the
        sample submission read (unless given as `sample`); returns the labels."""
        path = self.root / self.train_csv if layout is None else layout.source
        targets = self.target_cols or [self.target_col]
        columns = [self.id_col, *targets, *filter(None, [self.group_col]), *extra_columns]
        train = read_csv(path, columns, "the training labels") if layout is None else layout.train
        check_values(train, path, self.id_col, targets[0], allow_empty=self.task == "multilabel")
        if self.target_cols:
            self.labels, self.class_names = encode_target_columns(train, self.target_cols, path,
                                                                  self.task)
        else:
            if self.task == "auto":
                self.task, _ = infer_task(train[self.target_col].tolist())
            check_target_transform(self.target_transform, self.task, path, self.target_col,
                                   train[self.target_col].tolist())
            self.labels, self.class_names = encode_target(
                train[self.target_col].tolist(), self.task, path, self.target_col, self.label_sep)
        if self.task != "regression":
            from podium.run import check_class_names

            check_class_names(self.class_names, self.id_col, path)
        self.train_ids = train[self.id_col].tolist()
        self.read_sample(sample)
        return train

    def read_sample(self, sample: pd.DataFrame | None = None) -> None:
        """The sample submission (or `sample`, one a layout wrote): the test ids, their
        order and the submission's header."""
        self.sample = sample if sample is not None else read_sample_submission(
            self.root / self.sample_submission_path, self.id_col)
        self.test_ids = self.sample[self.id_col].tolist()

    def split(self) -> None:
        """Read and check every input, split the labels into training, validation and oof
        rows (podium.data.splits.nested_split); nothing decoded or encoded yet."""
        train = self.read_inputs()
        groups = train[self.group_col].tolist() if self.group_col else None
        self.train_idx, self.val_idx, self.oof_idx = nested_split(
            self.labels, self.class_names, self.val_fraction, self.seed, self.n_folds,
            self.fold, groups, stratify=self.task != "regression",
        )

    def setup(self, stage: str | None = None) -> None:
        """Read, split and build once; safe to call again (Lightning calls it per stage)."""
        if self.spec is None:
            self.split()
            if self.batch_size is None:
                self.batch_size = rows_batch_size(len(self.train_idx))
            self.spec = self.build_sets()
        if stage == "predict" and self.test_set is None:
            self.test_set = self.read_test()

    def setup_test(self, spec: DataSpec) -> None:
        """Only the test set, for a model trained elsewhere (`make predict`): the sample
        submission and the test inputs, prepared as the spec says; no train.csv needed."""
        self.check_root("test inputs")
        self.spec, self.task, self.class_names = spec, spec.task, list(spec.class_names)
        self.read_sample()
        self.find_test()
        self.test_set = self.read_test()

    # -- what a sibling implements ------------------------------------------------------------
    def read_inputs(self) -> pd.DataFrame:
        """Read and check train.csv (via read_labels) and every input; return train.csv."""
        raise NotImplementedError

    def build_sets(self) -> DataSpec:
        """The train/val/oof datasets (`train_idx`, `val_idx`, `oof_idx`); returns the
        spec."""
        raise NotImplementedError

    def find_test(self) -> None:
        """Find and check the test inputs of `test_ids` (no decoding yet)."""
        raise NotImplementedError

    def read_test(self) -> Dataset:
        """The test set, in `test_ids` order, prepared like the training inputs."""
        raise NotImplementedError

    def spec_fields(self) -> dict:
        """The spec's fields every sibling shares (labels, training-split counts, columns)."""
        if self.task == "multilabel":  # positives per label
            counts = tuple(int(n) for n in self.labels[self.train_idx].sum(axis=0).round())
        else:
            counts = () if self.task == "regression" else tuple(np.bincount(
                self.labels[self.train_idx], minlength=len(self.class_names)).tolist())
        from podium import prior

        prior.check_setting(self.test_prior, self.task)
        test_prior = prior.resolve(self.test_prior, self.class_names, self.root)
        return {"task": self.task, "class_names": tuple(self.class_names),
                "class_counts": counts, "id_col": self.id_col, "target_col": self.target_col,
                "train_rows": len(self.train_idx), "test_prior_setting": self.test_prior,
                "test_prior": () if test_prior is None else tuple(test_prior.tolist()),
                "target_scale": fit_target_scale(self.labels[self.train_idx],
                                                 self.target_transform)
                if self.task == "regression" else {}}

    epoch_range = (10, 100)  # trainer.max_epochs=null: the fewest and the most epochs

    def suggested_max_epochs(self, target_steps: int | None = None,
                             epoch_range: tuple[int, int | None] | None = None) -> int:
        """`trainer.max_epochs=null`: about `target_steps` optimizer steps (MAX_EPOCH_STEPS),
        within `epoch_range` (default the data's: a small set takes many short epochs, a
        large one few long ones)."""
        steps = max(1, len(self.train_idx) // self.batch_size)
        epochs = round((target_steps or MAX_EPOCH_STEPS) / steps)
        return int(np.clip(epochs, *(epoch_range or self.epoch_range)))

    # -- loaders ---------------------------------------------------------------------------
    def loader(self, dataset: Dataset, batch_size: int, **kwargs) -> DataLoader:
        return DataLoader(
            dataset, batch_size=batch_size, num_workers=self.num_workers,
            collate_fn=collate_batch,
            persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available(),
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        base = self.sampler(labels=self.train_set.labels, seed=self.seed) if self.sampler else None
        epoch = self.trainer.current_epoch if self.trainer is not None else 0  # resumed runs
        sampler = EpochSeeded(len(self.train_set), self.seed, epoch, base)
        return self.loader(self.train_set, self.batch_size, sampler=sampler,
                           drop_last=self.drop_last and len(self.train_set) > self.batch_size)

    @property
    def eval_batch_size(self) -> int:
        return self.fixed_eval_batch_size or 2 * (self.batch_size or 128)  # make predict: 256

    def val_dataloader(self) -> DataLoader:
        """Lightning's validation rows: what chooses the checkpoint (under k-fold the inner
        split of the fold's training rows, never its held-out rows)."""
        return self.loader(self.val_set, self.eval_batch_size)

    def oof_dataloader(self) -> DataLoader:
        """The rows oof.csv holds: the hold-out, or the fold's held-out rows."""
        return self.loader(self.oof_set, self.eval_batch_size)

    def predict_test_dataloader(self) -> DataLoader:
        return self.loader(self.test_set, self.eval_batch_size)

    def predict_dataloader(self) -> list[DataLoader]:
        """PREDICT_SETS in order: the test set, then the oof rows (the OOF file) when there
        are any (`data.val_fraction=0` without folds has none)."""
        loaders = [self.predict_test_dataloader()]
        return loaders + [self.oof_dataloader()] if self.has_oof else loaders

    @property
    def has_validation(self) -> bool:
        """False with `data.val_fraction=0`: nothing validates (no folds: every labelled
        row trains; a fold: all its training rows train, its held-out rows still predicted)."""
        return len(self.val_idx) > 0

    @property
    def has_oof(self) -> bool:
        """Rows to predict for oof.csv: a hold-out or a fold's held-out rows."""
        return len(self.oof_idx) > 0

    @property
    def nested(self) -> bool:
        """The validation rows are not the oof rows: a fold of a k-fold, whose inner
        validation split chose the checkpoint while its held-out rows chose nothing."""
        return not np.array_equal(self.val_idx, self.oof_idx)

    @property
    def oof_ids(self) -> list[str]:
        return [self.train_ids[i] for i in self.oof_idx]

    @property
    def oof_labels(self) -> list[str]:
        """The oof rows' true labels as oof.csv spells them."""
        if self.task == "regression":
            return self.labels[self.oof_idx].tolist()
        if self.task == "multilabel":  # space-separated label sets ("" = none)
            names = np.asarray(self.class_names, dtype=object)
            return [join_label_set(names[row > 0.5]) for row in self.labels[self.oof_idx]]
        return [self.class_names[i] for i in self.labels[self.oof_idx]]


def rows_batch_size(rows: int) -> int:
    """`data.batch_size=null`: the power of two nearest rows / 64, 16 to 1024 (a 500-row
    table: 16, 30 steps an epoch; 40k rows: 512, 78 steps)."""
    return int(np.clip(2 ** round(np.log2(max(rows, 1) / 64)), 16, 1024))


MAX_EPOCH_STEPS = 2000  # optimizer steps trainer.max_epochs=null aims at
PREDICT_SETS = ("test", "oof")  # the order of predict_dataloader(): writers look up by name
