"""`make gbdt`: the trees on make cv's folds, written as a cross-validation folder; here
scikit-learn's HistGradientBoosting (gbdt=hgb), the one checked against scikit-learn itself
(the other boosters: test_boosters.py)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import mean_absolute_error, roc_auc_score

from conftest import ROOT, make_cfg, run_cli
from podium.data.demo import build_tabular_demo

spec = importlib.util.spec_from_file_location("summarize_runs", ROOT / "scripts/summarize_runs.py")
summarize_runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(summarize_runs)


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    base = tmp_path_factory.mktemp("tables")
    return {kind: build_tabular_demo(base / kind, kind) for kind in ("binary", "regression")}


@pytest.fixture(scope="module")
def gbdt_runs(demos, tmp_path_factory):
    """`make gbdt MODEL=hgb` on both tabular demos (3 folds): {kind: (run folder, stdout)}."""
    logs = tmp_path_factory.mktemp("logs")
    runs = {}
    for kind, root in demos.items():
        proc = run_cli("podium.gbdt", "gbdt=hgb", f"data=demo_{kind}", f"data.root={root}",
                       f"data.demo_root={root}", "data.n_folds=3", f"paths.log_dir={logs / kind}")
        [folder] = (logs / kind / "gbdt" / "hgb").iterdir()
        runs[kind] = folder, proc.stdout
    return runs


def read_oof(folder):
    return pd.read_csv(folder / "oof.csv", dtype={"id": str})


def test_binary_oof_score_is_scikit_learns_auroc_of_the_written_file(gbdt_runs):
    folder, out = gbdt_runs["binary"]
    oof = read_oof(folder)
    auroc = roc_auc_score(oof.target == "malignant", oof.malignant)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["oof/auroc"] == pytest.approx(auroc, abs=1e-6)
    assert metrics["folds"] == 3 and metrics["competition"] == "auroc"
    assert f"of the trees: {auroc:.4f}: the bar to beat" in out
    assert sorted(oof.fold.unique()) == [0, 1, 2] and oof.id.is_unique
    for name in ("test_probs.csv", "submission.csv", ".hydra/config.yaml"):
        assert (folder / name).is_file()


def test_regression_oof_score_is_scikit_learns_mae_with_a_native_category(gbdt_runs):
    folder, _ = gbdt_runs["regression"]
    oof = read_oof(folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["oof/mae"] == pytest.approx(mean_absolute_error(oof.target, oof.prediction),
                                               rel=1e-5)
    assert metrics["columns"]["categorical"] == ["sex"]  # the demo's text column
    assert metrics["model"] == "HistGradientBoostingRegressor"
    # a regression's OOF score has its standard error too: the MAE is a mean of |errors|,
    # whose standard error is their standard deviation over sqrt(n)
    errors = np.abs(oof.target - oof.prediction)
    assert metrics["oof_se"] == pytest.approx(errors.std(ddof=1) / np.sqrt(len(errors)), rel=0.2)


def test_folds_are_make_cvs_folds(gbdt_runs, demos, tmp_path):
    """Fold f of the trees validates exactly the ids the datamodule's fold f does."""
    folder, _ = gbdt_runs["binary"]
    oof, root = read_oof(folder), demos["binary"]
    for fold in range(3):
        cfg = make_cfg(tmp_path, ["data=demo_binary", f"data.root={root}", "data.n_folds=3",
                                  f"data.fold={fold}"])
        data = instantiate(cfg.data)
        data.split()
        assert sorted(oof.id[oof.fold == fold]) == sorted(data.oof_ids)


def inner_split(root, kind, fold, n_folds, tmp_path):
    """make cv's fold `fold`: (ids its network trains on, ids it validates on), the
    datamodule's own nested split."""
    cfg = make_cfg(tmp_path, [f"data=demo_{kind}", f"data.root={root}",
                              f"data.n_folds={n_folds}", f"data.fold={fold}"])
    data = instantiate(cfg.data)
    data.split()
    ids = np.asarray(data.train_ids)
    return ids[data.train_idx], ids[data.val_idx]


def test_a_fold_is_scikit_learns_own_fit(gbdt_runs, demos, tmp_path):
    """Fold 0's OOF probabilities: HistGradientBoostingClassifier fitted directly on the
    rows make cv's fold 0 trains its network on, stopped early on the rows it validates on,
    then refitted on both (conf/gbdt/hgb.yaml's arguments)."""
    folder, _ = gbdt_runs["binary"]
    oof = read_oof(folder)
    train = pd.read_csv(demos["binary"] / "train.csv", dtype={"id": str}).set_index("id")
    held = oof[oof.fold == 0]
    fit_ids, inner_ids = inner_split(demos["binary"], "binary", 0, 3, tmp_path)
    fit, inner = train.loc[fit_ids], train.loc[inner_ids]
    model = HistGradientBoostingClassifier(max_iter=1000, early_stopping=True, random_state=42)
    model.fit(fit.drop(columns="target").to_numpy(float), fit.target,
              X_val=inner.drop(columns="target").to_numpy(float), y_val=inner.target)
    both = pd.concat([fit, inner])  # refit_inner: on both, the rounds scaled by the rows
    model = HistGradientBoostingClassifier(
        max_iter=round(model.n_iter_ * len(both) / len(fit)), early_stopping=False,
        random_state=42).fit(both.drop(columns="target").to_numpy(float), both.target)
    expected = model.predict_proba(train.loc[held.id].drop(columns="target").to_numpy(float))
    assert list(model.classes_) == ["benign", "malignant"]
    np.testing.assert_allclose(held[["benign", "malignant"]], expected, atol=1e-6)


def test_make_submit_and_make_runs_take_the_folder(gbdt_runs, tmp_path, capsys):
    folder, _ = gbdt_runs["binary"]
    proc = run_cli("podium.submit", f"runs=[{folder}]", f"paths.log_dir={tmp_path}")
    oof_auroc = json.loads((folder / "metrics.json").read_text())["oof/auroc"]
    assert f"OOF auroc (metric.competition): {oof_auroc:.4f}" \
        in proc.stdout
    [submitted] = (tmp_path / "submit").glob("*/*/test_probs.csv")
    pd.testing.assert_frame_equal(pd.read_csv(submitted), pd.read_csv(folder / "test_probs.csv"))
    table = summarize_runs.collect(folder.parents[2])
    [row] = table.to_dict("records")
    assert row["scored_on"] == "oof" and row["score"] == pytest.approx(oof_auroc)
    assert row["experiment"] == "gbdt"  # not the network recipe whose keys it accepts


def test_postprocess_thresholds_on_the_trees(demos, tmp_path):
    """A label metric: the decision threshold is learned on the trees' OOF, like a cv's."""
    root = demos["binary"]
    proc = run_cli("podium.gbdt", "data=demo_binary", f"data.root={root}",
                   f"data.demo_root={root}", "data.n_folds=2", "metric.competition=f1_macro",
                   "submission.format=label", "gbdt.rounds=20", f"paths.log_dir={tmp_path}")
    assert "threshold " in proc.stdout and "cross-fitted (the OOF's 2 folds;" in proc.stdout
    [metrics] = (tmp_path / "gbdt").glob("*/*/metrics.json")
    assert json.loads(metrics.read_text())["threshold"]["metric"] == "f1_macro"


def test_bar_to_beat_is_the_folders_score(gbdt_runs, demos, tmp_path):
    from podium.gbdt import bar_to_beat

    root = demos["regression"]
    folder, _ = gbdt_runs["regression"]
    mae = json.loads((folder / "metrics.json").read_text())["oof/mae"]
    cfg = make_cfg(tmp_path, ["gbdt=hgb", "data=demo_regression", f"data.root={root}",
                              "data.n_folds=3"], config_name="gbdt", resolve=False)
    assert bar_to_beat(cfg) == mae
    # a training config (make eda's, a run's) given a booster, the folds given
    train_cfg = make_cfg(tmp_path, ["+gbdt=hgb", "data=demo_regression", f"data.root={root}"])
    assert bar_to_beat(train_cfg, n_folds=3) == mae
    assert train_cfg.data.n_folds is None  # the caller's config is left as it was
    assert not (tmp_path / "logs").exists()  # nothing written


def test_an_image_competition_or_one_fold_is_one_line(demo_root, tmp_path):
    proc = run_cli("podium.gbdt", "data=image", f"data.root={demo_root}",
                   f"paths.log_dir={tmp_path}", check=False)
    assert proc.returncode == 2 and "make gbdt fits trees on a table" in proc.stderr
    proc = run_cli("podium.gbdt", "data=demo_binary", "data.n_folds=1",
                   f"paths.log_dir={tmp_path}", check=False)
    assert proc.returncode == 2 and "data.n_folds=1: make gbdt cross-validates" in proc.stderr


def test_wide_categories_and_missing_values(tmp_path):
    """A category with more levels than the trees' bins enters as codes; empty cells and
    unseen test categories are missing values, not errors."""
    from podium.model.boosters import MAX_BINS
    from podium.model.gbdt import Columns, cross_validate

    rng = np.random.default_rng(0)
    n = 600
    train = pd.DataFrame({"x": rng.normal(size=n).round(3).astype(str),
                          "city": [f"c{i}" for i in rng.integers(0, 8 * MAX_BINS, n)],
                          "kind": rng.choice(["a", "b", ""], n)})
    train.loc[::7, "x"] = ""
    labels = (rng.random(n) < 0.5).astype(int)
    test = train.head(10).assign(kind="never seen")
    folds = [(np.arange(360, n), np.arange(300, 360), np.arange(300)),
             (np.arange(60, 300), np.arange(60), np.arange(300, n))]
    cv = cross_validate(train, test, labels, folds, Columns(["x"], ["city", "kind"]),
                        "binary", 2, {"name": "hgb", "rounds": 5, "early_stopping": 10}, 0)
    assert cv.ordinal == ["city"] and np.isfinite(cv.oof).all() and np.isfinite(cv.test).all()
    np.testing.assert_allclose(cv.oof.sum(axis=1), 1, atol=1e-6)


def test_log1p_target_is_fitted_on_log1p_and_predicted_back(demos, tmp_path):
    """data.target_transform=log1p, as the network: fold 0's OOF predictions are
    HistGradientBoostingRegressor fitted on log1p(y) of the fold's training rows (stopped
    early on make cv's inner split of them), mapped back with expm1; the accepted training
    keys (print_config=false) and those of make cv EXP=tabular's recipe do not stop it."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    root = demos["regression"]
    run_cli("podium.gbdt", "gbdt=hgb", "data=demo_regression", f"data.root={root}",
            f"data.demo_root={root}", "data.n_folds=2", "data.target_transform=log1p",
            "print_config=false", "trainer.max_epochs=3", "model.net.k=8",
            "callbacks.early_stopping.patience=5", f"paths.log_dir={tmp_path}")
    [folder] = (tmp_path / "gbdt" / "hgb").iterdir()
    oof = read_oof(folder)
    train = pd.read_csv(root / "train.csv", dtype={"id": str}).set_index("id")
    held = oof[oof.fold == 0]
    fit_ids, inner_ids = inner_split(root, "regression", 0, 2, tmp_path)
    fit, inner = train.loc[fit_ids], train.loc[inner_ids]
    features = lambda frame: frame.drop(columns="target").assign(  # noqa: E731
        sex=lambda f: (f.sex == sorted(train.sex.unique())[1]).astype(float))
    categorical = [c == "sex" for c in features(fit).columns]
    model = HistGradientBoostingRegressor(max_iter=1000, early_stopping=True, random_state=42,
                                          categorical_features=categorical)
    model.fit(features(fit).to_numpy(float), np.log1p(fit.target),
              X_val=features(inner).to_numpy(float), y_val=np.log1p(inner.target))
    both = pd.concat([fit, inner])  # refit_inner
    model = HistGradientBoostingRegressor(
        max_iter=round(model.n_iter_ * len(both) / len(fit)), early_stopping=False,
        random_state=42, categorical_features=categorical).fit(
        features(both).to_numpy(float), np.log1p(both.target))
    expected = np.expm1(model.predict(features(train.loc[held.id]).to_numpy(float)))
    np.testing.assert_allclose(held.prediction, expected, rtol=1e-5)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["oof/mae"] == pytest.approx(mean_absolute_error(oof.target, oof.prediction),
                                               rel=1e-5)


def test_test_prior_moves_and_weighs_the_trees_oof_like_a_networks(demos, tmp_path):
    """data.test_prior=uniform: the trees carry the table's class shares (metrics.json's
    score_prior); the bar printed is the OOF accuracy of the probabilities moved from them
    to uniform by Bayes' rule, each row weighing (1/2) / share (scikit-learn, by hand)."""
    from sklearn.metrics import accuracy_score

    root = demos["binary"]
    proc = run_cli("podium.gbdt", "data=demo_binary", f"data.root={root}",
                   f"data.demo_root={root}", "data.n_folds=2", "data.test_prior=uniform",
                   "metric.competition=accuracy", "gbdt.rounds=20",
                   f"paths.log_dir={tmp_path}")
    [folder] = (tmp_path / "gbdt" / "lightgbm").iterdir()
    oof = read_oof(folder)
    classes = ["benign", "malignant"]
    labels = pd.read_csv(root / "train.csv").target
    share = labels.value_counts(normalize=True).reindex(classes).to_numpy()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert [metrics["score_prior"][c] for c in classes] == pytest.approx(share)
    y = oof.target.map(classes.index).to_numpy()
    pred = (np.log(oof[classes].to_numpy()) - np.log(share)).argmax(1)
    expected = accuracy_score(y, pred, sample_weight=0.5 / share[y])
    assert f"of the trees under data.test_prior=uniform: {expected:.4f}: the bar to beat" \
        in proc.stdout
    assert metrics["oof/acc"] == pytest.approx(expected)
