"""data.test_prior: weighted validation metrics, the prior's resolution, its EM estimate and
the post-hoc shift to it, against scikit-learn and hand-computed references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
    top_k_accuracy_score,
)

from conftest import fit_postprocess
from podium import prior
from podium.errors import PodiumError
from podium.model.metrics import classification_metrics
from podium.submission.oof import label_score, oof_scores
from podium.submission.postprocess import LogitAdjust
from podium.submission.thresholds import best_threshold


def long_tailed(n_classes: int = 5, seed: int = 0, rows: int = 600):
    """Labels drawn from a long-tailed prior and noisy probabilities that favour them."""
    rng = np.random.default_rng(seed)
    train_prior = 0.5 ** np.arange(n_classes)
    train_prior /= train_prior.sum()
    y = rng.choice(n_classes, size=rows, p=train_prior)
    logits = rng.normal(size=(rows, n_classes)) + 1.5 * np.eye(n_classes)[y]
    logits += np.log(train_prior)  # a model fitted to the training prior
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probs, y, train_prior


@pytest.mark.parametrize("task", ["multiclass", "binary"])
def test_weighted_metrics_equal_scikit_learn_sample_weight(task):
    n = 2 if task == "binary" else 5
    probs, y, _ = long_tailed(n, seed=1)
    test_prior = np.full(n, 1.0 / n)
    counts = np.bincount(y, minlength=n)
    weights = prior.class_weights(test_prior, counts)
    w = weights[y]
    metrics = classification_metrics(n, k=2, task=task, class_weights=weights)
    got = {k: float(v) for k, v in metrics(torch.tensor(probs, dtype=torch.float32),
                                             torch.tensor(y)).items()}
    pred = probs.argmax(1)
    labels = list(range(n))
    expected = {
        "acc": accuracy_score(y, pred, sample_weight=w),
        "balanced_acc": balanced_accuracy_score(y, pred, sample_weight=w),
        "f1_macro": f1_score(y, pred, average="macro", sample_weight=w, zero_division=0),
        "f1_weighted": f1_score(y, pred, average="weighted", sample_weight=w, zero_division=0),
        "precision_macro": precision_score(y, pred, average="macro", sample_weight=w,
                                           zero_division=0),
        "recall_macro": recall_score(y, pred, average="macro", sample_weight=w,
                                     zero_division=0),
        "logloss": log_loss(y, probs, sample_weight=w, labels=labels),
    }
    if task == "multiclass":
        expected["acc_top2"] = top_k_accuracy_score(y, probs, k=2, sample_weight=w,
                                                    labels=labels)
        ranks = (probs >= probs[np.arange(len(y)), y][:, None]).sum(1)
        expected["mrr"] = np.average(1.0 / ranks, weights=w)  # hand-computed
        expected["map@2"] = np.average(np.where(ranks <= 2, 1.0 / ranks, 0.0), weights=w)
    else:  # AUROC compares classes: reweighting a whole class leaves it unchanged
        expected["auroc"] = roc_auc_score(y, probs[:, 1], sample_weight=w)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-5), key
    # the weights change what they should: the weighted accuracy is not the plain one
    assert abs(got["acc"] - accuracy_score(y, pred)) > 0.01


def test_label_score_and_threshold_weighted_equal_scikit_learn():
    probs, y, _ = long_tailed(2, seed=2, rows=400)
    weights = prior.class_weights([0.5, 0.5], np.bincount(y))
    pred = probs.argmax(1)
    assert label_score("f1_macro", y, pred, 2, weights) == pytest.approx(
        f1_score(y, pred, average="macro", sample_weight=weights[y]))
    found = best_threshold(probs[:, 1], y, "acc", weights)
    brute = max(accuracy_score(y, (probs[:, 1] >= t).astype(int), sample_weight=weights[y])
                for t in np.unique(probs[:, 1]))
    assert found["after"] == pytest.approx(brute)
    assert found["before"] == pytest.approx(
        accuracy_score(y, (probs[:, 1] >= 0.5).astype(int), sample_weight=weights[y]))


def test_oof_scores_under_a_prior_weigh_by_the_oof_shares():
    probs, y, _ = long_tailed(3, seed=3)
    names = ["a", "b", "c"]
    oof = pd.DataFrame(probs, columns=names).assign(label=[names[i] for i in y])
    scores = oof_scores(oof, names, "label", test_prior=np.array([0.2, 0.3, 0.5]))
    w = (np.array([0.2, 0.3, 0.5]) / (np.bincount(y) / len(y)))[y]
    assert scores["oof/acc"] == pytest.approx(accuracy_score(y, probs.argmax(1),
                                                             sample_weight=w), abs=1e-6)


def test_resolve_settings(tmp_path):
    assert prior.resolve("train", ["a", "b"]) is None
    assert prior.resolve("estimate", ["a", "b"]) is None
    assert prior.resolve("uniform", ["a", "b", "c", "d"]).tolist() == [0.25] * 4
    (tmp_path / "prior.csv").write_text("class,share\nb,3\na,1\n")
    assert prior.resolve("prior.csv", ["a", "b"], tmp_path).tolist() == [0.25, 0.75]


@pytest.mark.parametrize("text, message", [
    ("class,share\na,1\n", r"missing \['b'\]"),
    ("class,share\na,1\nb,x\n", "not a number"),
    ("class,share\na,-1\nb,2\n", "non-negative"),
    ("class,share,more\na,1,2\nb,1,2\n", "3 columns"),
])
def test_a_bad_prior_file_is_one_line(tmp_path, text, message):
    (tmp_path / "prior.csv").write_text(text)
    with pytest.raises(PodiumError, match=message) as error:
        prior.resolve(str(tmp_path / "prior.csv"), ["a", "b"])
    assert "\n" not in str(error.value)


def test_a_prior_needs_exclusive_classes():
    with pytest.raises(PodiumError, match="data.test_prior=uniform needs data.task"):
        prior.check_setting("uniform", "regression")
    prior.check_setting("train", "multilabel")  # nothing to say
    with pytest.raises(PodiumError, match="not train, uniform, estimate or a CSV"):
        prior.resolve("balanced", ["a", "b"])


def digits_model_predictions(tmp_path):
    """The demo's training and test images (its folder, built here) as pixel rows, a fixed
    model (scikit-learn's logistic regression) fitted on half the training rows: its
    probabilities on the other half (the OOF rows) and on the test set, with the labels."""
    from PIL import Image
    from sklearn.linear_model import LogisticRegression

    from podium.data.demo import build_demo

    root = build_demo(tmp_path / "demo")

    def pixels(frame: pd.DataFrame, folder: str) -> np.ndarray:
        return np.stack([np.asarray(Image.open(root / folder / f"{i}.png"), float).ravel()
                         for i in frame["id"]]) / 255.0

    train = pd.read_csv(root / "train.csv", dtype=str)
    test = pd.read_csv(root / "answers.csv", dtype=str)
    classes = sorted(train["label"].unique())
    y_train = train["label"].map(classes.index).to_numpy()
    y_test = test["label"].map(classes.index).to_numpy()
    x_train, x_test = pixels(train, "train"), pixels(test, "test")
    half = np.arange(len(y_train)) % 2 == 0
    model = LogisticRegression(max_iter=2000, C=0.1).fit(x_train[half], y_train[half])
    return (model.predict_proba(x_train[~half]), y_train[~half], model.predict_proba(x_test),
            y_test, np.bincount(y_train, minlength=10) / len(y_train))


def test_em_estimates_the_demo_test_prior_and_a_resampled_one(tmp_path):
    oof, y_oof, test, y_test, train_prior = digits_model_predictions(tmp_path)
    oof_prior = np.bincount(y_oof, minlength=10) / len(y_oof)
    uniform = np.full(10, 0.1)
    assert prior.total_variation(train_prior, uniform) > 0.15  # a real shift to find
    estimated = prior.estimate(test, oof, y_oof, oof_prior)
    assert prior.total_variation(estimated, uniform) < 0.05
    # the test set resampled to the training prior: EM finds that prior instead
    rng = np.random.default_rng(0)
    keep = np.round(train_prior / train_prior.max() * 60).astype(int)
    rows = np.concatenate([rng.permutation(np.flatnonzero(y_test == c))[:keep[c]]
                           for c in range(10)])
    resampled = np.bincount(y_test[rows], minlength=10) / len(rows)
    estimated = prior.estimate(test[rows], oof, y_oof, oof_prior)
    assert prior.total_variation(estimated, resampled) < 0.05


def test_calibration_undoes_a_model_trained_for_another_prior():
    """A balanced-softmax model predicts for a uniform prior: the biases put the training
    prior back, so EM on training-distributed rows finds the training prior."""
    probs, y, train_prior = long_tailed(4, seed=4, rows=3000)
    balanced = prior.shift(probs, train_prior, np.full(4, 0.25))  # as balanced softmax would
    half = np.arange(len(y)) % 2 == 0
    estimated = prior.estimate(balanced[~half], balanced[half], y[half],
                               np.bincount(y[half], minlength=4) / half.sum())
    assert prior.total_variation(estimated, np.bincount(y[~half], minlength=4) / (~half).sum()
                                 ) < 0.03


def test_em_matches_a_hand_computed_fixed_point():
    """Two classes, two kinds of rows: the prior EM converges to is the one under which
    the mean shifted posterior reproduces itself."""
    probs = np.array([[0.9, 0.1]] * 30 + [[0.2, 0.8]] * 70)
    found = prior.estimate_em(probs, np.array([0.5, 0.5]))
    assert prior.shift(probs, np.array([0.5, 0.5]), found).mean(0) == pytest.approx(found,
                                                                                 abs=1e-6)


def frame(probs: np.ndarray, y: np.ndarray, names: list[str]) -> pd.DataFrame:
    return pd.DataFrame(probs, columns=names).assign(label=[names[i] for i in y])


@pytest.mark.parametrize("seed", range(6))
def test_the_shift_never_lowers_the_prior_weighted_oof_score_of_noise(seed):
    """Noise probabilities: whatever tau the step learns, it is used only when its
    cross-fitted prior-weighted score beats the plain one."""
    rng = np.random.default_rng(seed)
    names = ["a", "b", "c"]
    y = rng.choice(3, size=300, p=[0.7, 0.2, 0.1])
    probs = rng.dirichlet(np.ones(3), size=300)
    uniform = np.full(3, 1 / 3)
    adjust, report, warning = fit_postprocess(LogitAdjust(), frame(probs, y, names), names,
                                              "label", "f1_macro", test_prior=uniform)
    if report["used"]:
        assert report["after_cross_fitted"] > report["before"]
    else:
        assert np.array_equal(adjust(probs), probs) and warning


def test_the_shift_to_a_uniform_prior_helps_a_balanced_test_set():
    probs, y, train_prior = long_tailed(5, seed=5, rows=3000)
    names = list("abcde")
    uniform = np.full(5, 0.2)
    adjust, report, _ = fit_postprocess(LogitAdjust(), frame(probs, y, names), names, "label",
                                        "f1_macro", test_prior=uniform)
    assert report["used"] and 0.5 <= report["tau"] <= 1.5  # Bayes: tau = 1 for this model
    # a balanced test set from the same model: the shifted decisions score higher there
    test_probs, test_y, _ = long_tailed(5, seed=6, rows=20000)
    balanced = np.concatenate([np.flatnonzero(test_y == c)[:200] for c in range(5)])
    plain = f1_score(test_y[balanced], test_probs[balanced].argmax(1), average="macro")
    shifted = f1_score(test_y[balanced], adjust(test_probs[balanced]).argmax(1),
                       average="macro")
    assert shifted > plain + 0.02


def test_the_shift_helps_log_loss_under_the_prior():
    probs, y, _ = long_tailed(4, seed=7, rows=2000)
    names = list("abcd")
    adjust, report, _ = fit_postprocess(LogitAdjust(), frame(probs, y, names), names, "label",
                                        "logloss", test_prior=np.full(4, 0.25))
    assert report["used"] and report["after_cross_fitted"] < report["before"]
    w = prior.class_weights(np.full(4, 0.25), np.bincount(y))[y]
    assert log_loss(y, adjust(probs), sample_weight=w) < log_loss(y, probs, sample_weight=w)


def test_a_run_under_the_uniform_prior_weighs_validation_and_shifts_the_file(tmp_path,
                                                                             demo_root):
    """The demo under data.test_prior=uniform: val/ metrics are the best checkpoint's
    validation predictions moved to the uniform prior by Bayes' rule (plain cross-entropy
    carries the training split's shares) and scored with scikit-learn's sample_weight =
    (1/C) / training share; val_train_prior/ the predictions as they are, unweighted;
    metrics.json says which prior, and the submission went through the shift's proof."""
    import json

    from conftest import run_cli, run_dirs

    run_cli("podium.train", "data.test_prior=uniform", "trainer.max_epochs=3",
            "model.net.depth=8", "model.net.width=4", f"data.root={demo_root}",
            f"data.demo_root={demo_root}", f"paths.log_dir={tmp_path}")
    run = run_dirs(tmp_path)[0]
    metrics = json.loads((run / "metrics.json").read_text())
    oof = pd.read_csv(run / "oof.csv", dtype={"id": str})
    train = pd.read_csv(demo_root / "train.csv", dtype={"id": str})
    classes = sorted(train.label.unique())
    training_split = train[~train.id.isin(oof.id)]
    share = training_split.label.value_counts(normalize=True).reindex(classes).to_numpy()
    y = oof.label.map(classes.index).to_numpy()
    assert [metrics["score_prior"][c] for c in classes] == pytest.approx(share)
    probs = oof[classes].to_numpy()
    pred = (np.log(probs) + np.log(1 / len(classes)) - np.log(share)).argmax(1)
    w = (1 / len(classes)) / share[y]
    assert metrics["val/f1_macro"] == pytest.approx(
        f1_score(y, pred, average="macro", sample_weight=w), abs=1e-4)
    assert metrics["val/acc"] == pytest.approx(accuracy_score(y, pred, sample_weight=w),
                                               abs=1e-4)
    assert metrics["val_train_prior/acc"] == pytest.approx(
        accuracy_score(y, probs.argmax(1)), abs=1e-4)
    assert metrics["test_prior"]["setting"] == "uniform"
    assert metrics["test_prior"]["prior"] == {c: pytest.approx(0.1) for c in classes}
    assert metrics["postprocess"]["name"] == "logit_adjust"
    assert (run / "submission.csv").is_file()
    # a refit has no validation rows: it learns the shift on the OOF rows of the run it refits
    run_cli("podium.refit", f"run={run}", "epochs=2", f"paths.log_dir={tmp_path}")
    refit = run_dirs(tmp_path, "refit")[0]
    refitted = json.loads((refit / "metrics.json").read_text())
    assert refitted["test_prior"]["setting"] == "uniform"
    assert refitted["postprocess"]["name"] == "logit_adjust"
    assert refitted["postprocess"]["before"] == pytest.approx(metrics["postprocess"]["before"])


def test_the_bootstrap_spread_of_accuracy_is_the_binomial_one():
    """A validation score's standard error: accuracy p over n rows has sqrt(p(1-p)/n)."""
    from podium.submission.oof import bootstrap_se
    from podium.submission.steps import Scoring

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    pred = np.where(rng.random(400) < 0.8, y, (y + 1) % 3)
    p = (pred == y).mean()
    se = bootstrap_se(Scoring("acc", "multiclass", 3), y, pred, rounds=400)
    assert se == pytest.approx(np.sqrt(p * (1 - p) / 400), rel=0.15)


def test_estimate_shifts_to_the_em_prior_and_submit_can_choose_another(tmp_path, demo_root):
    """data.test_prior=estimate: validation as the split is, the file shifted toward the EM
    estimate of the test prior; `make submit test_prior=uniform` decides again for the
    finished run, without training."""
    import json

    from conftest import run_cli, run_dirs

    run_cli("podium.train", "data.test_prior=estimate", "trainer.max_epochs=2",
            "model.net.depth=8", "model.net.width=4", f"data.root={demo_root}",
            f"data.demo_root={demo_root}", f"paths.log_dir={tmp_path}")
    run = run_dirs(tmp_path)[0]
    metrics = json.loads((run / "metrics.json").read_text())
    assert "val_train_prior/acc" not in metrics  # nothing weighted: the prior comes later
    report = metrics["test_prior"]
    assert report["setting"] == "estimate" and report["prior"] == report["estimated"]
    assert sum(report["prior"].values()) == pytest.approx(1.0)
    assert metrics["postprocess"]["name"] == "logit_adjust"
    proc = run_cli("podium.submit", f"runs=[{run}]", "test_prior=uniform",
                   f"paths.log_dir={tmp_path}")
    assert "test prior uniform: eight 0.100" in proc.stdout
    submitted = json.loads((run_dirs(tmp_path, "submit")[0] / "metrics.json").read_text())
    assert submitted["test_prior"]["setting"] == "uniform"


def test_bayes_moves_each_member_and_a_learned_shift_moves_their_average(tmp_path):
    """Each member's probabilities move by Bayes' rule from the prior they carry (folders
    made outside podium: their OOF rows' class shares) to the test prior, then they are
    averaged; a learned shift (the chain's adjust step) moves the average, as it moved the
    averaged OOF rows it was learned on."""
    import json

    from test_blend import good, write_member

    from conftest import run_cli
    from podium.data.demo import build_tabular_demo

    root = build_tabular_demo(tmp_path / "binary", "binary")
    runs = [write_member(tmp_path / name, root, good(scale), seed=seed)
            for name, scale, seed in (("a", 0.15, 1), ("b", 0.3, 2))]
    run_cli("podium.submit", f"runs=[{runs[0]},{runs[1]}]", f"external.data_root={root}",
            "external.metric=logloss", "test_prior=uniform",
            f"paths.log_dir={tmp_path / 'logs'}")
    out = next((tmp_path / "logs" / "submit").glob("*/*/"))
    metrics = json.loads((out / "metrics.json").read_text())
    tau = metrics["postprocess"]["tau"] if metrics["postprocess"]["used"] else 0.0
    train = metrics["test_prior"]["train_prior"]
    learned = -tau * np.log([train["benign"], train["malignant"]])
    mean = 0
    for run in runs:
        probs = pd.read_csv(run / "test_probs.csv")[["benign", "malignant"]].to_numpy()
        carried = pd.read_csv(run / "oof.csv").target.value_counts(normalize=True)
        z = probs * 0.5 / carried[["benign", "malignant"]].to_numpy()
        mean = mean + z / z.sum(1, keepdims=True) / 2
    z = np.exp(np.log(mean) + learned)
    expected = (z / z.sum(1, keepdims=True))[:, 1]
    submission = pd.read_csv(out / "submission.csv")
    assert submission.iloc[:, 1].to_numpy() == pytest.approx(expected, abs=1e-6)


def test_far_means_beyond_what_a_small_test_set_moves_by_chance():
    """Three equal classes: n rows move each share by sqrt(2 p (1 - p) / (pi n)) on average
    (the mean absolute deviation of a binomial share), the total variation by half their sum."""
    by_hand = 0.5 * 3 * np.sqrt(2 * (1 / 3) * (2 / 3) / (np.pi * 36))
    assert prior.far_from([1 / 3] * 3, 36) == pytest.approx(3 * by_hand)
    assert prior.far_from([1 / 3] * 3, 10000) == prior.FAR
    # the mean absolute deviation by simulation agrees with the formula
    rng = np.random.default_rng(0)
    shares = rng.multinomial(36, [1 / 3] * 3, size=20000) / 36
    simulated = 0.5 * np.abs(shares - 1 / 3).sum(1).mean()
    assert simulated == pytest.approx(by_hand, rel=0.1)


@pytest.mark.parametrize("loss, power, expected", [
    # plain cross-entropy carries the training shares; a class-balanced sampler draws
    # n^(1 - power); class weights and a logit-adjusted loss multiply the shares
    ("ce", 0.0, [0.8, 0.15, 0.05]),
    ("ce", 1.0, [1 / 3, 1 / 3, 1 / 3]),
    ("ce", 0.5, np.sqrt([80, 15, 5]) / np.sqrt([80, 15, 5]).sum()),
    ("weighted_inverse", 0.0, [1 / 3, 1 / 3, 1 / 3]),
    ("balanced_softmax_1", 0.0, [1 / 3, 1 / 3, 1 / 3]),
    ("balanced_softmax_half", 0.0, np.sqrt([80, 15, 5]) / np.sqrt([80, 15, 5]).sum()),
    ("balanced_softmax_1", 1.0, np.array([1 / 80, 1 / 15, 1 / 5]) / (1 / 80 + 1 / 15 + 1 / 5)),
    ("torch_weight", 0.0, np.array([80, 15 * 2, 5 * 4]) / 130),
])
def test_the_score_prior_is_what_the_loss_and_sampler_leave_of_the_training_prior(
        loss, power, expected):
    from podium.losses.multiclass import BalancedSoftmaxLoss, WeightedCrossEntropy

    counts = [80, 15, 5]
    losses = {
        "ce": torch.nn.CrossEntropyLoss(),
        "weighted_inverse": WeightedCrossEntropy(counts, "inverse"),
        "balanced_softmax_1": BalancedSoftmaxLoss(counts, tau=1.0),
        "balanced_softmax_half": BalancedSoftmaxLoss(counts, tau=0.5),
        "torch_weight": torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 4.0])),
    }
    got = prior.score_prior(counts, losses[loss], power)
    assert got == pytest.approx(np.asarray(expected, float))


def test_members_move_from_the_prior_they_carry_to_the_test_prior():
    """Bayes' rule: p_test(y|x) ∝ p(y|x) q_y / s_y, s the member's score prior; a member
    trained for a uniform prior (balanced softmax) stays as it is under a uniform test prior;
    one that names none moves from its OOF rows' class shares."""
    from podium.submission.members import Member, Predictions
    from podium.submission.stack import to_test_prior

    names = ["a", "b"]
    test = pd.DataFrame({"id": ["1", "2"], "a": [0.9, 0.4], "b": [0.1, 0.6]})
    oof = pd.DataFrame({"id": ["3", "4", "5", "6"], "label": ["a", "a", "a", "b"],
                        "a": [0.8, 0.7, 0.6, 0.3], "b": [0.2, 0.3, 0.4, 0.7]})
    uniform = np.full(2, 0.5)
    balanced = Member(None, None, 1.0, score_prior={"a": 0.5, "b": 0.5})
    same = to_test_prior(Predictions(test, oof), balanced, uniform, "label")
    assert same.test[names].to_numpy() == pytest.approx(test[names].to_numpy())
    plain = to_test_prior(Predictions(test, oof), Member(None, None, 1.0), uniform, "label")
    # by hand: 0.9 / 0.75 and 0.1 / 0.25, normalised; 0.4 / 0.75 and 0.6 / 0.25
    assert plain.test["a"].tolist() == pytest.approx([1.2 / 1.6, (0.4 / 0.75) / (0.4 / 0.75 + 2.4)])
    assert plain.oof["a"].iloc[0] == pytest.approx((0.8 / 0.75) / (0.8 / 0.75 + 0.8))


@pytest.mark.parametrize("overrides, expected", [
    ([], [0.8, 0.15, 0.05]),                                     # plain cross-entropy
    (["sampler=balanced"], [1 / 3, 1 / 3, 1 / 3]),               # draws every class alike
    (["experiment=longtail"], [1 / 3, 1 / 3, 1 / 3]),            # balanced softmax, tau 1
    (["experiment=longtail", "loss.tau=0.5"], np.sqrt([80, 15, 5]) / np.sqrt([80, 15, 5]).sum()),
])
def test_a_run_s_score_prior_follows_its_loss_and_sampler_config(tmp_path, overrides, expected):
    from conftest import image_spec, make_cfg
    from podium.build import build_loss, score_prior

    cfg = make_cfg(tmp_path, overrides)
    spec = image_spec("abc", counts=[80, 15, 5])
    loss = build_loss(cfg, list(spec.class_counts))
    assert score_prior(cfg, spec, loss) == pytest.approx(np.asarray(expected, float))


def test_ldam_drw_carries_its_re_weighting_only_from_drw_epoch():
    """LDAM's deferred re-weighting multiplies the prior the probabilities carry only once
    it is on: plain training shares before drw_epoch, shares x effective-number weights
    ((1 - beta) / (1 - beta^n), Cui et al. 2019) after, by hand."""
    from podium.losses.multiclass import LDAMLoss

    counts, beta = np.array([90.0, 10.0]), 0.99
    loss = LDAMLoss(counts, drw_epoch=2, beta=beta)
    loss.set_epoch(1, 10)
    assert prior.score_prior(counts, loss) == pytest.approx([0.9, 0.1])
    loss.set_epoch(2, 10)
    w = (1 - beta) / (1 - beta ** counts)
    assert prior.score_prior(counts, loss) == pytest.approx(counts * w / (counts * w).sum())


@pytest.mark.parametrize("drw_epoch", [50, 0])
def test_ldam_run_validates_and_records_the_prior_of_its_chosen_checkpoint(tmp_path,
                                                                          drw_epoch):
    """LDAM-DRW under data.test_prior=uniform: with the re-weighting never on (drw_epoch=50,
    3 epochs), the chosen checkpoint carries the training split's shares: metrics.json's
    score_prior and val/acc (the validation rows moved from it to uniform by Bayes' rule,
    weighted by (1/2) / share, by hand) say so; on from epoch 0, the re-weighted shares."""
    import json

    from conftest import make_cfg
    from podium.data.demo import build_tabular_demo
    from podium.train import train

    root = build_tabular_demo(tmp_path / "demo_binary", "binary")
    cfg = make_cfg(tmp_path, ["data=demo_binary", f"data.root={root}", f"data.demo_root={root}",
                              "data.test_prior=uniform", "loss=ldam_drw", "loss.s=1",
                              f"loss.drw_epoch={drw_epoch}", "loss.beta=0.99",
                              "trainer.max_epochs=3", "metric.competition=accuracy"])
    train(cfg)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    oof = pd.read_csv(tmp_path / "run" / "oof.csv", dtype={"id": str})
    train_rows = pd.read_csv(root / "train.csv", dtype={"id": str})
    classes = ["benign", "malignant"]
    counts = (train_rows[~train_rows.id.isin(oof.id)].target.value_counts()
              .reindex(classes).to_numpy(float))
    carried = counts / counts.sum()
    if drw_epoch == 0:
        w = (1 - 0.99) / (1 - 0.99 ** counts)
        carried = counts * w / (counts * w).sum()
    assert [saved["score_prior"][c] for c in classes] == pytest.approx(carried)
    y = oof.target.map(classes.index).to_numpy()
    pred = (np.log(oof[classes].to_numpy()) - np.log(carried)).argmax(1)  # to uniform
    share = counts / counts.sum()
    assert saved["val/acc"] == pytest.approx(
        accuracy_score(y, pred, sample_weight=0.5 / share[y]), abs=1e-4)


def test_a_checkpoint_validates_with_the_score_prior_of_its_own_epoch():
    """Loading a checkpoint of epoch e (Lightning's on_load_checkpoint, as validate and
    predict with ckpt_path do) sets the loss to epoch e: an LDAM-DRW checkpoint from
    before drw_epoch moves validation from the plain shares, one after from the re-weighted
    ones (log(uniform) - log(carried), by hand), whatever epoch the fit ended in."""
    from types import SimpleNamespace

    from podium.losses.multiclass import LDAMLoss
    from podium.model.module import CompetitionModule
    from podium.spec import DataSpec

    counts, beta = np.array([30.0, 10.0]), 0.99
    spec = DataSpec(task="binary", class_names=("a", "b"), class_counts=(30, 10),
                    net_inputs={"in_features": 3}, test_prior=(0.5, 0.5),
                    test_prior_setting="uniform")
    loss = LDAMLoss(counts, drw_epoch=2, beta=beta, s=1.0)
    module = CompetitionModule(torch.nn.Linear(3, 2), spec, loss,
                               score_prior=lambda: prior.score_prior(counts, loss))
    module._trainer = SimpleNamespace(max_epochs=5)
    w = (1 - beta) / (1 - beta ** counts)
    for epoch, carried in ((4, counts * w / (counts * w).sum()), (1, counts / counts.sum())):
        module.on_load_checkpoint({"epoch": epoch})
        assert module.score_prior == pytest.approx(carried)
        assert module.prior_ratio.numpy() == pytest.approx(0.5 / carried, rel=1e-5)


def test_validation_and_the_files_move_by_the_same_bayes_rule():
    """The module's move (torch, every validation) and the files' (numpy: prior.shift) give
    the same probabilities, a class with a zero share included (it stays at 0), and both
    equal Bayes' rule by hand: p * target / source, normalised."""
    import torch

    from podium.model.module import CompetitionModule
    from podium.spec import DataSpec

    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1, 1, 1], 50)
    source, target = np.array([0.5, 0.3, 0.2, 0.0]), np.array([0.25, 0.25, 0.25, 0.25])
    spec = DataSpec(task="multiclass", class_names=("a", "b", "c", "d"),
                    class_counts=(50, 30, 20, 0), net_inputs={"in_features": 3},
                    test_prior=tuple(target), test_prior_setting="uniform")
    module = CompetitionModule(torch.nn.Linear(3, 4), spec, score_prior=tuple(source))
    validation = module.under_test_prior(torch.tensor(probs, dtype=torch.float64)).numpy()
    by_hand = probs * [0.5, 0.25 / 0.3, 1.25, 0.0]
    by_hand /= by_hand.sum(1, keepdims=True)
    assert validation == pytest.approx(by_hand, abs=1e-7)
    assert prior.shift(probs, source, target) == pytest.approx(by_hand, abs=1e-12)
