"""`make eda`: the do-nothing baselines, checked against scikit-learn's DummyClassifier."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

from conftest import run_cli
from podium.data.splits import split_indices


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


# -- tables ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A binary table with a leaking category, a leaking number, an honest number, a code
    unique to every row and a column with missing cells; ids numbered in the target's order
    in a second copy."""
    from podium.data.demo import write_table_competition

    rng = np.random.default_rng(0)
    n = 300
    y = rng.integers(0, 2, n)
    features = pd.DataFrame({
        "honest": np.round(y + rng.normal(0, 1.5, n), 3),
        "leak_grade": np.where(y == 1, "grade_a", "grade_b"),
        "leak_number": np.round(10 * y + rng.uniform(0, 5, n), 3),
        "color": rng.choice(["red", "green", "blue"], n),
        "code": [f"c{i:04d}x" for i in rng.permutation(n)],
        "gappy": np.where(rng.random(n) < 0.3, np.nan, np.round(rng.normal(0, 1, n), 3)),
    })
    target = pd.Series(np.where(y == 1, "yes", "no"))
    base = tmp_path_factory.mktemp("planted")
    return write_table_competition(base / "table", features, target)


def eda_json(tmp_path, *overrides):
    proc = run_cli("podium.eda", "task_name=eda", f"paths.log_dir={tmp_path}", *overrides)
    [out] = list((tmp_path / "eda").glob("*/*"))
    return json.loads((out / "eda.json").read_text()), proc.stdout, out


def test_a_table_gets_kinds_leaks_auroc_and_the_bar_of_make_gbdt(planted, tmp_path):
    from sklearn.model_selection import cross_val_predict
    from sklearn.tree import DecisionTreeClassifier

    summary, out, _ = eda_json(tmp_path / "eda", "data=tabular", f"data.root={planted}")
    columns = {c["name"]: c for c in summary["columns"]}
    assert summary["task"] == "binary" and summary["competition"] == "auroc"
    # binary: the do-nothing baselines are scored on AUROC too (a constant: 0.5)
    assert summary["baselines"]["majority"]["auroc"] == pytest.approx(0.5)
    assert summary["leaks"] == ["leak_grade", "leak_number"]
    assert "possible leak: leak_grade" in out and "data.drop_cols=[leak_grade]" in out
    assert {c: columns[c]["kind"] for c in ("honest", "leak_grade", "color", "code")} == {
        "honest": "numeric", "leak_grade": "categorical", "color": "categorical",
        "code": "id-like"}
    assert not columns["code"]["leak"] and not columns["id"]["leak"]

    train = pd.read_csv(planted / "train.csv", dtype={"id": str})
    assert columns["gappy"]["missing"] == pytest.approx(train.gappy.isna().mean())
    assert columns["color"]["distinct"] == 3 and columns["code"]["distinct"] == len(train)
    # the honest column's score: scikit-learn's own cross-validated tree on make cv's folds
    y = (train.target == "yes").to_numpy().astype(int)
    folds = [split_indices(y, ["no", "yes"], 0.2, 42, 5, f) for f in range(5)]
    tree = DecisionTreeClassifier(max_leaf_nodes=64, min_samples_leaf=10, random_state=42)
    probs = cross_val_predict(tree, train[["honest"]].to_numpy(), y, cv=folds,
                              method="predict_proba")[:, 1]
    assert columns["honest"]["single_score"] == pytest.approx(roc_auc_score(y, probs))
    assert 0.6 < columns["honest"]["single_score"] < 0.9

    # the bar is the OOF score make gbdt writes on the same folds
    run_cli("podium.gbdt", "data=tabular", f"data.root={planted}", "data.n_folds=5",
            f"paths.log_dir={tmp_path / 'gbdt'}")
    [folder] = (tmp_path / "gbdt" / "gbdt" / "lightgbm").iterdir()
    bar = json.loads((folder / "metrics.json").read_text())["oof/auroc"]
    assert summary["bar_to_beat"]["oof"] == bar and summary["bar_to_beat"]["folds"] == 5
    assert f"5-fold OOF auroc (metric.competition): {bar:.4f}: the bar to beat" in out


def test_ids_numbered_in_the_targets_order_are_flagged(planted, tmp_path):
    root = tmp_path / "sorted"
    root.mkdir()
    for name in ("test.csv", "sample_submission.csv"):
        (root / name).write_text((planted / name).read_text())
    train = pd.read_csv(planted / "train.csv", dtype=str)
    train = train.sort_values("target", kind="stable").assign(
        id=[f"{900000 + i}" for i in range(len(train))])
    train.drop(columns=["leak_grade", "leak_number"]).to_csv(root / "train.csv", index=False)
    summary, out, _ = eda_json(tmp_path, "data=tabular", f"data.root={root}",
                               "data.drop_cols=[leak_grade,leak_number]")
    assert summary["leaks"] == ["id"] and "ids numbered in the target's order" in out


def test_regression_target_skew_log1p_and_baselines(tmp_path):
    from scipy.stats import skew
    from sklearn.metrics import mean_absolute_error

    from podium.data.demo import write_table_competition

    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, 200)
    price = np.round(np.exp(3 + x + rng.normal(0, 0.8, 200)), 2)  # positive, right-skewed
    root = write_table_competition(tmp_path / "prices", pd.DataFrame({"x": x}),
                                   pd.Series(price))
    summary, out, folder = eda_json(tmp_path, "data=tabular", f"data.root={root}")
    y = pd.read_csv(root / "train.csv").target.to_numpy()
    assert summary["task"] == "regression" and summary["competition"] == "mae"
    assert summary["target"]["skew"] == pytest.approx(skew(y))
    assert summary["target"]["skew_log1p"] == pytest.approx(skew(np.log1p(y)))
    assert summary["target"]["suggest_log1p"] and "data.target_transform=log1p" in out
    train_idx, val_idx = split_indices(y, [], 0.2, 42, stratify=False)
    mean_mae = mean_absolute_error(y[val_idx], np.full(len(val_idx), y[train_idx].mean()))
    assert summary["baselines"]["mean"]["mae"] == pytest.approx(mean_mae, rel=1e-5)
    assert (folder / "target_distribution.png").stat().st_size > 1000
    assert "bar_to_beat" in summary

    # the same shape, shifted below zero: no log1p
    root = write_table_competition(tmp_path / "shifted", pd.DataFrame({"x": x}),
                                   pd.Series(price - price.mean()))
    summary, out, _ = eda_json(tmp_path / "2", "data=tabular", f"data.root={root}",
                               "data.task=regression")
    assert not summary["target"]["suggest_log1p"] and "no transform suggested" in out


def test_multilabel_is_one_line(planted, tmp_path):
    proc = run_cli("podium.eda", "task_name=eda", "data=tabular", f"data.root={planted}",
                   "data.task=multilabel", f"paths.log_dir={tmp_path}", check=False)
    assert proc.returncode == 2 and "make eda covers single-label data" in proc.stderr
    assert not (tmp_path / "eda").exists() or not any((tmp_path / "eda").rglob("eda.json"))
