"""`make bench-tabular`'s tables: competition folders built from data that ships in packages
(the bench itself is slow: `make test-slow` runs it on one small table)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

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
    assert row["gbdt"]["oof"] == gbdt["oof/f1_macro"] and row["metric"] == "f1_macro"
    assert "| wine | 142 | f1_macro |" in out.with_suffix(".md").read_text()
