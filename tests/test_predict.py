"""Predicting another folder's test set (make predict), offline bundles (make export), safe
checkpoint loading, and submission formats scored like the leaderboard would."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import log_loss, roc_auc_score

from conftest import ROOT, make_cfg, run_cli
from podium.data.demo import build_tabular_demo

TINY = ["model.net.depth=8", "model.net.width=4", "trainer.max_epochs=3", "seed=3"]


def train_cli(tmp: Path, root: Path, *overrides: str) -> Path:
    """A real `python -m podium.train` run into tmp/run; returns the run folder."""
    run = tmp / "run"
    run_cli("podium.train", f"data.root={root}", f"data.demo_root={root}",
            f"paths.log_dir={tmp / 'logs'}", f"hydra.run.dir={run}", "print_config=false",
            *overrides)
    return run


def predict_cli(tmp: Path, *overrides: str, check: bool = True):
    return run_cli("podium.predict", f"paths.log_dir={tmp}", f"paths.root_dir={ROOT}",
                   *overrides, check=check)


def written(log_dir: Path, folders: str = "predict/*") -> list[Path]:
    return sorted(log_dir.glob(f"{folders}/submission*.csv"))


@pytest.fixture(scope="module")
def image_run(tmp_path_factory, demo_root):
    """A demo run trained on a copy of the demo whose training data is then deleted."""
    tmp = tmp_path_factory.mktemp("image")
    comp = tmp / "comp"
    shutil.copytree(demo_root, comp)
    run = train_cli(tmp, comp, *TINY)
    shutil.move(comp / "train", tmp / "train_images")  # gone from the competition folder
    (comp / "train.csv").unlink()
    return run, comp, tmp / "train_images"


def new_folder(tmp: Path, source: Path, ids: list[str], header: list[str] | None = None
               ) -> tuple[Path, dict[str, str]]:
    """A fresh competition folder with `source`'s test images under new ids (reversed
    order); returns it and new id -> old id."""
    folder = tmp / "new"
    (folder / "test").mkdir(parents=True)
    mapping = {}
    for n, old in enumerate(reversed(ids)):
        new = f"img_{n:04d}"
        shutil.copy(source / f"{old}.png", folder / "test" / f"{new}.png")
        mapping[new] = old
    frame = pd.DataFrame({"id": list(mapping)})
    for column in header or ["label"]:
        frame[column] = "zero" if header is None else 0.0
    frame.to_csv(folder / "sample_submission.csv", index=False)
    return folder, mapping


def test_predict_a_new_folder_without_the_training_data(image_run, tmp_path):
    run, comp, _ = image_run
    original = pd.read_csv(run / "submission.csv", dtype=str).set_index("id").label
    folder, mapping = new_folder(tmp_path, comp / "test", list(original.index[:40]))
    proc = predict_cli(tmp_path / "logs", f"runs=[{run}]", f"data.root={folder}")
    [path] = written(tmp_path / "logs")
    got = pd.read_csv(path, dtype=str)
    assert list(got.id) == list(mapping)  # the new sample submission's order
    assert got.label.tolist() == [original[mapping[i]] for i in got.id]
    assert f"member {run}: weight 1.000" in proc.stdout


def test_predict_from_an_exported_bundle_in_process(image_run, tmp_path):
    from podium.export import export
    from podium.predict import predict

    run, comp, _ = image_run
    original = pd.read_csv(run / "submission.csv", dtype=str).set_index("id").label
    folder, mapping = new_folder(tmp_path, comp / "test", list(original.index[-30:]))
    bundle = export(make_cfg(tmp_path / "e", [f"runs=[{run}]", "wheel=false"], "export"))
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["members"] == ["members/0"] and manifest["weights"] == [1.0]
    assert torch.load(bundle / "members/0/checkpoints/best.ckpt", weights_only=True).keys() \
        == {"state_dict", "hyper_parameters"}
    shutil.move(run, tmp_path / "moved")  # the bundle alone must do
    try:
        summary = predict(make_cfg(tmp_path / "p", [f"export={bundle}",
                                                    f"data.root={folder}"], "predict"))
    finally:
        shutil.move(tmp_path / "moved", run)
    got = pd.read_csv(summary.submission, dtype=str)
    assert got.label.tolist() == [original[mapping[i]] for i in got.id]


def test_an_exported_bundle_moves_to_the_test_prior_from_the_prior_its_run_carried(
        image_run, tmp_path):
    """make predict test_prior=uniform with a bundle only: each member's probabilities move
    from the score_prior its run recorded to the uniform prior (Bayes' rule by hand), then
    a learned shift (when its proof holds), on the run's own test probabilities."""
    from podium.export import export
    from podium.predict import predict

    run, comp, _ = image_run
    raw = pd.read_csv(run / "test_probs.csv", dtype={"id": str}).set_index("id")
    carried = json.loads((run / "metrics.json").read_text())["score_prior"]
    classes = list(raw.columns)
    folder, mapping = new_folder(tmp_path, comp / "test", list(raw.index[:40]))
    bundle = export(make_cfg(tmp_path / "e", [f"runs=[{run}]", "wheel=false"], "export"))
    summary = predict(make_cfg(tmp_path / "p", [f"export={bundle}", f"data.root={folder}",
                                                "test_prior=uniform"], "predict"))
    assert summary.test_prior["setting"] == "uniform"
    oof_labels = pd.read_csv(bundle / "members/0/oof.csv", dtype=str).label
    shares = oof_labels.value_counts(normalize=True).reindex(classes).to_numpy()
    tau = summary.postprocess["tau"] if summary.postprocess["used"] else 0.0
    probs = raw.loc[[mapping[i] for i in mapping], classes].to_numpy()
    logits = (np.log(probs) + np.log(0.1) - np.log([carried[c] for c in classes])
              - tau * np.log(shares))
    got = pd.read_csv(summary.submission, dtype=str)
    assert got.label.tolist() == [classes[i] for i in logits.argmax(1)]


def test_bundle_holds_an_installable_wheel_with_the_configs(image_run, tmp_path):
    from podium.export import export

    run, _, _ = image_run
    bundle = export(make_cfg(tmp_path, [f"runs=[{run}]"], "export"))
    [wheel] = bundle.glob("podium-*.whl")
    target = tmp_path / "site"
    proc = run_cli("pip", "install", "--no-index", "--no-deps", "--find-links", str(bundle),
                   "--target", str(target), "podium", cwd=tmp_path)
    assert proc.returncode == 0
    assert (target / "podium" / "predict.py").is_file()
    assert (target / "podium" / "conf" / "predict.yaml").is_file()
    pins = (bundle / "requirements.txt").read_text().splitlines()
    assert f"torch=={torch.__version__.split('+')[0]}" in pins


def test_top_k_submission_scores_like_the_validation_map(image_run, tmp_path):
    """The 'test' set is the validation split: a hand-written MAP@3 of the written file
    equals the run's own val/map@3."""
    run, _, train_images = image_run
    metrics = json.loads((run / "metrics.json").read_text())
    oof = pd.read_csv(run / "oof.csv", dtype=str)
    folder, mapping = new_folder(tmp_path, train_images, list(oof.id))
    predict_cli(tmp_path / "logs", f"runs=[{run}]", f"data.root={folder}",
                "submission.format=top_k")
    [path] = written(tmp_path / "logs")
    got = pd.read_csv(path, dtype=str)
    truth = oof.set_index("id").label
    scores = []
    for new_id, labels in zip(got.id, got.label, strict=True):
        ranked = labels.split(" ")
        assert len(ranked) == 3
        true = truth[mapping[new_id]]
        scores.append(1 / (ranked.index(true) + 1) if true in ranked else 0.0)
    assert np.mean(scores) == pytest.approx(metrics["val/map@3"], abs=1e-6)


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
    """demo_binary trained with val/auroc as the monitor."""
    tmp = tmp_path_factory.mktemp("binary")
    root = build_tabular_demo(tmp / "demo_binary", "binary")
    run = train_cli(tmp, root, "data=demo_binary", "trainer.max_epochs=3",
                    "metric.monitor=val/auroc")
    return run, root


def validation_folder(tmp: Path, run: Path, root: Path, header: list[str]) -> Path:
    """A tabular competition whose test rows are the run's validation rows."""
    oof = pd.read_csv(run / "oof.csv", dtype=str)
    train = pd.read_csv(root / "train.csv", dtype=str).set_index("id")
    folder = tmp / "valcomp"
    folder.mkdir()
    train.loc[oof.id].drop(columns="target").reset_index().to_csv(folder / "test.csv",
                                                                  index=False)
    pd.DataFrame({"id": oof.id, **{c: 0.5 for c in header}}).to_csv(
        folder / "sample_submission.csv", index=False)
    return folder


def test_binary_probability_file_scores_like_the_validation_auroc(binary_run, tmp_path):
    run, root = binary_run
    folder = validation_folder(tmp_path, run, root, ["target"])
    proc = predict_cli(tmp_path / "logs", f"runs=[{run}]", f"data.root={folder}")
    assert "submission format: probability (binary task scored by val/auroc)" in proc.stdout
    [path] = written(tmp_path / "logs")
    got = pd.read_csv(path, dtype={"id": str})
    truth = pd.read_csv(run / "oof.csv", dtype=str).set_index("id").target
    y = (truth[got.id] == "malignant").astype(int)  # the second sorted label is positive
    metrics = json.loads((run / "metrics.json").read_text())
    assert roc_auc_score(y, got.target) == pytest.approx(metrics["val/auroc"], abs=1e-5)


def test_class_probability_file_scores_like_the_validation_logloss(binary_run, tmp_path):
    run, root = binary_run
    folder = validation_folder(tmp_path, run, root, ["malignant", "benign"])  # shuffled
    predict_cli(tmp_path / "logs", f"runs=[{run}]", f"data.root={folder}")
    [path] = written(tmp_path / "logs")
    got = pd.read_csv(path, dtype={"id": str})
    assert list(got.columns) == ["id", "malignant", "benign"]
    truth = pd.read_csv(run / "oof.csv", dtype=str).set_index("id").target
    metrics = json.loads((run / "metrics.json").read_text())
    expected = log_loss(truth[got.id], got[["benign", "malignant"]].to_numpy(),
                        labels=["benign", "malignant"])
    assert expected == pytest.approx(metrics["val/logloss"], rel=1e-5)


def test_tabular_runs_predict_again_and_find_a_learning_rate(binary_run, tmp_path):
    """Both failed with `MLP.__init__() got an unexpected keyword argument 'in_chans'`."""
    run, root = binary_run
    moved = tmp_path / "run"
    shutil.copytree(run, moved)
    (moved / "test_probs.csv").unlink()  # make submit must predict with the checkpoint
    proc = run_cli("podium.submit", f"runs=[{moved}]", f"paths.log_dir={tmp_path / 'logs'}")
    [path] = written(tmp_path / "logs", "submit/*/*")
    first = pd.read_csv(run / "submission.csv", dtype={"id": str})
    assert np.allclose(pd.read_csv(path, dtype={"id": str}).target, first.target, atol=1e-6)
    assert "probability" in proc.stdout
    proc = run_cli("podium.lr_find", "data=demo_binary", f"data.root={root}",
                   f"data.demo_root={root}", f"paths.log_dir={tmp_path / 'logs'}",
                   "lr_find.num_training=8", "print_config=false")
    assert "suggested lr" in proc.stdout


# -- bad input: one line, nothing written -----------------------------------------------------
def test_a_checkpoint_that_runs_code_on_load_is_refused(tmp_path):
    from podium.errors import PodiumError
    from podium.submission.members import load_checkpoint

    marker = tmp_path / "was_run"

    class Payload:
        def __reduce__(self):
            return os.makedirs, (str(marker),)

    torch.save({"state_dict": {}, "hyper_parameters": Payload()}, tmp_path / "best.ckpt")
    with pytest.raises(PodiumError, match="not a plain podium checkpoint"):
        load_checkpoint(tmp_path / "best.ckpt")
    assert not marker.exists()


def test_bad_predict_inputs_are_one_line_and_write_nothing(image_run, tmp_path):
    run, comp, _ = image_run
    logs = tmp_path / "logs"
    no_ckpt = tmp_path / "no_ckpt"
    shutil.copytree(run / ".hydra", no_ckpt / ".hydra")
    folder, _ = new_folder(tmp_path, comp / "test", list(
        pd.read_csv(comp / "sample_submission.csv", dtype=str).id[:5]))
    cases = {
        "checkpoints/best.ckpt not found": [f"runs=[{no_ckpt}]", f"data.root={folder}"],
        "image(s) missing": [f"runs=[{run}]", f"data.root={tmp_path / 'missing'}"],
    }
    (tmp_path / "missing").mkdir()
    shutil.copy(folder / "sample_submission.csv", tmp_path / "missing")
    (tmp_path / "missing" / "test").mkdir()
    wrong = tmp_path / "wrong"
    shutil.copytree(folder, wrong)
    pd.DataFrame({"id": [f"img_{n:04d}" for n in range(5)], "zero": 0.1, "one": 0.9}).to_csv(
        wrong / "sample_submission.csv", index=False)
    cases["do not match the model's classes"] = [f"runs=[{run}]", f"data.root={wrong}"]
    cases["no competition folder to predict: give DATA="] = [f"runs=[{run}]", "data.root="]
    for message, args in cases.items():
        proc = predict_cli(logs, *args, check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and message in lines[-1], (message, proc.stderr[-500:])
        assert lines[-1].startswith("error: ")
    assert written(logs) == []
