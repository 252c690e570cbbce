"""`make eda`: the do-nothing baselines, checked against scikit-learn's DummyClassifier."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from conftest import run_cli
from podium.data.base import split_indices


def test_eda_reports_distribution_and_dummy_baselines(demo_root, tmp_path):
    proc = run_cli("podium.eda", "task_name=eda", f"data.root={demo_root}",
                   f"data.demo_root={demo_root}", f"paths.log_dir={tmp_path}")
    [out] = list((tmp_path / "eda").glob("*/*"))
    summary = json.loads((out / "eda.json").read_text())
    assert (out / "class_distribution.png").stat().st_size > 1000
    assert "imbalance ratio" in proc.stdout and "majority class" in proc.stdout

    train = pd.read_csv(demo_root / "train.csv", dtype=str)
    counts = train.label.value_counts()
    assert summary["classes"] == counts.to_dict()
    assert summary["imbalance_ratio"] == pytest.approx(counts.max() / counts.min())

    names = sorted(counts.index)
    y = train.label.map({n: i for i, n in enumerate(names)}).to_numpy()
    train_idx, val_idx = split_indices(y, names, 0.2, 42)
    x = np.zeros((len(y), 1))
    for strategy, key in (("most_frequent", "majority"), ("stratified", "prior_random")):
        pred = DummyClassifier(strategy=strategy, random_state=42).fit(
            x[train_idx], y[train_idx]).predict(x[val_idx])
        got = summary["baselines"][key]
        assert got["acc"] == pytest.approx(accuracy_score(y[val_idx], pred), abs=1e-6)
        assert got["f1_macro"] == pytest.approx(
            f1_score(y[val_idx], pred, average="macro", labels=range(10), zero_division=0),
            abs=1e-6)
        assert got["balanced_acc"] == pytest.approx(
            balanced_accuracy_score(y[val_idx], pred), abs=1e-6)
    # Accuracy flatters the majority guess; macro-F1 does not.
    majority = summary["baselines"]["majority"]
    assert majority["acc"] > 5 * majority["f1_macro"]
