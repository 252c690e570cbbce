"""`make gbdt MODEL=lightgbm|catboost|xgboost`: each booster on make cv's folds, stopped
early on the fold's inner split only, checked against its own library fitted directly on
the same rows; feature importance written; make predict and make export of the folder
rebuild its submission from the saved model files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate

from conftest import make_cfg, run_cli
from podium.data.demo import build_tabular_demo

BOOSTERS = ("lightgbm", "catboost", "xgboost")
FOLDS, ROUNDS, PATIENCE = 2, 60, 10
FAST = [f"data.n_folds={FOLDS}", f"gbdt.rounds={ROUNDS}", f"gbdt.early_stopping={PATIENCE}"]
TASKS = {"binary": [], "regression": ["data.target_transform=log1p"]}


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    base = tmp_path_factory.mktemp("tables")
    return {kind: build_tabular_demo(base / kind, kind) for kind in TASKS}


@pytest.fixture(scope="module")
def runs(demos, tmp_path_factory):
    """`make gbdt MODEL=<booster>` on the binary demo and on the regression demo (its `sex`
    a text category, log1p target), 2 folds: {(booster, kind): (folder, stdout)}."""
    logs = tmp_path_factory.mktemp("logs")
    found = {}
    for booster in BOOSTERS:
        for kind, extra in TASKS.items():
            root, out = demos[kind], logs / f"{booster}_{kind}"
            proc = run_cli("podium.gbdt", f"gbdt={booster}", f"data=demo_{kind}",
                           f"data.root={root}", f"data.demo_root={root}", *FAST, *extra,
                           f"paths.log_dir={out}")
            [folder] = (out / "gbdt" / booster).iterdir()
            found[booster, kind] = folder, proc.stdout
    return found


def fold_rows(root, kind, fold, tmp_path):
    """make cv's fold `fold` by the datamodule's own split: (ids the network trains on, ids
    it validates on, held-out ids)."""
    cfg = make_cfg(tmp_path, [f"data=demo_{kind}", f"data.root={root}",
                              f"data.n_folds={FOLDS}", f"data.fold={fold}"])
    data = instantiate(cfg.data)
    data.split()
    ids = np.asarray(data.train_ids)
    return ids[data.train_idx], ids[data.val_idx], ids[data.oof_idx]


def library_fit(booster, x, y, x_val, y_val, x_out, kind, categorical):
    """The library itself, with conf/gbdt/<booster>.yaml's arguments, fitted on (x, y),
    stopped early on (x_val, y_val), then refitted on both for its best rounds x their rows /
    x's rows (refit_inner; CatBoost at the learning rate it chose first): (the refit's
    predictions of x_out as oof.csv holds them, its importance shares, its rounds).
    Categories enter as codes of their sorted levels."""
    first = library_fit_once(booster, x, y, x_val, y_val, x_out, kind, categorical)
    both_x, both_y = pd.concat([x, x_val]), np.concatenate([y, y_val])
    rounds = round(first[2] * len(both_x) / len(x))
    return library_fit_once(booster, both_x, both_y, None, None, x_out, kind, categorical,
                            rounds, first[3])


def library_fit_once(booster, x, y, x_val, y_val, x_out, kind, categorical, rounds=ROUNDS,
                     learning_rate=None):
    """One fit of the library: stopped early on (x_val, y_val), or all `rounds` without
    them: (predictions of x_out, importance shares, rounds, CatBoost's learning rate)."""
    binary, stop = kind == "binary", x_val is not None
    if booster == "lightgbm":
        import lightgbm as lgb

        params = {"objective": "binary" if binary else "regression", "num_threads": 2,
                  "seed": 42, "verbosity": -1, "learning_rate": 0.1, "num_leaves": 31,
                  "min_data_in_leaf": 20, "feature_fraction": 1.0, "bagging_fraction": 1.0,
                  "lambda_l2": 0.0}
        train = lgb.Dataset(x.to_numpy(float), y, categorical_feature=categorical)
        valid = [lgb.Dataset(x_val.to_numpy(float), y_val, reference=train)] if stop else []
        model = lgb.train(params, train, rounds, valid_sets=valid,
                          callbacks=[lgb.early_stopping(PATIENCE, verbose=False)] if stop
                          else [])
        rounds = model.best_iteration or rounds
        pred = model.predict(x_out.to_numpy(float), num_iteration=rounds)
        importance = model.feature_importance("gain", iteration=rounds)
    elif booster == "catboost":
        from catboost import CatBoostClassifier, CatBoostRegressor

        kind_of = CatBoostClassifier if binary else CatBoostRegressor
        model = kind_of(iterations=rounds, thread_count=2, random_seed=42, verbose=False,
                        allow_writing_files=False, depth=6, l2_leaf_reg=3.0,
                        cat_features=categorical, learning_rate=learning_rate,
                        **({"early_stopping_rounds": PATIENCE} if stop else {}))
        as_int = lambda f: f.astype({f.columns[i]: int for i in categorical})  # noqa: E731
        model.fit(as_int(x), y, eval_set=(as_int(x_val), y_val) if stop else None,
                  use_best_model=stop)
        rounds, learning_rate = model.tree_count_, model.learning_rate_
        pred = model.predict_proba(as_int(x_out))[:, 1] if binary else \
            model.predict(as_int(x_out))
        importance = model.get_feature_importance()
    else:
        import xgboost as xgb

        as_category = lambda f: f.astype({f.columns[i]: "category" for i in categorical})  # noqa: E731
        params = {"objective": "binary:logistic" if binary else "reg:squarederror",
                  "nthread": 2, "seed": 42, "eta": 0.3, "max_depth": 6,
                  "min_child_weight": 1.0, "subsample": 1.0, "colsample_bytree": 1.0,
                  "lambda": 1.0, "tree_method": "hist"}
        matrix = lambda f, label=None: xgb.DMatrix(as_category(f), label,  # noqa: E731
                                                   enable_categorical=True)
        model = xgb.train(params, matrix(x, y), rounds,
                          evals=[(matrix(x_val, y_val), "v")] if stop else [],
                          early_stopping_rounds=PATIENCE if stop else None, verbose_eval=False)
        rounds = model.best_iteration + 1 if stop else rounds
        pred = model.predict(matrix(x_out), iteration_range=(0, rounds))
        gain = model[:rounds].get_score(importance_type="total_gain")  # the rounds kept
        importance = np.array([gain.get(c, 0.0) for c in x.columns])
    importance = np.asarray(importance, dtype=float)
    return np.asarray(pred), importance / importance.sum(), rounds, learning_rate


def features(frame, train):
    """The demo's features as the trees take them: the numbers, then `sex` (the regression
    demo's one category) as the code of its sorted level (column order breaks ties
    between equally good splits)."""
    x = frame.drop(columns="target")
    if "sex" in x:
        codes = x.pop("sex").map({v: i for i, v in enumerate(sorted(train.sex.unique()))})
        x = x.assign(sex=codes)
    return x


@pytest.mark.parametrize("booster", BOOSTERS)
@pytest.mark.parametrize("kind", TASKS)
def test_each_fold_is_the_library_fitted_directly_on_the_folds_rows(runs, demos, booster,
                                                                     kind, tmp_path):
    """Every fold's OOF predictions, rounds and importance: the library itself fitted on
    the rows make cv's fold trains its network on, stopped early on the rows it validates
    on (never the held-out rows), predicting the held-out rows (regression: fitted on
    log1p(y), mapped back with expm1; `sex` a native category). OOF covers every training
    id once; the OOF score is scikit-learn's of the written file; one line per fold."""
    from sklearn.metrics import mean_absolute_error, roc_auc_score

    folder, out = runs[booster, kind]
    root = demos[kind]
    train = pd.read_csv(root / "train.csv", dtype={"id": str}).set_index("id")
    oof = pd.read_csv(folder / "oof.csv", dtype={"id": str})
    metrics = json.loads((folder / "metrics.json").read_text())
    importance = pd.read_csv(folder / "feature_importance.csv").set_index("feature")
    assert sorted(oof.id) == sorted(train.index)  # every training id once
    column = "malignant" if kind == "binary" else "prediction"
    for fold in range(FOLDS):
        fit_ids, inner_ids, held_ids = fold_rows(root, kind, fold, tmp_path)
        assert not set(inner_ids) & set(held_ids) and not set(fit_ids) & set(held_ids)
        held = oof[oof.fold == fold].set_index("id")
        assert sorted(held.index) == sorted(held_ids)
        target = (lambda t: (t == "malignant").astype(int)) if kind == "binary" else np.log1p
        x = features(train, train)
        categorical = [list(x.columns).index("sex")] if "sex" in x else []
        pred, shares, rounds, _ = library_fit(
            booster, x.loc[fit_ids], target(train.target.loc[fit_ids]).to_numpy(),
            x.loc[inner_ids], target(train.target.loc[inner_ids]).to_numpy(),
            x.loc[held.index], kind, categorical)
        expected = pred if kind == "binary" else np.expm1(pred)
        np.testing.assert_allclose(held[column], expected, rtol=1e-5, atol=1e-6)
        assert metrics["iterations"][fold] == rounds
        np.testing.assert_allclose(importance.loc[list(x.columns), f"fold{fold}"], shares,
                                   atol=1e-6)
        assert f"fold {fold + 1}/{FOLDS}: " in out and f" s, {rounds} rounds, OOF " in out
    if kind == "binary":
        score = roc_auc_score(oof.target == "malignant", oof.malignant)
        assert metrics["oof/auroc"] == pytest.approx(score, abs=1e-6)
    else:
        score = mean_absolute_error(oof.target, oof.prediction)
        assert metrics["oof/mae"] == pytest.approx(score, rel=1e-5)
        assert metrics["columns"]["categorical"] == ["sex"]
    assert metrics["booster"] == booster


@pytest.mark.parametrize("booster", BOOSTERS)
def test_the_inner_split_is_all_that_early_stopping_sees(demos, booster, tmp_path,
                                                         monkeypatch):
    """Recorded as the booster is fitted: each fold's early-stopping rows are exactly make
    cv's inner split of that fold's training rows, none of its held-out rows; the refit
    takes the fold's training and inner rows, none of its held-out rows."""
    from podium.gbdt import cross_validate_table
    from podium.model import boosters

    root, seen = demos["binary"], []
    fit = boosters.BOOSTERS[booster].fit

    def recording(self, x, y, w, x_val, y_val, w_val, categorical):
        seen.append((x.copy(), x_val.copy()))
        return fit(self, x, y, w, x_val, y_val, w_val, categorical)
    monkeypatch.setattr(boosters.BOOSTERS[booster], "fit", recording)
    cfg = make_cfg(tmp_path, [f"gbdt={booster}", "data=demo_binary", f"data.root={root}",
                              *FAST], config_name="gbdt", resolve=False)
    result = cross_validate_table(cfg, progress=False)
    train = pd.read_csv(root / "train.csv", dtype={"id": str}).set_index("id")
    row_of = {tuple(r): i for i, r in zip(train.index, train.drop(columns="target")
                                          .to_numpy(float), strict=True)}
    assert len(row_of) == len(train)  # every row's features unique: rows found by value
    assert len(seen) == 2 * FOLDS  # each fold: stopped early, then refitted (refit_inner)
    for fold in range(FOLDS):
        fit_ids, inner_ids, held_ids = fold_rows(root, "binary", fold, tmp_path)
        (_, x_val), (refit_x, refit_val) = seen[2 * fold:2 * fold + 2]
        stopped_on = {row_of[tuple(r)] for r in x_val}
        assert stopped_on == set(inner_ids) and not stopped_on & set(held_ids)
        assert {row_of[tuple(r)] for r in refit_x} == set(fit_ids) | set(inner_ids)
        assert len(refit_val) == 0
        assert set(result.oof.id[result.oof.fold == fold]) == set(held_ids)


@pytest.mark.parametrize("booster", BOOSTERS)
def test_importance_csv_and_png(runs, booster):
    folder, _ = runs[booster, "binary"]
    importance = pd.read_csv(folder / "feature_importance.csv")
    assert list(importance.columns) == ["feature", "fold0", "fold1", "mean"]
    assert len(importance) == 30 and importance.feature.is_unique
    np.testing.assert_allclose(importance[["fold0", "fold1"]].sum(), 1, atol=1e-9)
    np.testing.assert_allclose(importance["mean"], importance[["fold0", "fold1"]].mean(axis=1))
    assert importance["mean"].is_monotonic_decreasing
    png = folder / "report" / "feature_importance.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("booster", BOOSTERS)
@pytest.mark.parametrize("kind", TASKS)
def test_predict_and_export_rebuild_the_submission_from_the_model_files(runs, demos, booster,
                                                                        kind, tmp_path):
    """make predict RUN=<folder> DATA=<its own folder>, and make predict from make export's
    bundle: the fold models read back from their own files (no checkpoint, no pickle)
    predict the folder's own test_probs and submission."""
    folder, _ = runs[booster, kind]
    root = demos[kind]
    suffix = {"lightgbm": ".txt", "catboost": ".cbm", "xgboost": ".ubj"}[booster]
    assert sorted(p.name for p in (folder / "models").iterdir()) == \
        ["features.json", *(f"fold{k}{suffix}" for k in range(FOLDS))]
    run_cli("podium.export", f"runs=[{folder}]", "wheel=false", f"paths.log_dir={tmp_path}")
    [bundle] = (tmp_path / "export").iterdir()
    assert not list(bundle.rglob("*.ckpt"))
    run_cli("podium.predict", f"runs=[{folder}]", f"data.root={root}",
            f"paths.log_dir={tmp_path / 'run'}")
    run_cli("podium.predict", f"export={bundle}", f"data.root={root}",
            f"paths.log_dir={tmp_path / 'bundle'}")
    for predicted in (tmp_path / "run", tmp_path / "bundle"):
        [out] = (predicted / "predict").iterdir()
        for name in ("test_probs.csv", "submission.csv"):
            mine = pd.read_csv(out / name, dtype={"id": str})
            own = pd.read_csv(folder / name, dtype={"id": str})
            assert list(mine.columns) == list(own.columns) and list(mine.id) == list(own.id)
            np.testing.assert_allclose(mine.iloc[:, 1:].to_numpy(float),
                                       own.iloc[:, 1:].to_numpy(float), rtol=1e-6, atol=1e-7)


def test_class_weights_of_the_loss_weigh_the_rows(demos, tmp_path):
    """loss=weighted_ce, as the network's: each row weighs its class's inverse-count weight
    (normalised to sum to the classes); the probabilities then carry the uniform prior
    (metrics.json's score_prior). Fold 0: LightGBM fitted directly with those weights."""
    import lightgbm as lgb

    root = demos["binary"]
    proc = run_cli("podium.gbdt", "gbdt=lightgbm", "data=demo_binary", f"data.root={root}",
                   f"data.demo_root={root}", *FAST, "loss=weighted_ce",
                   f"paths.log_dir={tmp_path}")
    [folder] = (tmp_path / "gbdt" / "lightgbm").iterdir()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["score_prior"] == pytest.approx({"benign": 0.5, "malignant": 0.5})
    train = pd.read_csv(root / "train.csv", dtype={"id": str}).set_index("id")
    y = (train.target == "malignant").astype(int)
    counts = np.bincount(y)
    weight = (1 / counts) * 2 / (1 / counts).sum()
    assert (f"each row weighs its class's factor from loss WeightedCrossEntropy: benign "
            f"{weight[0]:.3g}, malignant {weight[1]:.3g}") in proc.stdout
    fit_ids, inner_ids, held_ids = fold_rows(root, "binary", 0, tmp_path)
    x = features(train, train).to_numpy(float)
    index = {i: k for k, i in enumerate(train.index)}
    rows = lambda ids: [index[i] for i in ids]  # noqa: E731
    params = {"objective": "binary", "num_threads": 2, "seed": 42, "verbosity": -1}
    data = lgb.Dataset(x[rows(fit_ids)], y.iloc[rows(fit_ids)],
                       weight=weight[y.iloc[rows(fit_ids)]])
    valid = lgb.Dataset(x[rows(inner_ids)], y.iloc[rows(inner_ids)], reference=data,
                        weight=weight[y.iloc[rows(inner_ids)]])
    model = lgb.train(params, data, ROUNDS, valid_sets=[valid],
                      callbacks=[lgb.early_stopping(PATIENCE, verbose=False)])
    both = rows(fit_ids) + rows(inner_ids)  # refit_inner: on both, the rounds scaled
    model = lgb.train(params, lgb.Dataset(x[both], y.iloc[both], weight=weight[y.iloc[both]]),
                      round(model.best_iteration * len(both) / len(fit_ids)))
    oof = pd.read_csv(folder / "oof.csv", dtype={"id": str}).set_index("id")
    np.testing.assert_allclose(oof.loc[held_ids, "malignant"],
                               model.predict(x[rows(held_ids)]), atol=1e-6)


def test_an_hgb_folder_says_it_keeps_no_model_file(demos, tmp_path):
    """scikit-learn's trees save only by pickle: make predict and make export of a
    gbdt=hgb folder stop with one line that names the boosters that do save."""
    root = demos["binary"]
    run_cli("podium.gbdt", "gbdt=hgb", "data=demo_binary", f"data.root={root}",
            f"data.demo_root={root}", *FAST, f"paths.log_dir={tmp_path}")
    [folder] = (tmp_path / "gbdt" / "hgb").iterdir()
    assert (folder / "feature_importance.csv").is_file() and not (folder / "models").exists()
    for module, args in (("podium.predict", [f"data.root={root}"]),
                         ("podium.export", ["wheel=false"])):
        proc = run_cli(module, f"runs=[{folder}]", *args, f"paths.log_dir={tmp_path / 'p'}",
                       check=False)
        assert proc.returncode == 2
        assert "a gbdt=hgb folder keeps none" in proc.stderr
        assert "make gbdt MODEL=lightgbm" in proc.stderr


@pytest.mark.parametrize("booster", BOOSTERS)
def test_a_fit_under_a_time_cap_stops_there_and_keeps_its_best_round(booster):
    """make stack's deadline: a fit that would run for minutes stops at `seconds` and
    predicts with the round of its lowest inner-split loss so far (scikit-learn's log-loss
    of each round's predictions)."""
    import time

    from sklearn.metrics import log_loss

    from podium.model.boosters import booster as make_booster

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 20))
    y = (x[:, 0] + rng.normal(size=3000) > 0).astype(int)  # noisy: the inner loss turns up
    model = make_booster(booster, "binary", 2, seed=0, threads=1, rounds=10**6,
                         patience=10**6, seconds=1.0,
                         params={"learning_rate": 0.3} if booster == "catboost" else {})
    started = time.monotonic()
    model.fit(x[:2000], y[:2000], None, x[2000:], y[2000:], None, np.zeros(20, bool))
    assert time.monotonic() - started < 6 and model.out_of_time
    # the model is cut at the best of the rounds it ran: the lowest inner loss up to there
    losses = [log_loss(y[2000:], predict_at(booster, model.model, x[2000:], k))
              for k in range(1, model.best_rounds + 1)]
    assert model.best_rounds == int(np.argmin(losses)) + 1 > 1


def predict_at(booster, model, x, rounds):
    """P(class 1) of the library's model with its first `rounds` rounds."""
    if booster == "lightgbm":
        return model.predict(x, num_iteration=rounds)
    if booster == "catboost":
        return model.predict_proba(x, ntree_end=rounds)[:, 1]
    import xgboost as xgb

    return model.predict(xgb.DMatrix(x, feature_names=[f"f{i}" for i in range(x.shape[1])]),
                         iteration_range=(0, rounds))


def test_make_gbdt_under_a_deadline_keeps_every_fold(demos, tmp_path):
    """make stack's road: folds that would boost for hours each stop at their share of the
    time left, and the folder is whole (every OOF row, a submission)."""
    import time

    root = demos["binary"]
    proc = run_cli("podium.gbdt", "gbdt=lightgbm", "data=demo_binary", f"data.root={root}",
                   f"data.demo_root={root}", "data.n_folds=2", "gbdt.rounds=1000000",
                   "gbdt.early_stopping=1000000", "gbdt.params.learning_rate=0.001",
                   f"deadline={time.time() + 4:.0f}", f"paths.log_dir={tmp_path}")
    assert proc.stdout.count("(its share of the deadline ended it)") == 2
    [folder] = (tmp_path / "gbdt" / "lightgbm").iterdir()
    oof = pd.read_csv(folder / "oof.csv", dtype={"id": str})
    assert sorted(oof.id) == sorted(pd.read_csv(root / "train.csv", dtype={"id": str}).id)
    assert (folder / "submission.csv").is_file()
