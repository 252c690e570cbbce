"""Honest estimates for every learned step of the chain: the chain is cross-fitted on the
OOF rows (fitted on k-1 parts, scored on the k-th) and a step is used only when it gains
more than one paired bootstrap standard error. All in-process, on synthetic OOF rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from sklearn import metrics as sk
from sklearn.model_selection import StratifiedKFold

from podium.submission.crossfit import make_parts
from podium.submission.postprocess import F1Offsets
from podium.submission.steps import Adjust, Cut, LabelCuts, Scoring, Slot, choose
from podium.submission.summary import not_used_line
from podium.submission.thresholds import best_threshold


def judged(slot: Slot, probs, y, scoring: Scoring, parts):
    """(the chain fitted on every row, the step's report, its warning): one slot."""
    chosen = choose([slot], probs, y, scoring, parts)
    report = chosen.reports[slot.learned.name]
    return chosen, report, not_used_line(report)


def within_se(report: dict) -> str:
    gain = report["after_cross_fitted"] - report["before"]
    gain = -gain if report["metric"] in ("logloss", "mae", "rmse") else gain
    return (f"{report['name']} not used: cross-fitted OOF {report['metric']} "
            f"{report['before']:.4f} -> {report['after_cross_fitted']:.4f}, a gain of "
            f"{gain:+.4f}, not above 1.645 standard errors ({report['se']:.4f} each)")


# -- the binary decision threshold ----------------------------------------------------------
def binary_noise(seed: int, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Labels independent of p, every p below 0.5: 'all negative' (0.5's decision) is the
    best rule there is; any other threshold fits noise."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.45).astype(int)
    p = rng.uniform(0.05, 0.45, n)
    return np.c_[1 - p, p], y


def binary_shift(seed: int = 0, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """A real shift: positives score about 0.35, negatives about 0.15."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.5).astype(int)
    p = np.where(y == 1, rng.normal(0.35, 0.05, n), rng.normal(0.15, 0.05, n)).clip(0.01, 0.99)
    return np.c_[1 - p, p], y


def threshold_report(probs, y, oof=None):
    """(the cut used, the report, the warning)."""
    oof = pd.DataFrame({"label": y}) if oof is None else oof
    chosen, report, warning = judged(Slot(Cut(), Cut(learn=True)), probs, y,
                                     Scoring("acc", "binary", 2), make_parts(oof, y))
    return chosen.fitted[0].cut, report, warning


def test_a_threshold_fitted_on_noise_is_not_used_and_says_why():
    probs, y = binary_noise(0)
    cut, report, warning = threshold_report(probs, y)
    plain = sk.accuracy_score(y, probs[:, 1] >= 0.5)
    assert report["before"] == pytest.approx(plain)
    assert report["after_in_sample"] > report["before"]  # in-sample it "helps"
    assert report["after_cross_fitted"] <= report["before"]
    assert cut == 0.5 and report["used"] is False and report["threshold"] != 0.5
    assert warning == within_se(report)
    # not one lucky seed: the in-sample gain is there almost always, the check never passes
    reports = [threshold_report(*binary_noise(seed))[1] for seed in range(10)]
    assert sum(r["after_in_sample"] > r["before"] for r in reports) >= 6
    assert sum(r["used"] for r in reports) <= 1


def test_a_real_shift_keeps_the_threshold_and_matches_a_scikit_learn_reference():
    probs, y = binary_shift()
    cut, report, warning = threshold_report(probs, y)
    assert warning is None and report["used"] is True and cut == report["threshold"]
    assert 0.2 < cut < 0.3
    assert report["after_cross_fitted"] > report["before"] + 0.3
    # reference: the seeded stratified 5-fold, each part cut where its other parts say
    pooled = np.zeros(len(y), dtype=int)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    for fit, held in folds.split(probs, y):
        t = best_threshold(probs[fit, 1], y[fit], "acc")["threshold"]
        pooled[held] = probs[held, 1] >= t
    assert report["after_cross_fitted"] == pytest.approx(sk.accuracy_score(y, pooled))
    assert report["after_in_sample"] == pytest.approx(sk.accuracy_score(y, probs[:, 1] >= cut))


def test_the_oofs_own_folds_are_the_parts():
    probs, y = binary_shift(1, 240)
    fold = np.random.default_rng(2).permutation(np.arange(240) % 4)
    oof = pd.DataFrame({"fold": fold, "label": y})
    parts = make_parts(oof, y)
    assert parts.how == "the OOF's 4 folds"
    assert sorted(np.concatenate(parts.held_out).tolist()) == list(range(240))
    _, report, _ = threshold_report(probs, y, oof)
    pooled = np.zeros(len(y), dtype=int)
    for k in range(4):  # reference: each fold cut where the other three folds say
        t = best_threshold(probs[fold != k, 1], y[fold != k], "acc")["threshold"]
        pooled[fold == k] = probs[fold == k, 1] >= t
    assert report["after_cross_fitted"] == pytest.approx(sk.accuracy_score(y, pooled))
    assert report["cross_fitted_on"] == "the OOF's 4 folds"
    # one fold only (a training run's validation split): a seeded stratified k-fold
    assert make_parts(oof.assign(fold=0), y).how == "a seeded stratified 5-fold of the rows"


def test_tiny_data_uses_fewer_parts_or_none():
    y = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    assert len(make_parts(pd.DataFrame({"l": y}), y).held_out) == 3  # the rarest class: 3
    y = np.array([0, 1, 1])
    cut, report, warning = threshold_report(np.c_[[0.9, 0.4, 0.45], [0.1, 0.6, 0.55]], y)
    assert cut == 0.5 and "after_cross_fitted" not in report
    assert warning == "threshold not used: 3 rows: too few to cross-fit"


# -- f1_offsets -----------------------------------------------------------------------------
def offsets_noise(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Labels independent of p, class 'a' (60 %) always on top: argmax is the best rule
    for accuracy, every offset fits noise."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, n, p=[0.6, 0.25, 0.15])
    probs = rng.dirichlet([1, 1, 1], n) * 0.4
    probs[:, 0] += 0.6
    return probs, y


def offsets_report(probs, y, metric="acc"):
    slot = Slot(Adjust(), Adjust(F1Offsets(), ["a", "b", "c"], name="f1_offsets"))
    return judged(slot, probs, y, Scoring(metric, "multiclass", 3),
                  make_parts(pd.DataFrame({"label": y}), y))


def test_offsets_fitted_on_noise_are_not_used():
    reports = [offsets_report(*offsets_noise(seed))[1:] for seed in range(20)]
    overfit = [(r, w) for r, w in reports if r["after_in_sample"] > r["before"]]
    assert len(overfit) >= 3 and sum(r["used"] for r, _ in reports) <= 1
    report, warning = next((r, w) for r, w in overfit if not r["used"])
    assert warning == within_se(report)
    probs, y = offsets_noise(reports.index((report, warning)))
    chosen = offsets_report(probs, y)[0]
    assert np.array_equal(chosen.fitted[0].apply(probs), probs)  # the plain prediction


def test_offsets_for_an_under_predicted_class_are_used():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    probs = rng.dirichlet([1, 1, 1], 300) * 0.5
    probs[np.arange(300), y] += 0.5
    probs[:, 2] *= 0.3  # class 'c' rarely wins the argmax
    probs /= probs.sum(1, keepdims=True)
    chosen, report, warning = offsets_report(probs, y, "f1_macro")
    assert warning is None and report["used"] is True
    assert report["after_cross_fitted"] > report["before"] + 0.1
    assert report["offsets"]["c"] > report["offsets"]["a"]
    adjusted = chosen.fitted[0].apply(probs)
    assert (adjusted.argmax(1) == 2).sum() > (probs.argmax(1) == 2).sum()


# -- multi-label thresholds ------------------------------------------------------------------
LABELS = ["a", "b", "c", "d"]


def sets_frame(probs: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    cells = [" ".join(np.array(LABELS)[row]) for row in y]
    return pd.DataFrame(probs, columns=LABELS).assign(labels=cells)


def multilabel_noise(seed: int, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Labels independent of p, every p above 0.5: predicting every label (0.5's decision)
    is the best micro-F1 there is; higher thresholds fit noise."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.55, 0.95, (n, 4)), rng.random((n, 4)) < 0.3


def ml_report(probs, y):
    """(the chain fitted on every row, the report, the warning): multi-label thresholds."""
    return judged(Slot(Adjust(), LabelCuts("f1_micro", True, LABELS)), probs, y,
                  Scoring("f1_micro", "multilabel", 4), make_parts(sets_frame(probs, y), y))


def test_multilabel_thresholds_fitted_on_noise_are_not_used():
    chosen, report, warning = ml_report(*multilabel_noise(0))
    assert report["after_in_sample"] > report["before"] and report["used"] is False
    assert warning == within_se(report)
    probs = multilabel_noise(0)[0]
    assert np.array_equal(chosen.fitted[0].apply(probs), probs)
    reports = [ml_report(*multilabel_noise(seed))[1] for seed in range(20)]
    assert sum(r["used"] for r in reports) <= 1


def test_multilabel_thresholds_for_a_miscalibrated_label_are_used():
    rng = np.random.default_rng(0)
    y = rng.random((300, 4)) < 0.4
    probs = np.where(y, 0.8, 0.2) + rng.normal(0, 0.1, y.shape)
    probs[:, 3] *= 0.4  # label d: positives about 0.32, all below 0.5
    _, report, warning = ml_report(probs.clip(0.01, 0.99), y)
    assert warning is None and report["used"] is True
    assert report["after_cross_fitted"] > report["before"] + 0.05
    assert 0.1 < report["thresholds"]["d"] < 0.3


# -- the noise model: no step is kept on pure noise ------------------------------------------
def noise_slots(seed: int):
    """Per step: (its slots, the OOF rows, the truth, the scoring) where the plain chain is
    already the best rule there is and the labels are independent of everything a step
    could learn from: a threshold, offsets or a logit adjustment only fit noise; two
    exchangeable noise members are best averaged equally (log-loss); tta views that add
    noise to the plain view carry nothing more."""
    from podium.submission.postprocess import LogitAdjust
    from podium.submission.steps import Blend, Views

    rng = np.random.default_rng(seed)
    probs3, y3 = offsets_noise(seed)
    acc3 = Scoring("acc", "multiclass", 3)
    one = np.array([1.0])
    noisy = (probs3 + rng.dirichlet([1, 1, 1], len(y3)) * 0.3) / 1.3
    members = np.stack([rng.dirichlet([2, 2], 200), rng.dirichlet([2, 2], 200)])
    return {
        "threshold": (Slot(Cut(), Cut(learn=True)), *binary_noise(seed),
                      Scoring("acc", "binary", 2)),
        "f1_offsets": (Slot(Adjust(), Adjust(F1Offsets(), "abc", name="f1_offsets")),
                       probs3, y3, acc3),
        "logit_adjust": (Slot(Adjust(), Adjust(LogitAdjust(), "abc", name="logit_adjust")),
                         probs3, y3, acc3),
        "blend": (Slot(Blend(np.array([0.5, 0.5])), Blend(np.array([0.5, 0.5]), learn=True)),
                  members, (rng.random(200) < 0.5).astype(int),
                  Scoring("logloss", "binary", 2)),
        "tta": ([Slot(Views(one), Views(one, learn=True)), Slot(Blend(one))],
                np.stack([probs3[None], noisy[None]]), y3, acc3),
    }


def test_no_step_is_kept_on_pure_noise_in_19_of_20_seeds():
    kept = dict.fromkeys(noise_slots(0), 0)
    for seed in range(20):
        for name, (slots, x, y, scoring) in noise_slots(seed).items():
            slots = slots if isinstance(slots, list) else [slots]
            chosen = choose(slots, x, y, scoring, make_parts(pd.DataFrame({"label": y}), y))
            kept[name] += chosen.reports[slots[0].learned.name]["used"]
    assert all(count <= 1 for count in kept.values()), kept


# -- the summary and the file ---------------------------------------------------------------
def write(tmp_path, probs, y, postprocess=None):
    """write_ensemble on one member whose OOF is `probs` (binary, scored on accuracy)."""
    from podium.submission.ensemble import Options, write_ensemble
    from podium.submission.members import Member, Predictions

    cfg = OmegaConf.create({"data": {"id_col": "id", "target_col": "label", "task": "binary",
                                     "root": str(tmp_path)},
                            "metric": {"competition": "acc", "k": 3}})
    ids = [f"r{i}" for i in range(len(y))]
    oof = pd.DataFrame({"id": ids, "fold": 0, "label": np.array(["neg", "pos"])[y],
                        "neg": probs[:, 0], "pos": probs[:, 1]})
    test = pd.DataFrame({"id": ["t0", "t1", "t2"], "neg": [0.6, 0.75, 0.9],
                         "pos": [0.4, 0.3, 0.1]})
    sample = pd.DataFrame({"id": test.id, "label": "neg"})
    out = tmp_path / "out"
    out.mkdir()
    summary = write_ensemble([Member(tmp_path / "member", cfg, 1.0)], out, sample,
                             [(Predictions(test, oof), None)], Options(postprocess=postprocess))
    return summary, pd.read_csv(out / "submission.csv").label.tolist()


def test_the_file_and_the_summary_keep_the_plain_cut_on_noise(tmp_path):
    probs, y = binary_noise(0)
    summary, labels = write(tmp_path, probs, y)
    assert labels == ["neg", "neg", "neg"]  # cut at 0.5, not at the learned threshold
    step = summary.threshold
    assert step["used"] is False and summary.oof_score_submitted == step["before"]
    assert summary.to_dict()["oof_score_submitted"] == pytest.approx(summary.oof_score)
    lines = summary.lines()
    assert (f"threshold {step['threshold']:.4f}: OOF acc {step['before']:.4f} -> "
            f"{step['after_cross_fitted']:.4f} cross-fitted (a seeded stratified 5-fold of the "
            f"rows; ± {step['se']:.4f}; {step['after_in_sample']:.4f} in-sample) -> not used"
            ) in lines
    assert any(line.startswith("warning: threshold not used: cross-fitted OOF acc")
               for line in lines)


def test_the_file_and_the_summary_use_a_real_shift(tmp_path):
    probs, y = binary_shift()
    summary, labels = write(tmp_path, probs, y)
    assert summary.threshold["used"] is True
    assert labels == ["pos", "pos", "neg"]  # 0.4 and 0.3 are above the learned cut
    assert summary.oof_score_submitted == summary.threshold["after_cross_fitted"]
    assert summary.oof_score_submitted > summary.oof_score
    assert any(line.endswith("-> used") for line in summary.lines())


def test_a_threshold_after_used_offsets_refits_them_in_every_part(tmp_path):
    """Offsets and then the threshold: the threshold's 'before' is the offsets' cross-fitted
    score (their decisions at 0.5), not an in-sample one."""
    probs, y = binary_shift()
    summary, _ = write(tmp_path, probs, y, F1Offsets(1))
    post, cut = summary.postprocess, summary.threshold
    assert post["used"] is True and post["after_cross_fitted"] > post["before"]
    assert cut["before"] == pytest.approx(post["after_cross_fitted"])
    assert summary.oof_score_submitted == (cut["after_cross_fitted"] if cut["used"]
                                           else cut["before"])
