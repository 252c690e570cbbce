"""Multi-label classification: label sets in (a column of sets or 0/1 columns), metrics equal
to scikit-learn's, iteratively stratified folds, thresholds learned on OOF, label-set or
per-label submissions, the rarest-label sampler, and the two-digit demo end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sklearn import metrics as sk
from sklearn.model_selection import KFold
from sklearn.preprocessing import MultiLabelBinarizer

from conftest import CONF, ROOT, make_cfg, run_cli
from podium.data.demo import build_multilabel_demo
from podium.data.labels import encode_target, encode_target_columns
from podium.data.samplers import RarestLabelSampler
from podium.data.splits import split_indices
from podium.errors import PodiumError
from podium.model.metrics import resolve_metric, task_metrics
from podium.submission.formats import make_submission, validate_submission, write_submission
from podium.submission.thresholds import fit_thresholds, multilabel_f1, shift_to_half
from podium.train import train

TINY = ["model.net.depth=8", "model.net.width=4", "++trainer.enable_progress_bar=false",
        "print_config=false"]


@pytest.fixture(scope="module")
def ml_root(tmp_path_factory) -> Path:
    return build_multilabel_demo(tmp_path_factory.mktemp("data") / "demo_multilabel")


def binarize(cells, classes) -> np.ndarray:
    """scikit-learn's MultiLabelBinarizer on space-separated cells (NaN = empty)."""
    sets = [str(c).split() if isinstance(c, str) else [] for c in cells]
    return MultiLabelBinarizer(classes=list(classes)).fit_transform(sets)


# -- targets --------------------------------------------------------------------------------
def test_label_sets_become_multi_hot_over_the_sorted_union():
    y, classes = encode_target(["b a", "", "c|a", "  b  "], "multilabel", Path("t.csv"), "tags",
                               sep=" ")
    assert classes == ["a", "b", "c|a"]
    assert y.dtype == np.float32 and y.tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 1], [0, 1, 0]]
    y, classes = encode_target(["b|a", "", "c| a"], "multilabel", Path("t.csv"), "tags", sep="|")
    assert classes == ["a", "b", "c"] and y.tolist() == [[1, 1, 0], [0, 0, 0], [1, 0, 1]]
    y, classes = encode_target(["10 2", "2"], "multilabel", Path("t.csv"), "tags")
    assert classes == ["2", "10"]  # numerically when every label is a number


def test_zero_one_columns_become_multi_hot():
    frame = pd.DataFrame({"id": ["1", "2", "3"], "rain": ["1", "0", "0"], "fog": ["1", "1", "0"]})
    y, classes = encode_target_columns(frame, ["rain", "fog"], Path("t.csv"))
    assert classes == ["fog", "rain"] and y.tolist() == [[1, 1], [1, 0], [0, 0]]


@pytest.mark.parametrize(("call", "needle"), [
    (lambda: encode_target(["", " "], "multilabel", Path("t.csv"), "tags"),
     "t.csv: column tags holds no label in any row"),
    (lambda: encode_target_columns(pd.DataFrame({"a": ["1", "2"]}), ["a"], Path("t.csv")),
     "t.csv: column a must hold 0 or 1 (data.target_cols), but row 2 holds '2'"),
    (lambda: encode_target_columns(pd.DataFrame({"a": ["0", "0"]}), ["a"], Path("t.csv")),
     "hold no 1 in any row"),
    (lambda: encode_target_columns(pd.DataFrame({"a": ["1"]}), ["a"], Path("t.csv"), "binary"),
     "data.target_cols needs data.task=multilabel"),
    (lambda: encode_target_columns(pd.DataFrame({"a b": ["1"]}), ["a b"], Path("t.csv")),
     "label 'a b' contains a space"),
])
def test_bad_targets_are_one_line(call, needle):
    with pytest.raises(PodiumError) as err:
        call()
    assert needle in str(err.value) and "\n" not in str(err.value)


# -- metrics --------------------------------------------------------------------------------
def test_metrics_equal_scikit_learn_on_random_predictions():
    rng = np.random.default_rng(0)
    probs = rng.random((300, 6)).astype(np.float32)
    y = (rng.random((300, 6)) < np.linspace(0.05, 0.6, 6)).astype(np.float32)
    y[:80] = probs[:80] > 0.5   # better than chance, so the scores differ
    y[80:90], probs[80:90] = 0, 0.1  # rows with no label, none predicted: samples-F1 = 1
    metrics = task_metrics("multilabel", 6)
    for rows in np.array_split(np.arange(300), 4):  # accumulated over batches
        metrics.update(torch.from_numpy(probs[rows]), torch.from_numpy(y[rows]))
    got = {k: float(v) for k, v in metrics.compute().items()}
    pred = (probs > 0.5).astype(int)
    expected = {
        "f1_micro": sk.f1_score(y, pred, average="micro"),
        "f1_macro": sk.f1_score(y, pred, average="macro"),
        "f1_samples": sk.f1_score(y, pred, average="samples", zero_division=1),
        "map": sk.average_precision_score(y, probs, average="macro"),
        "hamming_loss": sk.hamming_loss(y, pred),
        "subset_acc": sk.accuracy_score(y, pred),
    }
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-5), name
    assert len({round(v, 4) for v in got.values()}) == len(got)  # no metric took another's


def test_default_monitor_and_modes(tmp_path):
    cfg = make_cfg(tmp_path, ["data=demo_multilabel"])
    assert (cfg.metric.monitor, cfg.metric.mode) == ("val/f1_micro", "max")
    cfg = make_cfg(tmp_path, ["data=demo_multilabel", "metric.monitor=val/hamming_loss"])
    assert resolve_metric(cfg).metric.mode == "min"


# -- folds ----------------------------------------------------------------------------------
def fold_positives(y: np.ndarray, folds) -> np.ndarray:
    """|a fold's positives of a label - the label's total / k|, every fold and label."""
    return np.array([np.abs(y[val].sum(0) - y.sum(0) / len(folds)) for _, val in folds])


def test_folds_keep_every_labels_frequency(ml_root):
    """Tolerance: every fold holds each label's positives within 1 of its share (total / k);
    a plain shuffled KFold misses by up to 12 on the demo."""
    train = pd.read_csv(ml_root / "train.csv", dtype=str, keep_default_na=False)
    y, classes = encode_target(train["labels"].tolist(), "multilabel", Path("t"), "labels")
    folds = [split_indices(y, classes, 0.2, 42, 5, k) for k in range(5)]
    assert sorted(np.concatenate([val for _, val in folds]).tolist()) == list(range(len(y)))
    for train_idx, val_idx in folds:
        assert not set(train_idx) & set(val_idx) and len(train_idx) + len(val_idx) == len(y)
    assert fold_positives(y, folds).max() <= 1.0 + 1e-6
    plain = list(KFold(5, shuffle=True, random_state=42).split(y))
    assert fold_positives(y, plain).max() > 3
    again = split_indices(y, classes, 0.2, 42, 5, 3)  # each fold process gets the same fold
    assert np.array_equal(again[1], folds[3][1])
    train_idx, val_idx = split_indices(y, classes, 0.2, 42)  # the hold-out: about 20 %
    assert abs(len(val_idx) - 0.2 * len(y)) <= 4 and len(train_idx) + len(val_idx) == len(y)
    assert np.abs(y[val_idx].sum(0) - 0.2 * y.sum(0)).max() <= 1.0


# -- thresholds -----------------------------------------------------------------------------
@pytest.mark.parametrize("average", ["f1_micro", "f1_macro", "f1_samples"])
def test_multilabel_f1_equals_scikit_learn(average):
    rng = np.random.default_rng(1)
    y, pred = rng.random((50, 4)) < 0.3, rng.random((50, 4)) < 0.3
    y[:5], pred[:5] = False, False
    expected = sk.f1_score(y, pred, average=average[3:], zero_division=1 if average ==
                           "f1_samples" else 0)
    assert multilabel_f1(y, pred, average) == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("average", ["f1_micro", "f1_macro", "f1_samples"])
@pytest.mark.parametrize("per_class", [True, False])
def test_thresholds_never_lower_the_oof_score(seed, average, per_class):
    rng = np.random.default_rng(seed)
    y = rng.random((120, 5)) < rng.uniform(0.05, 0.5, 5)
    probs = np.clip(0.5 * y + rng.normal(0.1, 0.25, y.shape) * rng.uniform(0.2, 2, 5), 0, 1)
    thresholds = fit_thresholds(probs, y, average, per_class)
    before = sk.f1_score(y, probs > 0.5, average=average[3:], zero_division=1 if average ==
                         "f1_samples" else 0)
    after = sk.f1_score(y, shift_to_half(probs, thresholds) > 0.5, average=average[3:],
                        zero_division=1 if average == "f1_samples" else 0)
    assert after >= before - 1e-12
    assert per_class or len(set(thresholds)) == 1


def test_thresholds_find_a_miscalibrated_label():
    """Label 1's probabilities are squeezed below 0.5: its best threshold is near 0.2."""
    rng = np.random.default_rng(0)
    y = rng.random((400, 2)) < 0.4
    probs = np.where(y, 0.8, 0.2) + rng.normal(0, 0.05, y.shape)
    probs[:, 1] *= 0.4  # positives ~0.32, negatives ~0.08: all below 0.5
    thresholds = fit_thresholds(probs, y, "f1_macro")
    assert thresholds[0] == 0.5 and 0.1 < thresholds[1] < 0.3
    assert multilabel_f1(y, probs > thresholds, "f1_macro") == 1.0


def test_shift_to_half_applies_the_thresholds():
    probs = np.random.default_rng(0).random((200, 3))
    thresholds = np.array([0.2, 0.5, 0.77])
    shifted = shift_to_half(probs, thresholds)
    assert np.array_equal(shifted > 0.5, probs > thresholds)
    order = np.argsort(probs, axis=0)  # the ranking (AUC, AP) is unchanged
    assert np.array_equal(np.argsort(shifted, axis=0), order)


# -- submission -----------------------------------------------------------------------------
CLASSES = ["cloudy", "haze", "rain"]
PROBS = np.array([[0.9, 0.1, 0.6], [0.2, 0.3, 0.1], [0.4, 0.7, 0.2]])
IDS = ["b", "a", "c"]


def test_label_sets_in_class_order_and_an_empty_cell(tmp_path):
    sample = pd.DataFrame({"id": IDS, "tags": ["haze"] * 3})
    path = write_submission(tmp_path, sample, IDS, PROBS, CLASSES, "id", "multilabel")
    written = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert written.to_dict("list") == {"id": IDS, "tags": ["cloudy rain", "", "haze"]}
    assert (path.read_text().splitlines()[2]) == "a,"


@pytest.mark.parametrize(("placeholder", "expected"), [
    ("0", [[1, 0, 1], [0, 0, 0], [0, 1, 0]]),   # 0/1 columns: the decisions
    ("0.5", PROBS.tolist()),                    # probability columns: the probabilities
])
def test_one_column_per_label_follows_the_sample(placeholder, expected):
    sample = pd.DataFrame({"id": IDS, "rain": placeholder, "cloudy": placeholder,
                           "haze": placeholder})
    sub = make_submission(sample, IDS, PROBS, CLASSES, "id", "multilabel")
    validate_submission(sub, sample, CLASSES, "id", "multilabel")
    assert list(sub.columns) == ["id", "rain", "cloudy", "haze"]
    assert np.allclose(sub[CLASSES].to_numpy(dtype=float), expected)


@pytest.mark.parametrize(("sample", "needle"), [
    (pd.DataFrame({"id": IDS, "cloudy": "0", "haze": "0", "snow": "0"}),
     "sample submission column 'snow' is not a label the model knows"),
    (pd.DataFrame({"id": IDS, "cloudy": "0", "haze": "0"}), "no column for 'rain'"),
])
def test_a_sample_with_unknown_labels_is_one_line_and_writes_nothing(tmp_path, sample, needle):
    with pytest.raises(PodiumError) as err:
        write_submission(tmp_path, sample, IDS, PROBS, CLASSES, "id", "multilabel")
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_validation_rejects_unknown_labels_and_bad_values():
    sample = pd.DataFrame({"id": IDS, "tags": ""})
    sub = make_submission(sample, IDS, PROBS, CLASSES, "id", "multilabel")
    with pytest.raises(PodiumError, match=r"labels not seen in training: \['snow'\]"):
        validate_submission(sub.assign(tags=["haze snow", "", "rain"]), sample, CLASSES, "id",
                            "multilabel")
    per_label = pd.DataFrame({"id": IDS, "cloudy": "0", "haze": "0", "rain": "0"})
    sub = make_submission(per_label, IDS, PROBS, CLASSES, "id", "multilabel")
    with pytest.raises(PodiumError, match=r"outside \{0, 1\}"):
        validate_submission(sub.assign(haze=[0, 2, 1]), per_label, CLASSES, "id", "multilabel")


# -- sampler --------------------------------------------------------------------------------
def test_rarest_label_sampler_weights_and_frequencies():
    # label counts: a=4, b=2, c=1; row 5 has no label (the empty set counts once)
    labels = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 0, 1], [1, 1, 0], [0, 0, 0]]).float()
    sampler = RarestLabelSampler(labels, power=1.0, num_samples=70_000, seed=3)
    weights = np.array([1 / 4, 1 / 2, 1 / 1, 1 / 2, 1 / 1])  # 1 / rarest label's count
    assert sampler.weights.numpy() == pytest.approx(weights)
    frequency = np.bincount(list(sampler), minlength=5) / 70_000
    assert frequency == pytest.approx(weights / weights.sum(), abs=0.01)
    sampler.set_epoch(4)
    first = list(sampler)
    sampler.set_epoch(4)
    assert list(sampler) == first and list(sampler) != first  # epoch 4 again, then epoch 5


def test_rarest_label_sampler_on_class_indices_is_class_balanced():
    labels = torch.tensor([0] * 90 + [1] * 9 + [2] * 1)
    drawn = np.array(list(RarestLabelSampler(labels, num_samples=30_000, seed=0)))
    assert np.bincount(labels[drawn].numpy(), minlength=3) / 30_000 == pytest.approx(
        [1 / 3] * 3, abs=0.015)


def test_sampler_config_and_a_multiclass_sampler_on_multilabel_data(tmp_path, ml_root):
    factory = instantiate(OmegaConf.load(CONF / "sampler" / "rarest_label.yaml"))
    assert isinstance(factory(labels=torch.eye(3), seed=0), RarestLabelSampler)
    cfg = make_cfg(tmp_path, ["data=demo_multilabel", f"data.root={ml_root}", "sampler=balanced"])
    with pytest.raises(PodiumError, match="use sampler=rarest_label"):
        train(cfg)


# -- the demo and whole runs ----------------------------------------------------------------
def test_demo_folder(ml_root):
    train_csv = pd.read_csv(ml_root / "train.csv", dtype=str, keep_default_na=False)
    answers = pd.read_csv(ml_root / "answers.csv", dtype=str, keep_default_na=False)
    sample = pd.read_csv(ml_root / "sample_submission.csv", dtype=str)
    assert list(train_csv.columns) == list(sample.columns) == ["id", "labels"]
    assert list(sample.id) == list(answers.id) and not set(sample.id) & set(train_csv.id)
    from PIL import Image

    assert np.asarray(Image.open(ml_root / "train" / f"{train_csv.id[0]}.png")).shape == (8, 16)
    sizes = train_csv["labels"].str.split().str.len()
    assert set(sizes) == {0, 1, 2} and (sizes == 0).sum() >= 3  # empty label sets exist
    counts = train_csv["labels"].str.split().explode().value_counts()
    assert len(counts) == 10 and counts.max() >= 5 * counts.min()  # long-tailed labels


def test_demo_end_to_end(tmp_path, ml_root, capsys):
    """No loss= given: data.task=multilabel trains with BCE and says so in one line."""
    cfg = make_cfg(tmp_path, ["data=demo_multilabel", f"data.root={ml_root}",
                              f"data.demo_root={ml_root}", "trainer.max_epochs=3", *TINY],
                   resolve=False)
    assert "loss" not in cfg
    metrics = train(cfg).metrics
    said = capsys.readouterr().out.splitlines()
    assert "loss: bce (data.task=multilabel's default; choose with loss=...)" in said
    assert cfg.loss._target_ == "podium.losses.multilabel.MultilabelBCE"
    run = tmp_path / "run"
    assert {"val/f1_micro", "val/f1_macro", "val/f1_samples", "val/map", "val/hamming_loss",
            "val/subset_acc"} <= set(metrics)
    submission = pd.read_csv(run / "submission.csv", dtype=str, keep_default_na=False)
    answers = pd.read_csv(ml_root / "answers.csv", dtype=str, keep_default_na=False)
    classes = sorted(pd.read_csv(run / "test_probs.csv").columns[1:])
    assert list(submission.id) == list(answers.id)
    assert set(submission["labels"].str.split().explode().dropna()) <= set(classes)
    expected = sk.f1_score(binarize(answers["labels"], classes),
                           binarize(submission["labels"], classes), average="micro")
    assert metrics["leaderboard/f1_micro"] == pytest.approx(expected)
    # oof.csv: the true label sets of the validation split, and the per-label report
    oof = pd.read_csv(run / "oof.csv", dtype={"id": str, "labels": str})
    truth = pd.read_csv(ml_root / "train.csv", dtype=str, keep_default_na=False).set_index("id")
    assert (oof["labels"].fillna("") == truth.loc[oof.id, "labels"].to_numpy()).all()
    probs = oof[classes].to_numpy()
    y = binarize(oof["labels"], classes)
    assert metrics["val/f1_micro"] == pytest.approx(
        sk.f1_score(y, probs > 0.5, average="micro"), abs=1e-5)
    # the validation loss is torch's binary cross-entropy of those probabilities
    bce = torch.nn.functional.binary_cross_entropy(torch.tensor(probs), torch.tensor(y * 1.0))
    assert metrics["val/loss"] == pytest.approx(float(bce), rel=1e-2)
    table = pd.read_csv(run / "report/per_class.csv")
    assert table.support.tolist() == y.sum(0).tolist()
    assert table.f1.to_numpy() == pytest.approx(sk.f1_score(y, probs > 0.5, average=None))


def test_tabular_zero_one_columns_with_a_per_label_submission(tmp_path):
    root = tmp_path / "comp"
    root.mkdir()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(120)], "f0": x[:, 0], "f1": x[:, 1],
                          "f2": x[:, 2], "hot": (x[:, 0] > 0).astype(int),
                          "wet": (x[:, 1] > 0.5).astype(int)})
    frame[:100].to_csv(root / "train.csv", index=False)
    frame[100:][["id", "f0", "f1", "f2"]].to_csv(root / "test.csv", index=False)
    frame[100:][["id"]].assign(wet=0, hot=0).to_csv(root / "sample_submission.csv", index=False)
    cfg = make_cfg(tmp_path, ["data=tabular", "model=mlp", "loss=bce", f"data.root={root}",
                              "data.task=multilabel", "data.target_cols=[hot,wet]",
                              "trainer.max_epochs=2", *TINY[2:]])
    train(cfg)
    submission = pd.read_csv(tmp_path / "run" / "submission.csv", dtype=str)
    assert list(submission.columns) == ["id", "wet", "hot"]
    assert set(submission.wet) | set(submission.hot) <= {"0", "1"}


def test_a_multiclass_loss_on_multilabel_data_is_one_line_and_writes_nothing(tmp_path, ml_root):
    proc = run_cli("podium.train", "data=demo_multilabel", "loss=focal", f"data.root={ml_root}",
                   f"paths.log_dir={tmp_path}", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: loss podium.losses.multiclass.FocalLoss (tasks: multiclass, binary) does not fit "
        "data.task=multilabel: use loss=bce, asymmetric, focal_bce or soft_f1_multilabel")
    assert not list(tmp_path.rglob("*.csv")) and not list(tmp_path.rglob("*.ckpt"))


def test_an_empty_target_column_is_one_line_and_writes_nothing(tmp_path, ml_root):
    root = tmp_path / "comp"
    root.mkdir()
    (root / "train").symlink_to(ml_root / "train")
    (root / "test").symlink_to(ml_root / "test")
    train_csv = pd.read_csv(ml_root / "train.csv", dtype=str)
    train_csv.assign(labels="").to_csv(root / "train.csv", index=False)
    (root / "sample_submission.csv").write_text((ml_root / "sample_submission.csv").read_text())
    logs = tmp_path / "logs"
    proc = run_cli("podium.train", "data=demo_multilabel", f"data.root={root}",
                   f"paths.log_dir={logs}", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {root}/train.csv: column labels holds no label in any row; set "
        f"data.target_col (or data.target_cols) to the label column(s)")
    assert not list(logs.rglob("*.csv")) and not list(logs.rglob("*.ckpt"))


@pytest.fixture(scope="module")
def cv_dir(tmp_path_factory, ml_root):
    """`make cv FOLDS=2 ARGS="data=demo_multilabel ..."` on a tiny budget."""
    logs = tmp_path_factory.mktemp("logs")
    run_cli("podium.train", "-m", "task_name=cv", "experiment=baseline", "sweep_name=baseline",
            "data=demo_multilabel", "data.n_folds=2", "data.fold=range(0,2)", "debug=limit",
            f"data.root={ml_root}", f"data.demo_root={ml_root}", f"paths.log_dir={logs}", *TINY)
    [cv] = list((logs / "cv" / "baseline").iterdir())
    return cv


def test_cv_oof_scores_equal_scikit_learn(cv_dir, ml_root):
    oof = pd.read_csv(cv_dir / "oof.csv", dtype={"id": str, "labels": str})
    train_csv = pd.read_csv(ml_root / "train.csv", dtype=str, keep_default_na=False)
    assert sorted(oof.id) == sorted(train_csv.id)
    classes = list(oof.columns[3:])
    y, probs = binarize(oof["labels"], classes), oof[classes].to_numpy()
    metrics = json.loads((cv_dir / "metrics.json").read_text())
    assert metrics["oof/f1_micro"] == pytest.approx(
        sk.f1_score(y, probs > 0.5, average="micro"), abs=1e-5)
    assert metrics["oof/map"] == pytest.approx(
        sk.average_precision_score(y, probs, average="macro"), abs=1e-5)
    assert (cv_dir / "submission.csv").is_file()


def test_submit_with_thresholds_is_judged_cross_fitted(cv_dir, tmp_path):
    """In-sample the thresholds never lower the OOF score; they reach the file only when
    their cross-fitted score (fitted on one fold, scored on the other) is higher."""
    proc = run_cli("podium.submit", f"runs=[{cv_dir}]", "postprocess=thresholds",
                   f"paths.log_dir={tmp_path}", f"paths.root_dir={ROOT}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("thresholds"))
    match = re.search(r"OOF f1_micro (\S+) -> (\S+) cross-fitted \(the OOF's 2 folds; ± (\S+); "
                      r"(\S+) in-sample\)", line)
    before, in_sample = float(match[1]), float(match[4])
    assert in_sample >= before
    [summary] = list(tmp_path.rglob("metrics.json"))
    saved = json.loads(summary.read_text())
    report = saved["postprocess"]
    oof = pd.read_csv(cv_dir / "oof.csv", dtype={"id": str, "labels": str})
    classes = list(oof.columns[3:])
    y, probs = binarize(oof["labels"], classes), oof[classes].to_numpy()
    learned = np.array([report["thresholds"][c] for c in classes])
    assert report["after_in_sample"] == pytest.approx(
        sk.f1_score(y, probs > learned, average="micro"))
    assert report["before"] == pytest.approx(sk.f1_score(y, probs > 0.5, average="micro"))
    assert report["used"] == (report["after_cross_fitted"] - report["before"] > report["se"])
    if saved["metric"] == "f1_micro":
        assert saved["oof_score_submitted"] == pytest.approx(
            report["after_cross_fitted"] if report["used"] else report["before"])
    submission = pd.read_csv(summary.parent / "submission.csv", dtype=str, keep_default_na=False)
    test_probs = pd.read_csv(cv_dir / "test_probs.csv", dtype={"id": str})
    expected = binarize(submission["labels"], classes)
    applied = learned if report["used"] else 0.5
    assert np.array_equal(expected, test_probs[classes].to_numpy() > applied)
