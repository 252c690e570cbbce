"""The one road from trained models to the file, and the bugs that two roads caused.

Each test here failed before the road was one: `make predict` fed every fold fold 0's
preprocessing; `make runs` ranked log-loss runs worst first; a class named `NA` became NaN
when `make cv` gathered the folds; under DDP the TTA check was skipped (views applied
unproven) and the per-class report was missing; `make refit` printed a leaderboard line
only for macro-F1; `make cv` exited 0 after gathering failed.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, run_cli, run_dirs
from podium.data.demo import build_tabular_demo

SRC = ROOT / "src" / "podium"


def cv_cli(logs, name, *overrides, check=True):
    return run_cli("podium.train", "-m", "task_name=cv", f"sweep_name={name}",
                   "data.n_folds=2", "data.fold=0,1", f"paths.log_dir={logs}",
                   "print_config=false", *overrides, check=check)


@pytest.fixture(scope="module")
def regression_cv(tmp_path_factory):
    """A 2-fold cross-validation of the tabular regression demo (each fold fits its own
    scaler: fold 1's `age` statistics differ from fold 0's)."""
    tmp = tmp_path_factory.mktemp("regression_cv")
    root = build_tabular_demo(tmp / "comp", "regression")
    cv_cli(tmp / "logs", "r", "data=demo_regression", f"data.root={root}",
           f"data.demo_root={root}", "trainer.max_epochs=2")
    [cv_dir] = (tmp / "logs" / "cv" / "r").iterdir()
    return tmp, root, cv_dir


def test_predict_of_a_tabular_cv_folder_equals_its_submit_byte_for_byte(regression_cv):
    tmp, root, cv_dir = regression_cv
    run_cli("podium.submit", f"runs=[{cv_dir}]", f"paths.log_dir={tmp / 's'}")
    run_cli("podium.predict", f"runs=[{cv_dir}]", f"data.root={root}",
            f"paths.log_dir={tmp / 'p'}", f"paths.root_dir={ROOT}")
    [submitted] = (tmp / "s").glob("submit/*/*/submission.csv")
    [predicted] = (tmp / "p").glob("predict/*/submission.csv")
    assert predicted.read_bytes() == submitted.read_bytes()
    # and both are the mean of the folds' own test predictions (each through its scaler)
    folds = [pd.read_csv(f / "test_probs.csv", dtype={"id": str}) for f in
             sorted(p for p in cv_dir.iterdir() if p.is_dir())]
    mean = (folds[0].iloc[:, 1] + folds[1].iloc[:, 1]) / 2
    got = pd.read_csv(predicted, dtype={"id": str})
    assert got.iloc[:, 1].to_numpy() == pytest.approx(mean.to_numpy(), rel=1e-6)


def test_runs_of_a_minimised_metric_rank_lowest_first(tmp_path):
    """The direction each run used is stored in its metrics.json: a log-loss table ranks
    its lowest value first (it was guessed, and log-loss was guessed `max`)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("summarize_runs",
                                                  ROOT / "scripts" / "summarize_runs.py")
    summarize_runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summarize_runs)
    for name, value in (("worse", 0.9), ("better", 0.3)):
        hydra = tmp_path / name / ".hydra"
        hydra.mkdir(parents=True)
        (hydra / "config.yaml").write_text(
            "seed: 1\nmetric:\n  monitor: null\n  mode: null\n  competition: logloss\n")
        (tmp_path / name / "metrics.json").write_text(json.dumps(
            {"val/logloss": value, "monitor": "val/logloss", "mode": "min", "epochs": 1}))
    assert summarize_runs.main([str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "runs.csv")
    assert [p.rsplit("/", 1)[-1] for p in table.path] == ["better", "worse"]


def test_classes_named_na_and_none_survive_gathering_the_folds(tmp_path):
    root = build_tabular_demo(tmp_path / "comp", "binary")
    for name in ("train.csv", "answers.csv"):
        frame = pd.read_csv(root / name, dtype=str, keep_default_na=False)
        frame["target"] = frame["target"].map({"benign": "NA", "malignant": "None"})
        frame.to_csv(root / name, index=False)
    cv_cli(tmp_path / "logs", "na", "data=demo_binary", f"data.root={root}",
           f"data.demo_root={root}", "trainer.max_epochs=1")
    [cv_dir] = (tmp_path / "logs" / "cv" / "na").iterdir()
    oof = pd.read_csv(cv_dir / "oof.csv", dtype=str, keep_default_na=False)
    truth = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    assert sorted(oof.target) == sorted(truth.target)  # every row, both classes as text
    assert list(oof.columns[3:]) == ["NA", "None"]
    summary = json.loads((cv_dir / "metrics.json").read_text())
    assert math.isfinite(summary["oof/auroc"]) and summary["oof_score"] == summary["oof/auroc"]


def test_cv_whose_gathering_fails_exits_non_zero(tmp_path, demo_root):
    """Every fold fails (a regression loss on class labels), so gathering has nothing to
    gather: the command says so on stderr, with the first fold's reason, and fails, as a CI
    job or a script must see."""
    proc = cv_cli(tmp_path, "bad", "loss=mse", f"data.root={demo_root}",
                  f"data.demo_root={demo_root}", check=False)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no fold in") and " finished (the first: " in last, last


def test_refit_prints_the_leaderboard_line_of_any_task(tmp_path):
    root = build_tabular_demo(tmp_path / "comp", "regression")
    run_cli("podium.train", "data=demo_regression", f"data.root={root}",
            f"data.demo_root={root}", "trainer.max_epochs=1", f"paths.log_dir={tmp_path}",
            "print_config=false")
    [run] = run_dirs(tmp_path)
    proc = run_cli("podium.refit", f"run={run}", f"paths.log_dir={tmp_path}")
    [refit] = (tmp_path / "refit").glob("*/*/metrics.json")
    mae = json.loads(refit.read_text())["leaderboard/mae"]
    assert f"demo leaderboard MAE: {mae:.4f}" in proc.stdout


def test_one_function_writes_every_submission_file():
    """`write_submission` has one caller, the road; no callback writes a submission."""
    found = subprocess.run(["grep", "-rln", r"write_submission(", str(SRC)],
                           capture_output=True, text=True).stdout.split()
    # paths inside the package, whatever folder the checkout lives in (a clone into podium/)
    assert sorted(Path(p).relative_to(SRC).as_posix() for p in found) == [
        "submission/ensemble.py", "submission/formats.py"]  # the caller, the definition
    callbacks = subprocess.run(["grep", "-rn", "submission", str(SRC / "callbacks")],
                               capture_output=True, text=True).stdout
    assert "write_submission" not in callbacks and "choose_format" not in callbacks


def test_tta_adds_no_pass_over_the_validation_split(tmp_path, demo_root, monkeypatch):
    """After fit, the validation rows are read twice with TTA on, as without: once to
    validate the best checkpoint, once to predict (plain and with the views together)."""
    import podium.build
    from conftest import make_cfg
    from podium.data.base import TensorRows
    from podium.train import train

    events: list = []
    getitems, best = TensorRows.__getitems__, podium.build.best_checkpoint

    def counted(self, items):
        events.append((len(self), len(items)))
        return getitems(self, items)

    def fit_ended(trainer):  # called by train() right after fit
        events.append("fit end")
        return best(trainer)

    monkeypatch.setattr(TensorRows, "__getitems__", counted)
    monkeypatch.setattr(podium.build, "best_checkpoint", fit_ended)
    cfg = make_cfg(tmp_path, [f"data.root={demo_root}", f"data.demo_root={demo_root}",
                              "tta=hflip", "trainer.max_epochs=1", "model.net.depth=8",
                              "model.net.width=4"])
    outcome = train(cfg)
    n_val = len(pd.read_csv(tmp_path / "run" / "oof.csv"))
    after = events[events.index("fit end") + 1:]
    assert sum(rows for size, rows in after if size == n_val) == 2 * n_val
    assert outcome.summary.tta["metric"] == "f1_macro"  # the views were proven, on that pass
