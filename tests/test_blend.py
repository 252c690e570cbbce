"""Members written outside podium, and blend weights learned on the OOF (`weights=auto`)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from sklearn.metrics import log_loss, mean_squared_error, roc_auc_score

from conftest import run_cli
from podium.data.demo import build_tabular_demo
from podium.submission.blend import caruana, nnls_weights
from podium.submission.oof import combine_oof


# -- the learners against hand-computed cases --------------------------------------------
def squared_error_to(target: float):
    return lambda blended: float(((blended - target) ** 2).mean())


def test_caruana_greedy_rounds_by_hand():
    """Members 0 and 1 predict 0 and 1, the target is 0.3 (squared error, minimised):
    round 1 picks 0 (0.09 < 0.49); round 2: {0,0} 0.09 vs {0,1} 0.04 -> 1; round 3: mean
    1/3 (0.0011) vs 2/3 (0.134) -> 0. Best prefix after 3 rounds: [2, 1] -> [2/3, 1/3]."""
    predictions = np.array([[[0.0]], [[1.0]]])
    np.testing.assert_allclose(caruana(predictions, squared_error_to(0.3), "mse", rounds=3),
                               [2 / 3, 1 / 3])
    np.testing.assert_allclose(caruana(predictions, squared_error_to(0.3), "mse", rounds=2),
                               [1 / 2, 1 / 2])
    # a score (max): the best prefix is kept even when later rounds get worse
    score = lambda blended: -abs(float(blended.mean()) - 0.5)  # noqa: E731
    np.testing.assert_allclose(caruana(predictions, score, "auroc", rounds=5), [0.5, 0.5])


def test_caruana_gives_a_perfect_ranker_all_the_weight():
    """AUROC: member 0 ranks every positive first (1.0), member 1 is noise; no blend can
    beat 1.0 strictly, so the first round's pick stays alone."""
    from podium.submission.steps import Scoring

    y = np.array([0, 0, 1, 1, 0, 1])
    perfect = np.stack([1 - y * 0.8 - 0.1, y * 0.8 + 0.1], axis=1)
    noise = np.random.default_rng(0).dirichlet([1, 1], size=len(y))
    score = lambda blended: Scoring("auroc", "binary", 2)(y, blended)  # noqa: E731
    assert score(perfect) == pytest.approx(roc_auc_score(y, perfect[:, 1]))
    np.testing.assert_allclose(caruana(np.stack([noise, perfect]), score, "auroc"), [0, 1])


def test_nnls_by_hand_and_against_a_simplex_solver():
    a, b = np.array([1.0, 2, 3, 4]), np.array([4.0, 3, 2, 1])
    np.testing.assert_allclose(nnls_weights(np.stack([a, b]), 0.3 * a + 0.7 * b), [0.3, 0.7],
                               atol=1e-6)
    # two constant members 0 and 1, target [0.25, 0.75]: the mean 0.5 is the best fit
    np.testing.assert_allclose(nnls_weights(np.array([[0.0, 0.0], [1.0, 1.0]]),
                                            np.array([0.25, 0.75])), [0.5, 0.5], atol=1e-6)
    rng = np.random.default_rng(1)
    y = rng.normal(size=50)
    members = np.stack([y + rng.normal(scale=s, size=50) for s in (0.3, 0.6, 2.0)] + [y + 5])
    weights = nnls_weights(members, y)
    reference = minimize(lambda w: ((w @ members - y) ** 2).sum(), np.full(4, 0.25),
                         bounds=[(0, 1)] * 4, method="SLSQP", options={"ftol": 1e-12},
                         constraints={"type": "eq", "fun": lambda w: w.sum() - 1}).x
    np.testing.assert_allclose(weights, reference, atol=1e-4)
    assert weights.sum() == pytest.approx(1)


def test_combined_oof_is_one_row_per_id_whatever_the_label_text():
    """A regression label written as float32 text by one run and as `0.1` by another is
    one row (grouped by id alone), its predictions averaged, its label the first run's."""
    one = pd.DataFrame({"id": ["a", "b"], "y": ["0.10000000149011612", "1"], "p": [0.2, 0.6]})
    two = pd.DataFrame({"id": ["b", "a"], "y": ["1", "0.1"], "p": [1.0, 0.8]})
    plain = combine_oof([one, two], "id").set_index("id")
    assert len(plain) == 2 and plain.p.to_dict() == pytest.approx({"a": 0.5, "b": 0.8})
    assert plain.y["a"] == "0.10000000149011612"


# -- members written by hand, with pandas ----------------------------------------------------
@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    base = tmp_path_factory.mktemp("tables")
    return {kind: build_tabular_demo(base / kind, kind) for kind in ("binary", "regression")}


def write_member(folder, root, predict, kind="binary", seed=0, folds=5):
    """A teammate's folder, written with pandas as README shows: `predict(truth, rng)`
    gives the positive-class probability (binary) or the prediction (regression)."""
    rng = np.random.default_rng(seed)
    train = pd.read_csv(root / "train.csv", dtype={"id": str})
    sample = pd.read_csv(root / "sample_submission.csv", dtype={"id": str})
    folder.mkdir(parents=True)
    truth = (train.target == "malignant").to_numpy(float) if kind == "binary" else \
        train.target.to_numpy(float)
    oof = pd.DataFrame({"id": train.id, "fold": np.arange(len(train)) % folds,
                        "target": train.target})
    test = pd.DataFrame({"id": sample.id})
    fake_test = rng.random(len(test)) if kind == "binary" else rng.normal(150, 50, len(test))
    for frame, values in ((oof, predict(truth, rng)), (test, fake_test)):
        if kind == "binary":
            frame["benign"], frame["malignant"] = 1 - values, values
        else:
            frame["prediction"] = values
    oof.to_csv(folder / "oof.csv", index=False)
    test.to_csv(folder / "test_probs.csv", index=False)
    return folder


def good(scale):
    return lambda truth, rng: np.clip(truth * 0.6 + 0.2 + rng.normal(0, scale, len(truth)),
                                      0.02, 0.98)


def noise(truth, rng):
    return rng.random(len(truth))


def submit(tmp_path, *args, check=True):
    proc = run_cli("podium.submit", *args, f"paths.log_dir={tmp_path / 'logs'}", check=check)
    written = list((tmp_path / "logs" / "submit").glob("*/*/metrics.json"))
    return proc, (json.loads(written[0].read_text()) if written else None), written


def test_weights_auto_gives_noise_no_weight_and_never_loses_to_the_best(tables, tmp_path):
    root = tables["binary"]
    members = [write_member(tmp_path / name, root, predict, seed=i)
               for i, (name, predict) in enumerate([("a", good(0.3)), ("b", good(0.35)),
                                                    ("noise", noise)])]
    runs = "runs=[" + ",".join(map(str, members)) + "]"
    proc, metrics, _ = submit(tmp_path, runs, "weights=auto", f"external.data_root={root}")
    blend = metrics["blend"]
    assert blend["method"] == "caruana" and blend["weights"][str(members[2])] < 0.05
    assert blend["used"] and "weights: " in proc.stdout and "(learned)" in proc.stdout
    oofs = [pd.read_csv(m / "oof.csv", dtype={"id": str}) for m in members]
    y = oofs[0].target == "malignant"
    best = max(roc_auc_score(y, o.malignant) for o in oofs)
    [written] = (tmp_path / "logs" / "submit").glob("*/*/oof.csv")
    blended = pd.read_csv(written, dtype={"id": str}).set_index("id").loc[oofs[0].id]
    auroc = roc_auc_score(y, blended.malignant)
    assert auroc >= best - 1e-9 and metrics["oof"]["oof/auroc"] == pytest.approx(auroc, abs=1e-6)
    test = pd.read_csv(written.with_name("test_probs.csv"))
    expected = sum(w * pd.read_csv(m / "test_probs.csv").malignant
                   for m, w in zip(members, blend["weights"].values(), strict=True))
    np.testing.assert_allclose(test.malignant, expected, atol=1e-6)


def test_weights_auto_falls_back_when_learning_does_not_win(tables, tmp_path):
    """A copy of the best member adds nothing: the learned blend cannot gain a standard
    error on held-out rows, so the given (equal) weights stay."""
    root = tables["binary"]
    a = write_member(tmp_path / "a", root, good(0.3))
    copy = write_member(tmp_path / "copy", root, good(0.3))  # same seed: the same numbers
    proc, metrics, _ = submit(tmp_path, f"runs=[{a},{copy}]", "weights=auto",
                              f"external.data_root={root}", "external.metric=logloss")
    blend = metrics["blend"]
    assert blend["metric"] == "logloss" and not blend["used"]
    assert blend["weights"] == {str(a): 0.5, str(copy): 0.5}
    assert "blend not used: cross-fitted OOF logloss" in proc.stdout
    oof = pd.read_csv(a / "oof.csv")
    assert metrics["oof"]["oof/logloss"] == pytest.approx(
        log_loss(oof.target == "malignant", oof.malignant), abs=1e-5)


def test_regression_weights_auto_is_nnls(tables, tmp_path):
    root = tables["regression"]
    members = [write_member(tmp_path / "a", root, lambda t, r: t + r.normal(0, 20, len(t)),
                            "regression", seed=1),
               write_member(tmp_path / "b", root, lambda t, r: t + r.normal(0, 20, len(t)),
                            "regression", seed=2),
               write_member(tmp_path / "noise", root, lambda t, r: r.normal(150, 80, len(t)),
                            "regression", seed=3)]
    runs = "runs=[" + ",".join(map(str, members)) + "]"
    _, metrics, _ = submit(tmp_path, runs, "weights=auto", f"external.data_root={root}",
                           "external.metric=rmse")
    blend = metrics["blend"]
    assert blend["method"] == "nnls" and blend["used"]
    assert blend["weights"][str(members[2])] < 0.05
    oofs = [pd.read_csv(m / "oof.csv") for m in members]
    best = min(mean_squared_error(o.target, o.prediction) ** 0.5 for o in oofs)
    assert metrics["oof"]["oof/rmse"] <= best


def test_a_hand_written_member_joins_a_podium_run(tables, tmp_path):
    root = tables["binary"]
    run_cli("podium.gbdt", "data=demo_binary", f"data.root={root}", f"data.demo_root={root}",
            "data.n_folds=2", "gbdt.rounds=10", f"paths.log_dir={tmp_path / 'g'}")
    [trees] = (tmp_path / "g" / "gbdt" / "lightgbm").iterdir()
    hand = write_member(tmp_path / "notebook", root, good(0.3))
    proc, metrics, written = submit(tmp_path, f"runs=[{trees},{hand}]")
    assert f"member {hand}: weight 0.500" in proc.stdout
    test = pd.read_csv(written[0].with_name("test_probs.csv"))
    mean = (pd.read_csv(trees / "test_probs.csv").malignant
            + pd.read_csv(hand / "test_probs.csv").malignant) / 2
    np.testing.assert_allclose(test.malignant, mean, atol=1e-6)


def podium_run(folder, root):
    """The folder with a podium run's config (the keys make gbdt's has that a member uses)."""
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "config.yaml").write_text(
        f"data:\n  root: {root}\n  id_col: id\n  target_col: target\n  task: binary\n"
        f"  sample_submission: sample_submission.csv\n  train_csv: train.csv\n"
        f"metric:\n  competition: auroc\n")
    return folder


def rewrite(folder, name, change):
    path = folder / name
    change(pd.read_csv(path, dtype=str, keep_default_na=False)).to_csv(path, index=False)


@pytest.mark.parametrize("name,change,message", [
    ("test_probs.csv", lambda f: f.rename(columns={"benign": "healthy"}),
     "has the class columns ['healthy', 'malignant'], the podium run"),
    ("test_probs.csv", lambda f: f.assign(id=f.id + "x"), "id(s) are not in the sample"),
    ("oof.csv", lambda f: f.assign(id=f.id + "x"), "id(s) are not in"),
    ("oof.csv", lambda f: f.assign(target="benign"), "has the label 'benign'"),
    ("oof.csv", lambda f: f.rename(columns={"target": "label"}), "has the label column 'label'"),
    ("test_probs.csv", lambda f: f.rename(columns={"id": "key"}), "starts with the column 'key'"),
])
def test_a_member_that_differs_is_one_line_and_writes_nothing(tables, tmp_path, name, change,
                                                              message):
    root = tables["binary"]
    trees = podium_run(write_member(tmp_path / "reference", root, good(0.3)), root)
    hand = write_member(tmp_path / "hand", root, good(0.3))
    rewrite(hand, name, change)
    proc, _, written = submit(tmp_path, f"runs=[{trees},{hand}]", check=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not written and not list((tmp_path / "logs").glob("submit/*/*/submission.csv"))


def test_weights_auto_learns_on_the_shared_oof_rows_and_a_lone_folder_needs_its_competition(
        tables, tmp_path):
    root = tables["binary"]
    a = write_member(tmp_path / "a", root, good(0.3))
    b = write_member(tmp_path / "b", root, good(0.3), seed=1)
    rewrite(b, "oof.csv", lambda f: f.iloc[10:])
    proc, _, written = submit(tmp_path, f"runs=[{a},{b}]", "weights=auto",
                              f"external.data_root={root}", check=False)
    assert proc.returncode == 0 and "OOF: 10 id(s) predicted out of fold by only some" in \
        proc.stdout and "the 445 ids all of them predicted" in proc.stdout
    assert json.loads(written[0].read_text())["oof_rows"] == 445
    proc, _, again = submit(tmp_path, f"runs=[{a}]", check=False)
    assert proc.returncode == 2 and "external.data_root=<folder>" in proc.stderr
    proc, _, _ = submit(tmp_path, f"runs=[{a}]", "weights=best", check=False)
    assert proc.returncode == 2 and "weights=best: give one number per folder" in proc.stderr
    assert again == written


def test_caruana_selects_on_a_sample_of_a_large_oof(monkeypatch):
    """Each of Caruana's ~200 scorings reads every row it is given: above SELECTION_ROWS
    it is given a seeded sample (the chain still judges the weights on every row)."""
    import podium.submission.blend as blend
    from podium.submission.steps import SELECTION_ROWS, Blend, Scoring

    seen = []
    monkeypatch.setattr(blend, "caruana", lambda x, score, metric: seen.append(x.shape)
                        or np.array([1.0, 0.0]))
    rng = np.random.default_rng(0)
    n = SELECTION_ROWS + 5000
    x = rng.dirichlet([1, 1], (2, n))
    fitted = Blend(np.array([0.5, 0.5]), learn=True).fit(x, rng.integers(0, 2, n),
                                                        Scoring("auroc", "binary", 2))
    assert seen == [(2, SELECTION_ROWS, 2)] and fitted.weights.tolist() == [1.0, 0.0]
    Blend(np.array([0.5, 0.5]), learn=True).fit(x[:, :1000], rng.integers(0, 2, 1000),
                                                Scoring("auroc", "binary", 2))
    assert seen[-1] == (2, 1000, 2)
