"""Nested selection: a cv fold chooses its checkpoint on an inner split of its training rows
and predicts its held-out rows once, for oof.csv; a grouped hold-out keeps groups whole."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from lightning.pytorch.callbacks import Callback
from sklearn.model_selection import StratifiedKFold

from conftest import make_cfg

TINY = ["debug=limit", "model.net.depth=8", "model.net.width=8",
        "++trainer.limit_val_batches=1.0", "++trainer.enable_progress_bar=false"]


class RowsSeen(Callback):
    """The train.csv ids of the rows Lightning's training and validation loops iterate
    over (the datasets their loaders hold), and how many rows each validation pass saw."""

    def __init__(self) -> None:
        self.train: set[str] = set()
        self.val: set[str] = set()
        self.val_batch_rows = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.train |= self.ids(trainer, trainer.train_dataloader.dataset)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.val |= self.ids(trainer, trainer.val_dataloaders.dataset)
            self.val_batch_rows = 0

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx,
                                  dataloader_idx=0) -> None:
        self.val_batch_rows += len(batch[1])

    @staticmethod
    def ids(trainer, dataset) -> set[str]:
        return {str(trainer.datamodule.train_ids[int(i)]) for i in dataset.index}


def fit_recorded(tmp_path, demo_root, overrides, monkeypatch) -> RowsSeen:
    """`podium.train.train` on the demo with a RowsSeen on its Trainer."""
    import podium.build
    from podium.train import train

    seen, build = RowsSeen(), podium.build.build_trainer

    def with_recorder(cfg, **kwargs):
        trainer = build(cfg, **kwargs)
        trainer.callbacks.append(seen)
        return trainer

    monkeypatch.setattr(podium.build, "build_trainer", with_recorder)
    cfg = make_cfg(tmp_path, [f"data.root={demo_root}", f"data.demo_root={demo_root}", *TINY,
                              *overrides])
    train(cfg)
    return seen


def read_oof(folder) -> pd.DataFrame:
    return pd.read_csv(folder / "oof.csv", dtype={"id": str, "label": str})


def test_a_cv_fold_chooses_on_an_inner_split_and_predicts_its_held_out_rows(
        tmp_path, demo_root, monkeypatch):
    """Fold 1 of 3: Lightning validates only on rows it neither trains on nor writes to
    oof.csv; oof.csv holds exactly scikit-learn's StratifiedKFold held-out rows; the inner
    split is data.val_fraction of the fold's training rows, every class in it."""
    seen = fit_recorded(tmp_path, demo_root, ["data.n_folds=3", "data.fold=1"], monkeypatch)
    run = tmp_path / "run"
    oof = read_oof(run)
    train = pd.read_csv(demo_root / "train.csv", dtype=str)
    folds = StratifiedKFold(3, shuffle=True, random_state=42).split(train.id, train.label)
    fold_train, held_out = list(folds)[1]
    assert sorted(oof.id) == sorted(train.id[held_out])  # the outer fold's held-out rows
    assert (oof.fold == 1).all()

    assert seen.val and seen.train
    assert not seen.val & set(oof.id)  # the oof rows chose nothing
    assert not seen.val & seen.train
    assert not seen.train & set(oof.id)
    assert seen.val | seen.train == set(train.id[fold_train])  # the fold's training rows
    assert seen.val_batch_rows == len(seen.val)  # the whole inner split validated
    assert len(seen.val) == pytest.approx(0.2 * len(fold_train), abs=1)
    labels = train.set_index("id").label
    assert set(labels[sorted(seen.val)]) == set(train.label)  # stratified: every class

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["nested"] is True
    assert metrics["val_rows"] == len(seen.val) and metrics["oof_rows"] == len(held_out)
    assert metrics["train_rows"] == len(seen.train)
    # the class prior the probabilities carry: the shares of the rows trained on
    shares = labels[sorted(seen.train)].value_counts(normalize=True)
    for name, share in metrics["score_prior"].items():
        assert share == pytest.approx(shares[name], abs=1e-6)


def test_a_fold_without_an_inner_split_trains_on_all_its_training_rows(tmp_path, demo_root,
                                                                      monkeypatch):
    """`data.val_fraction=0` with folds: nothing validates (the last epoch), every training
    row of the fold trains, and its held-out rows are still predicted for oof.csv."""
    seen = fit_recorded(tmp_path, demo_root, ["data.n_folds=3", "data.fold=0",
                                              "data.val_fraction=0"], monkeypatch)
    train = pd.read_csv(demo_root / "train.csv", dtype=str)
    fold_train, held_out = next(StratifiedKFold(3, shuffle=True, random_state=42).split(
        train.id, train.label))
    assert not seen.val and seen.train == set(train.id[fold_train])
    assert sorted(read_oof(tmp_path / "run").id) == sorted(train.id[held_out])


def test_make_train_validates_on_the_rows_it_writes_to_oof(tmp_path, demo_root,
                                                            monkeypatch):
    """A single hold-out keeps its behaviour: the validation rows are oof.csv's rows."""
    seen = fit_recorded(tmp_path, demo_root, [], monkeypatch)
    oof = read_oof(tmp_path / "run")
    assert seen.val == set(oof.id) and not seen.val & seen.train
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["nested"] is False and metrics["val_rows"] == metrics["oof_rows"]


def test_the_report_says_what_chose_the_checkpoint():
    """The printed best val score says which rows chose the checkpoint; a fold's OOF score
    is printed beside it."""
    from podium.submission.ensemble import Summary
    from podium.train import Outcome, selection_lines

    summary = Summary(runs=["a"], weights=[1.0], metric="f1_macro", mode="max",
                      oof={"oof/f1_macro": 0.9123, "oof/acc": 0.95})
    hold_out = Outcome({"val/f1_macro": 0.9478}, summary, val_rows=92, oof_rows=92)
    [line] = selection_lines(hold_out, "val/f1_macro")
    assert line.startswith("best val/f1_macro: 0.9478 (this split chose the checkpoint: "
                           "optimistic")
    fold = Outcome({"val/f1_macro": 0.9478}, summary, val_rows=74, oof_rows=153, nested=True)
    lines = selection_lines(fold, "val/f1_macro")
    assert "inner validation split, 74 of the fold's training rows" in lines[0]
    assert lines[1].startswith("fold OOF f1_macro: 0.9123 (the fold's 153 held-out rows")


# -- the splits --------------------------------------------------------------------------
def write_table(root, labels, groups=None):
    """A tabular folder: one numeric feature, the labels (and a group column)."""
    root.mkdir(parents=True)
    n = len(labels)
    ids = [f"r{i:03d}" for i in range(n)]
    train = pd.DataFrame({"id": ids, "x": np.arange(n, dtype=float), "target": labels})
    if groups is not None:
        train["patient"] = groups
    train.to_csv(root / "train.csv", index=False)
    pd.DataFrame({"id": ["t0", "t1"], "x": [0.0, 1.0]}).to_csv(root / "test.csv", index=False)
    pd.DataFrame({"id": ["t0", "t1"], "target": ["a", "a"]}).to_csv(
        root / "sample_submission.csv", index=False)
    return train


def table_module(root, **kwargs):
    from podium.data.tabular import TabularDataModule

    data = TabularDataModule(root=str(root), target_col="target", **kwargs)
    data.split()
    return data


def test_every_fold_inner_split_is_stratified_and_apart_from_its_held_out_rows(tmp_path):
    """Five folds of an imbalanced table: the held-out rows partition the table; each inner
    validation split is carved from the fold's training rows, ~val_fraction of them, with
    every class (the rarest has 6 rows: 4 or 5 in a fold's training rows)."""
    labels = ["a"] * 120 + ["b"] * 30 + ["c"] * 6
    write_table(tmp_path / "t", labels)
    held = []
    for fold in range(5):
        data = table_module(tmp_path / "t", n_folds=5, fold=fold, val_fraction=0.25)
        train, val, oof = map(set, (data.train_idx, data.val_idx, data.oof_idx))
        held += sorted(oof)
        assert not train & val and not train & oof and not val & oof
        assert len(train | val | oof) == len(labels)
        assert len(val) == pytest.approx(0.25 * (len(train) + len(val)), abs=1)
        assert set(np.asarray(labels)[sorted(val)]) == {"a", "b", "c"}
        assert data.oof_ids == [f"r{i:03d}" for i in sorted(oof)]
    assert sorted(held) == list(range(len(labels)))  # each row held out once


def test_a_grouped_fold_keeps_groups_whole_in_the_inner_split(tmp_path):
    rng = np.random.default_rng(0)
    groups = [f"p{i // 4}" for i in range(120)]  # 30 patients of 4 rows
    labels = list(rng.choice(["a", "b"], size=120))
    write_table(tmp_path / "t", labels, groups)
    for fold in range(3):
        data = table_module(tmp_path / "t", n_folds=3, fold=fold, group_col="patient")
        of = lambda rows: {groups[i] for i in rows}  # noqa: E731
        train, val, oof = of(data.train_idx), of(data.val_idx), of(data.oof_idx)
        assert val and not train & val and not train & oof and not val & oof
        assert len(train | val | oof) == 30


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_a_grouped_hold_out_keeps_every_group_on_one_side(tmp_path, task):
    """`data.group_col` without folds: no group is both in training and in validation."""
    from podium.data.splits import split_indices

    rng = np.random.default_rng(1)
    groups = [f"p{g}" for g in rng.integers(0, 40, size=300)]
    if task == "regression":
        labels, names = rng.normal(size=300).astype(np.float32), []
    else:
        labels, names = rng.integers(0, 3, size=300), ["a", "b", "c"]
    train_idx, val_idx = split_indices(labels, names, 0.2, 42, groups=groups,
                                       stratify=task != "regression")
    train_groups = {groups[i] for i in train_idx}
    val_groups = {groups[i] for i in val_idx}
    assert val_groups and not train_groups & val_groups
    assert sorted([*train_idx, *val_idx]) == list(range(300))
    assert 0.1 < len(val_idx) / 300 < 0.3


def test_a_grouped_hold_out_through_the_datamodule(tmp_path):
    rng = np.random.default_rng(2)
    groups = [f"p{i // 3}" for i in range(90)]
    write_table(tmp_path / "t", list(rng.choice(["a", "b"], size=90)), groups)
    data = table_module(tmp_path / "t", group_col="patient")
    assert not {groups[i] for i in data.train_idx} & {groups[i] for i in data.val_idx}
    assert list(data.val_idx) == list(data.oof_idx)
