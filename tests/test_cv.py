"""Cross-validation folds, out-of-fold predictions, TTA, ensembles and post-processing."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from sklearn.metrics import f1_score

from conftest import ROOT, fit_postprocess, run_cli
from podium.spec import DataSpec
from podium.submission.oof import label_score
from podium.submission.postprocess import LogitAdjust, f1_offsets

FOLDS = 3


@pytest.fixture(scope="module")
def cv_dir(tmp_path_factory, demo_root):
    """`make cv EXP=baseline FOLDS=3` on a tiny budget (the command make runs)."""
    logs = tmp_path_factory.mktemp("logs")
    proc = run_cli("podium.train", "-m", "task_name=cv", "experiment=baseline",
                   "sweep_name=baseline", f"data.n_folds={FOLDS}", f"data.fold=range(0,{FOLDS})",
                   "debug=limit", "model.net.depth=8", "model.net.width=4",
                   f"data.root={demo_root}", f"data.demo_root={demo_root}",
                   f"paths.log_dir={logs}")
    [cv] = list((logs / "cv" / "baseline").iterdir())
    (logs / "stdout.txt").write_text(proc.stdout)
    return cv


def test_the_config_keys_are_listed_once_per_cross_validation(cv_dir):
    said = (cv_dir.parents[2] / "stdout.txt").read_text().splitlines()
    heads = [line for line in said if line.startswith("config: ")]
    assert len(heads) == FOLDS and "listed by fold 0" not in heads[0]
    assert all("(listed by fold 0)" in head for head in heads[1:])
    assert sum(line.startswith("  model.net.width=4") for line in said) == 1
    # the whole cross-validation's time left: printed by every fold but the last
    epochs = [line for line in said if line.startswith("epoch=")]
    assert "cv_eta=" in epochs[0] and "cv_eta=" not in epochs[-1]


def read_probs(path):
    return pd.read_csv(path, dtype={"id": str, "label": str})


def test_every_training_id_is_out_of_fold_once(cv_dir, demo_root):
    oof = read_probs(cv_dir / "oof.csv")
    train = pd.read_csv(demo_root / "train.csv", dtype=str)
    assert sorted(oof.id) == sorted(train.id)
    assert sorted(oof.fold.unique()) == list(range(FOLDS))
    truth = train.set_index("id").label
    assert (oof.label == truth[oof.id].to_numpy()).all()  # the true label, not a prediction


def test_each_fold_chose_on_an_inner_split_of_its_training_rows(cv_dir, demo_root):
    """Every fold's rows: trained on, validated on (the inner split, which chose the
    checkpoint) and held out (its oof.csv, scikit-learn's StratifiedKFold fold) add up to
    train.csv; its metrics.json keeps the inner validation score apart from its OOF score."""
    from sklearn.model_selection import StratifiedKFold

    train = pd.read_csv(demo_root / "train.csv", dtype=str)
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=42).split(train.id, train.label)
    for k, (fold_train, held_out) in enumerate(folds):
        metrics = json.loads((cv_dir / str(k) / "metrics.json").read_text())
        oof = read_probs(cv_dir / str(k) / "oof.csv")
        assert sorted(oof.id) == sorted(train.id[held_out])
        assert metrics["nested"] is True and metrics["oof_rows"] == len(held_out)
        assert metrics["train_rows"] + metrics["val_rows"] == len(fold_train)
        assert metrics["val_rows"] == pytest.approx(0.2 * len(fold_train), abs=1)
        assert "val/f1_macro" in metrics and "oof_score" in metrics


def test_oof_metrics_equal_scikit_learn(cv_dir):
    oof = read_probs(cv_dir / "oof.csv")
    classes = oof.columns[3:]
    predicted = classes[oof[classes].to_numpy().argmax(axis=1)]
    metrics = json.loads((cv_dir / "metrics.json").read_text())
    assert metrics["oof/f1_macro"] == pytest.approx(
        f1_score(oof.label, predicted, average="macro"), abs=1e-6)
    assert metrics["oof/acc"] == pytest.approx((oof.label == predicted).mean(), abs=1e-6)
    assert metrics["folds"] == FOLDS and metrics["failed"] == []


def test_cv_submission_is_the_mean_of_the_folds(cv_dir, demo_root):
    folds = [read_probs(cv_dir / str(k) / "test_probs.csv") for k in range(FOLDS)]
    mean = sum(f.iloc[:, 1:].to_numpy() for f in folds) / FOLDS
    submission = pd.read_csv(cv_dir / "submission.csv", dtype=str)
    sample = pd.read_csv(demo_root / "sample_submission.csv", dtype=str)
    assert list(submission.id) == list(sample.id)
    assert list(submission.label) == list(folds[0].columns[1:][mean.argmax(axis=1)])


def test_an_exported_cv_folder_predicts_as_the_mean_of_its_folds(cv_dir, demo_root, tmp_path):
    """make export of a cv folder keeps its folds together (members/0/<fold>), so the bundle
    alone predicts: the mean of the folds' test probabilities, as the folder's file."""
    logs = tmp_path / "logs"
    assert run_cli("podium.export", f"runs=[{cv_dir}]", "wheel=false",
                   f"paths.log_dir={logs}").returncode == 0
    [bundle] = list((logs / "export").iterdir())
    assert json.loads((bundle / "bundle.json").read_text())["members"] == ["members/0"]
    proc = run_cli("podium.predict", f"export={bundle}", f"data.root={demo_root}",
                   f"paths.log_dir={logs}")
    assert proc.returncode == 0, proc.stdout[-2000:]
    [predicted] = list((logs / "predict").iterdir())
    got = read_probs(predicted / "test_probs.csv").set_index("id")
    folds = [read_probs(cv_dir / str(k) / "test_probs.csv").set_index("id")
             for k in range(FOLDS)]
    mean = sum(f.loc[got.index, got.columns] for f in folds) / FOLDS
    assert np.allclose(got.to_numpy(), mean.to_numpy(), atol=1e-5)


def test_submit_with_tta_averages_flipped_predictions(cv_dir, tmp_path):
    from podium.build import build_datamodule, build_module
    from podium.submission.members import run_config

    run_cli("podium.submit", f"runs=[{cv_dir}]", "tta=hflip", "force=true",
            f"paths.log_dir={tmp_path}", f"paths.root_dir={ROOT}")
    [out] = list((tmp_path / "submit" / "ensemble").iterdir())
    got = read_probs(out / "test_probs.csv").iloc[:, 1:].to_numpy()

    expected = 0
    for k in range(FOLDS):  # reference: each fold's net on the images and their mirror
        fold = cv_dir / str(k)
        cfg = run_config(fold, json_paths())
        ckpt = torch.load(fold / "checkpoints/best.ckpt", map_location="cpu", weights_only=False)
        module = build_module(cfg, DataSpec.from_dict(ckpt["hyper_parameters"]["spec"]))
        module.load_state_dict(ckpt["state_dict"], strict=False)
        module.eval()
        data = build_datamodule(cfg)
        data.setup("predict")
        x = data.test_set.inputs
        with torch.no_grad():
            views = [module(x).softmax(1), module(torch.flip(x, dims=[-1])).softmax(1)]
        expected = expected + (views[0] + views[1]).numpy() / 2 / FOLDS
    assert np.allclose(got, expected, atol=1e-5)


def test_a_tta_view_that_hurts_is_refused_on_oof(cv_dir, tmp_path):
    """A view that scrambles the batch (each image gets another image's prediction) lowers
    the OOF score: it is left out, with the before/after in the summary, unless forced."""
    from podium.submission.ensemble import Options, submit_members
    from podium.submission.members import gather_members
    from podium.submission.postprocess import F1Offsets

    members = gather_members([cv_dir], json_paths())
    scramble = [lambda images: images.flip(0)]
    offsets = Options(postprocess=F1Offsets(1))
    refused = submit_members(members, tmp_path / "a", offsets, tta=scramble)
    assert refused.tta["used"] is False
    assert refused.tta["after_cross_fitted"] <= refused.tta["before"]
    assert refused.tta["view"] == "plain"  # fitted on every row, the plain view wins
    assert any(w.startswith("tta not used: cross-fitted OOF f1_macro") for w in refused.warnings)
    plain = read_probs(cv_dir / "test_probs.csv").iloc[:, 1:].to_numpy()
    # what was written is the plain ensemble (post-processed as learned on the plain OOF)
    no_tta = submit_members(members, tmp_path / "b", offsets)
    assert (tmp_path / "a" / "submission.csv").read_bytes() == \
        (tmp_path / "b" / "submission.csv").read_bytes()
    assert refused.postprocess["before"] == no_tta.postprocess["before"]
    assert refused.postprocess["before"] == pytest.approx(refused.tta["before"])
    forced = submit_members(members, tmp_path / "c", Options(force=True), tta=scramble)
    assert forced.tta["used"] is True
    assert not np.allclose(read_probs(tmp_path / "c" / "test_probs.csv").iloc[:, 1:], plain)


def test_postprocess_is_learned_on_the_oof_it_is_applied_with(cv_dir, tmp_path):
    """With TTA on, the offsets are learned on OOF predictions made with the same views:
    their 'before' score is the TTA OOF score, not the plain one."""
    from podium.submission.ensemble import Options, submit_members
    from podium.submission.members import gather_members
    from podium.submission.postprocess import F1Offsets

    members = gather_members([cv_dir], json_paths())
    mirror = [lambda images: images.flip(-1)]
    views = submit_members(members, tmp_path / "views", Options(force=True), tta=mirror)
    summary = submit_members(members, tmp_path, Options(postprocess=F1Offsets(1), force=True),
                             tta=mirror)
    assert summary.postprocess["before"] == pytest.approx(views.oof["oof/f1_macro"])
    assert summary.postprocess["after_in_sample"] >= summary.postprocess["before"]


def json_paths():
    from omegaconf import OmegaConf

    return OmegaConf.create({"root_dir": str(ROOT), "data_dir": str(ROOT / "data"),
                             "log_dir": str(ROOT / "logs"), "output_dir": "."})


def test_postprocess_reports_before_and_after(cv_dir, tmp_path):
    """Printed: the OOF score before, after in-sample (never lower), after cross-fitted on
    the cross-validation's folds, and whether the offsets are used (only when the
    cross-fitted score is higher)."""
    proc = run_cli("podium.submit", f"runs=[{cv_dir}]", "postprocess=f1_offsets",
                   f"paths.log_dir={tmp_path}", f"paths.root_dir={ROOT}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("f1_offsets"))
    match = re.search(rf"OOF f1_macro (\S+) -> (\S+) cross-fitted \(the OOF's {FOLDS} folds; "
                      r"± (\S+); (\S+) in-sample\) -> (used|not used)", line)
    before, cross_fitted, se, in_sample = (float(match[i]) for i in (1, 2, 3, 4))
    assert in_sample >= before
    assert (cross_fitted - before > se) == (match[5] == "used")


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 5))
def test_f1_offsets_never_lower_the_oof_score(seed, n_classes):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, 60)
    logp = np.log(rng.dirichlet(np.ones(n_classes), 60))
    offsets = f1_offsets(logp, y, rounds=1, grid=np.linspace(-1, 1, 9))
    assert label_score("f1_macro", y, (logp + offsets).argmax(1), n_classes) >= \
        label_score("f1_macro", y, logp.argmax(1), n_classes)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_macro_f1_equals_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    y, pred = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    expected = f1_score(y, pred, average="macro", labels=range(4), zero_division=0)
    assert label_score("f1_macro", y, pred, 4) == pytest.approx(expected)


def test_logit_adjust_learns_tau_on_oof():

    rng = np.random.default_rng(0)  # a model biased towards the head class "a"
    y = np.repeat([0, 1, 2], [60, 25, 15])
    probs = rng.dirichlet([1, 1, 1], len(y)) * 0.5
    probs[np.arange(len(y)), y] += 0.3
    probs[:, 0] += 0.35
    probs /= probs.sum(axis=1, keepdims=True)
    oof = pd.DataFrame(probs, columns=["a", "b", "c"]).assign(label=np.array(["a", "b", "c"])[y])
    adjust, report, warning = fit_postprocess(LogitAdjust(), oof, ["a", "b", "c"], "label")
    # reference: scikit-learn's macro-F1 at each tau of 0, 0.1 .. 2, the first best kept
    log_prior = np.log(np.bincount(y) / len(y))
    scores = {tau: f1_score(y, (np.log(probs) - tau * log_prior).argmax(1), average="macro")
              for tau in np.linspace(0, 2, 21)}
    best = max(scores, key=scores.get)
    assert report["tau"] == pytest.approx(best)
    assert scores[best] > scores[0.0]  # the head class's bias is undone
    assert report["before"] == pytest.approx(scores[0.0])
    assert report["after_in_sample"] == pytest.approx(scores[best])
    assert report["used"] and report["after_cross_fitted"] > report["before"] and not warning
    prior = np.bincount(y) / len(y)
    expected = np.log(probs) - report["tau"] * np.log(prior)
    assert np.allclose(np.log(adjust(probs)) - np.log(adjust(probs))[:, :1],
                       expected - expected[:, :1])


@pytest.mark.parametrize(("key", "value"), [("metric.competition", "logloss"),
                                            ("data.task", "binary"),
                                            ("data.root", "/elsewhere/comp")])
def test_members_of_different_competitions_are_refused_unless_forced(cv_dir, tmp_path, key,
                                                                      value):
    from omegaconf import OmegaConf

    from podium.errors import PodiumError
    from podium.submission.ensemble import submit_members
    from podium.submission.members import gather_members

    members = gather_members([cv_dir], json_paths())
    OmegaConf.update(members[1].cfg, key, value)
    shown = value if key != "data.root" else "/elsewhere/comp"
    with pytest.raises(PodiumError, match=f"{members[1].run} was trained with {key}={shown}, "
                                          f"{members[0].run} with {key}="):
        submit_members(members, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()  # nothing written
    if key != "data.task":  # a binary member of ten classes cannot be scored at all
        from podium.submission.ensemble import Options

        forced = submit_members(members, tmp_path / "forced", Options(force=True))
        assert any(f"{key}={shown}" in w and "force=true" in w for w in forced.warnings)
        assert (tmp_path / "forced" / "submission.csv").is_file()


def test_runs_of_different_competitions_cannot_be_averaged(tmp_path):
    from podium.errors import PodiumError
    from podium.submission.members import Member, Predictions
    from podium.submission.stack import stack

    a = pd.DataFrame({"id": ["1", "2"], "cat": [0.9, 0.2], "dog": [0.1, 0.8]})
    b = pd.DataFrame({"id": ["1", "2"], "cat": [0.5, 0.5], "emu": [0.5, 0.5]})
    two = [Member(tmp_path / "a", None, 3.0), Member(tmp_path / "b", None, 1.0)]
    with pytest.raises(PodiumError, match="trained on classes"):
        stack(two, [[Predictions(a, None), Predictions(b, None)]], "id", "label")
    other = a.assign(cat=[0.5, 0.0], dog=[0.5, 1.0])
    table = stack(two, [[Predictions(a, None), Predictions(other, None)]], "id", "label")
    mean = np.tensordot(table.weights, table.test[0], axes=1)
    assert mean[:, 0].tolist() == pytest.approx([(3 * 0.9 + 0.5) / 4, (3 * 0.2 + 0.0) / 4])


@pytest.fixture(scope="module")
def longtail_cv(tmp_path_factory, demo_root):
    """2 folds of balanced softmax under data.test_prior=uniform: probabilities that carry
    another prior than the OOF rows' class shares (podium.prior.score_prior)."""
    logs = tmp_path_factory.mktemp("logs")
    run_cli("podium.train", "-m", "task_name=cv", "experiment=baseline", "sweep_name=lt",
            "data.n_folds=2", "data.fold=range(0,2)", "debug=limit", "loss=balanced_softmax",
            "data.test_prior=uniform", "model.net.depth=8", "model.net.width=4",
            f"data.root={demo_root}", f"data.demo_root={demo_root}", f"paths.log_dir={logs}")
    [cv] = list((logs / "cv" / "lt").iterdir())
    return logs, cv


def test_cv_moves_each_fold_from_the_prior_it_carries_as_make_submit_does(longtail_cv):
    """The folds are moved to the test prior from their recorded score_prior, in make cv's
    gathering and in make submit of the same folder: one file, not two."""
    from podium.submission.members import gather_members

    logs, cv = longtail_cv
    paths = OmegaConf.create({"root_dir": ".", "log_dir": str(logs)})
    members = gather_members([cv], paths)
    for member in members:
        recorded = json.loads((member.run / "metrics.json").read_text())["score_prior"]
        assert member.score_prior == recorded
    run_cli("podium.submit", f"runs=[{cv}]", f"paths.log_dir={logs}")
    [again] = (logs / "submit").glob("*/*/submission.csv")
    assert again.read_text() == (cv / "submission.csv").read_text()
    moved = pd.read_csv(again.with_name("test_probs.csv"), dtype={"id": str})
    mine = pd.read_csv(cv / "test_probs.csv", dtype={"id": str})
    np.testing.assert_allclose(moved.iloc[:, 1:], mine.iloc[:, 1:], atol=1e-9)


def test_a_submit_folder_reused_as_a_member_keeps_its_recorded_prior(longtail_cv, demo_root):
    """make submit writes the prior its files carry (the test prior): a later ensemble
    moves them from it, not from their OOF rows' class shares."""
    from podium.submission.members import gather_members

    logs, _ = longtail_cv
    [folder] = [p.parent for p in (logs / "submit").glob("*/*/metrics.json")] or [None]
    if folder is None:  # the test above makes it; alone, make one
        _, cv = longtail_cv
        run_cli("podium.submit", f"runs=[{cv}]", f"paths.log_dir={logs}")
        [folder] = [p.parent for p in (logs / "submit").glob("*/*/metrics.json")]
    recorded = json.loads((folder / "metrics.json").read_text())["score_prior"]
    assert recorded == pytest.approx(dict.fromkeys(recorded, 1 / len(recorded)))
    paths = OmegaConf.create({"root_dir": ".", "log_dir": str(logs)})
    outside = OmegaConf.create({"data_root": str(demo_root), "metric": None})
    [member] = gather_members([folder], paths, external=outside)
    assert member.score_prior == recorded
