"""The one road from trained models to a submission file.

A training run is an ensemble of one member; `make cv`, `make submit`, `make predict` and
`make refit` pass their members the same way. `write_ensemble` takes each member's
predictions (plain, and with tta views when asked), and then, every step once and each
proven on the members' combined out-of-fold predictions by the competition's metric
(`metric.competition`): keeps the tta views only when they do not lower the OOF score,
averages the members, learns post-processing and (a binary task scored on labels) the
decision threshold, writes the submission shaped like `sample_submission.csv`, and scores it
where the competition has an answer key. It returns one `Summary`; entry points print it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from podium import run
from podium.errors import PodiumError
from podium.submission.members import Member, Predictions
from podium.submission.oof import better, combine_oof, oof_scores

log = logging.getLogger(__name__)


@dataclass
class Summary:
    """What an ensemble wrote and why: members, OOF scores, every step's before/after.

    A learned step (`postprocess`, `threshold`) reports `before` (the OOF score without it),
    `after_in_sample` (fitted and scored on the same OOF rows: optimistic by construction),
    `after_cross_fitted` (fitted on k-1 parts of the rows, scored on the k-th, pooled: the
    honest estimate), `used` (only when the cross-fitted score beats `before`) and what
    it learned on every row. `oof_score` is the plain OOF score of the averaged
    probabilities (comparable across runs); `oof_score_submitted` is the honest estimate of
    the written file's score on the OOF rows (stored in metrics.json).
    """

    runs: list[str]
    weights: list[float]
    metric: str                      # metric.competition
    mode: str                        # its direction: max | min
    submission: str = ""
    format: dict = field(default_factory=dict)       # name, why
    oof: dict[str, float] = field(default_factory=dict)  # oof/<metric>: every metric
    tta: dict | None = None          # used, before, after, metric
    postprocess: dict | None = None  # name, before, after_in_sample, after_cross_fitted, used
    threshold: dict | None = None    # threshold, before, after_in_sample, after_cross_fitted, used
    blend: dict | None = None        # weights=auto: podium.submission.blend's weights + evidence
    leaderboard: dict[str, float] = field(default_factory=dict)  # demos only
    warnings: list[str] = field(default_factory=list)
    test_prior: dict | None = None   # setting, prior, train_prior, estimated, total_variation
    oof_se: float | None = None      # bootstrap standard error of oof_score (classification)
    oof_rows: int = 0
    score_prior: dict | None = None  # the prior its test_probs.csv and oof.csv carry

    @property
    def oof_score(self) -> float | None:
        """The OOF score of the competition's metric: the averaged probabilities as they
        are (moved to data.test_prior when one is set; after the tta choice, before
        post-processing and the decision threshold)."""
        return self.oof.get(f"oof/{self.metric}")

    @property
    def oof_score_submitted(self) -> float | None:
        """The score the written file is expected to have on the OOF rows, by the
        competition's metric. The last learned step decides (the threshold, else the
        post-processing): its cross-fitted score when it is used (its in-sample score would
        be optimistic), else its `before` (the prediction the file keeps: cross-fitted too
        when a used post-processing precedes the threshold); `oof_score` when no step was
        learned. None when that step is scored by another metric (multi-label thresholds
        for another F1)."""
        step = self.threshold or self.postprocess
        if not step or "before" not in step:
            return self.oof_score
        if step["metric"] != self.metric:
            return None
        return step["after_cross_fitted"] if step["used"] else step["before"]

    def to_dict(self) -> dict:
        """metrics.json's fields (leaderboard scores at the top level, as every run's)."""
        data = asdict(self)
        data.update(data.pop("leaderboard"), oof_score=self.oof_score,
                    oof_score_submitted=self.oof_score_submitted)
        return {k: v for k, v in data.items() if v is not None}

    def lines(self) -> list[str]:
        """What an entry point prints: members and weights, every check with its score
        before and after (learned steps: in-sample and cross-fitted, and whether used), the
        OOF scores, the format, the leaderboard (demos) and where the file is."""
        from podium.submission.leaderboard import leaderboard_lines

        lines = [f"member {r}: weight {w:.3f}" for r, w in zip(self.runs, self.weights,
                                                               strict=True)]
        if self.test_prior:
            lines.append(prior_line(self.test_prior))
        if self.blend:
            from podium.submission.blend import blend_lines

            lines += blend_lines(self.blend)
        if self.tta and "before" in self.tta:
            lines.append(f"tta: OOF {self.tta['metric']} {self.tta['before']:.4f} before -> "
                         f"{self.tta['after']:.4f} after (in-sample: a choice, nothing fitted)"
                         f" -> {'used' if self.tta['used'] else 'not used'}")
        for step in (self.postprocess, self.threshold):
            if step and "before" in step:
                lines.append(step_line(step))
        lines += [f"warning: {w}" for w in self.warnings]
        if self.oof_score is not None:
            spread = (f" (± {self.oof_se:.4f}: bootstrap standard error of the "
                      f"{self.oof_rows} rows)" if self.oof_se is not None else "")
            lines.append(f"OOF {self.metric} (metric.competition) before post-processing: "
                         f"{self.oof_score:.4f}{spread}")
        if (self.postprocess or self.threshold) and self.oof_score_submitted is not None:
            lines.append(f"OOF {self.metric} of the submission (cross-fitted where a learned "
                         f"step is used): {self.oof_score_submitted:.4f}")
        lines.append(f"submission format: {self.format['name']} ({self.format['why']})")
        lines += leaderboard_lines(self.leaderboard)
        lines.append(f"submission: {self.submission}")
        return lines


def step_line(step: dict) -> str:
    """`threshold 0.4971: OOF acc 0.8303 before, 0.8317 after in-sample, 0.8290 after
    cross-fitted (the OOF's 5 folds) -> not used`."""
    name = step.get("name", "threshold")
    at = f" {step['threshold']:.4f}" if "threshold" in step else ""
    cross = step.get("after_cross_fitted")
    crossed = (f"{cross:.4f} after cross-fitted ({step['cross_fitted_on']})"
               if cross is not None else f"not cross-fitted ({step['cross_fitted_on']})")
    return (f"{name}{at}: OOF {step['metric']} {step['before']:.4f} before, "
            f"{step['after_in_sample']:.4f} after in-sample, {crossed} -> "
            f"{'used' if step['used'] else 'not used'}")


def prior_line(report: dict) -> str:
    """`test prior uniform: a 0.500, b 0.500 (training prior: a 0.900, b 0.100; EM estimate
    from the test predictions: a 0.480, b 0.520, total variation 0.02)`; under `train`, the
    training prior once."""
    from podium.prior import describe

    names = list(report["train_prior"])
    show = lambda key: describe(list(report[key].values()), names)  # noqa: E731
    line = (f"test prior train (the training data's): {show('train_prior')} ("
            if report["setting"] == "train" else
            f"test prior {report['setting']}: {show('prior')} (training prior: "
            f"{show('train_prior')}; ")
    return line + (f"EM estimate from the test predictions: {show('estimated')}, total "
                   f"variation {report['total_variation']:.2f})")


def choose_test_prior(setting: str, plain: list[Predictions], members: list[Member],
                      data) -> tuple[np.ndarray | None, dict | None, list[str]]:
    """The prior validation and post-processing target (podium.prior): `uniform` or a CSV
    as given, `estimate` by EM on the members' averaged test probabilities (calibrated on
    the OOF rows), `train` none. Whatever the setting, the EM estimate is compared with the
    prior assumed (the training prior for `train`): a total variation above 0.2 (more for a
    small test set: podium.prior.far_from) is a one-line warning naming data.test_prior.
    Returns (prior or None, report, warnings)."""
    from podium import prior
    from podium.submission.postprocess import oof_labels

    task = data.get("task", "multiclass")
    prior.check_setting(setting, task)
    if task not in prior.CLASSIFICATION:
        return None, None, []
    names = [str(c) for c in plain[0].test.columns[1:]]
    target = prior.resolve(setting, names, data.root)
    oof = combine_oof([p.oof for p in plain], data.id_col, data.target_col)
    if oof is None:
        warning = ([] if setting != "estimate" else
                   ["data.test_prior=estimate: no validation predictions to calibrate on; the "
                    "training prior is kept"])
        return target, None, warning
    y = oof_labels(oof, names, data.target_col)
    train = np.bincount(y, minlength=len(names)) / len(y)
    test = average_probs([p.test for p in plain], [m.run for m in members],
                         [m.weight for m in members]).iloc[:, 1:].to_numpy(np.float64)
    estimated = prior.estimate(test, oof[names].to_numpy(np.float64), y, train)
    target = estimated if setting == "estimate" else target
    assumed = train if target is None else target
    distance = prior.total_variation(estimated, assumed)
    report = {"setting": setting, "prior": dict(zip(names, assumed.tolist(), strict=True)),
              "train_prior": dict(zip(names, train.tolist(), strict=True)),
              "estimated": dict(zip(names, estimated.tolist(), strict=True)),
              "total_variation": distance}
    warnings = []
    if distance > prior.far_from(assumed, len(test)) and setting != "estimate":
        other = "estimate, uniform" if setting == "train" else "estimate"
        warnings.append(f"the test predictions imply a class prior far from data.test_prior="
                        f"{setting} (total variation {distance:.2f}; EM estimate: "
                        f"{prior.describe(estimated, names)}): set data.test_prior={other} "
                        f"or a CSV of class,share")
    return target, report, warnings


def to_test_prior(predictions: Predictions, member: Member, prior: np.ndarray,
                  target_col: str) -> Predictions:
    """A member's test and OOF probabilities moved by Bayes' rule (podium.prior.shift) from
    the class prior they carry (its score_prior; else its OOF rows' class shares, what plain
    cross-entropy carries) to `prior`; as they are when neither is known."""
    from podium.prior import shift

    names = [str(c) for c in predictions.test.columns[1:]]
    if set(member.score_prior) == set(names):
        source = np.asarray([member.score_prior[n] for n in names], np.float64)
    elif predictions.oof is not None:
        counts = predictions.oof[run.label_col(target_col, names)].astype(str).value_counts()
        source = counts.reindex(names, fill_value=0).to_numpy(np.float64) / len(predictions.oof)
    else:
        return predictions

    def moved(frame: pd.DataFrame | None) -> pd.DataFrame | None:
        if frame is None:
            return None
        frame = frame.copy()
        frame[names] = shift(frame[names].to_numpy(np.float64), source, prior)
        return frame

    return Predictions(moved(predictions.test), moved(predictions.oof))


def oof_spread(probs: np.ndarray, y: np.ndarray, metric: str, prior: np.ndarray | None,
               task: str, k: int) -> float | None:
    """The bootstrap standard error of the OOF score of `metric` (under the prior)."""
    from podium.submission.oof import bootstrap_se, decision_score
    from podium.submission.postprocess import prior_weights

    n_classes = probs.shape[1]
    weights = None if prior is None else prior_weights(prior, y, n_classes)
    on_labels, score = decision_score(metric, n_classes, weights, task, k)
    # 200 resamples; fewer where each costs much (many rows times many classes)
    rounds = int(np.clip(2e8 / (len(y) * n_classes), 20, 200))
    try:
        return bootstrap_se(score, y, probs.argmax(1) if on_labels else probs, rounds)
    except ValueError:  # a resample without both classes (AUROC of a tiny split)
        return None


def average_probs(frames: list[pd.DataFrame], runs: list[Path],
                  weights: Sequence[float] | None = None) -> pd.DataFrame:
    """Weighted mean of the members' probabilities; they must share ids and classes."""
    first = frames[0]
    for folder, frame in zip(runs[1:], frames[1:], strict=True):
        if list(frame.columns) != list(first.columns):
            raise PodiumError(
                f"{folder} was trained on classes {list(frame.columns[1:])}, {runs[0]} on "
                f"{list(first.columns[1:])}: only runs of the same competition can be averaged"
            )
        if not frame.iloc[:, 0].equals(first.iloc[:, 0]):
            raise PodiumError(f"{folder} predicted other test ids than {runs[0]}")
    weights = list(weights) if weights else [1.0] * len(frames)
    stacked = np.stack([f.iloc[:, 1:].to_numpy(dtype=np.float64) for f in frames])
    mean = np.tensordot(np.asarray(weights) / sum(weights), stacked, axes=1)
    return first.iloc[:, :1].join(pd.DataFrame(mean, columns=first.columns[1:]))


AGREE = ("data.task", "metric.competition", "data.root")  # what every member must share


def check_members_agree(members: list[Member], force: bool) -> list[str]:
    """Members of one ensemble must be trained for the same competition: the same task,
    competition metric and data folder (classes: `average_probs`). A one-line error naming
    both members, or with `force` a warning each."""
    import os

    from omegaconf import OmegaConf

    def value(member: Member, key: str) -> str:
        found = OmegaConf.select(member.cfg, key, default=None)
        if key == "data.task":
            found = found or "multiclass"
        return os.path.normpath(str(found)) if key == "data.root" else str(found)

    warnings = []
    first = members[0]
    for member in members[1:]:
        for key in AGREE:
            if value(member, key) != value(first, key):
                text = (f"{member.run} was trained with {key}={value(member, key)}, "
                        f"{first.run} with {key}={value(first, key)}")
                if not force:
                    raise PodiumError(f"{text}: an ensemble blends members of one "
                                      "competition (force=true blends them anyway)")
                warnings.append(f"{text}: blended anyway (force=true)")
    return warnings


def choose_views(summary: Summary, plain: list[Predictions], with_tta: list[Predictions],
                 cfg, force: bool, test_prior: np.ndarray | None = None
                 ) -> list[Predictions]:
    """The tta views, kept when they do not lower the combined OOF score (or `force`)."""
    data, metric = cfg.data, summary.metric
    scores = []
    for predictions in (plain, with_tta):
        oof = combine_oof([p.oof for p in predictions], data.id_col, data.target_col)
        if oof is None:
            summary.tta = {"used": force}
            summary.warnings.append("tta not checked: no validation predictions with the "
                                    "views" + ("" if force else "; left out (force=true "
                                               "applies it anyway)"))
            return with_tta if force else plain
        names = list(predictions[0].test.columns[1:])
        scores.append(oof_scores(oof, names, data.target_col, data.get("task", "multiclass"),
                                 cfg.metric.k, test_prior)[f"oof/{metric}"])
    helps = better(scores[1], scores[0], metric)
    summary.tta = {"used": helps or force, "before": scores[0], "after": scores[1],
                   "metric": metric}
    if not helps:
        summary.warnings.append(f"tta lowers the OOF {metric} ({scores[0]:.4f} -> "
                                f"{scores[1]:.4f}): " + ("applied anyway (force=true)" if force
                                                         else "left out (force=true applies it)"))
    return with_tta if summary.tta["used"] else plain


def write_ensemble(members: list[Member], output_dir: Path, sample: pd.DataFrame,
                   predictions: Sequence[tuple[Predictions, Predictions | None]],
                   fmt: str = "auto", postprocess=None, force: bool = False,
                   answers: Path | None = None, blend: bool = False,
                   test_prior: str | None = None) -> Summary:
    """The one road: `predictions` holds each member's (plain, with tta or None). Writes
    `output_dir`'s submission (and, when `output_dir` is not a member's own folder, the
    ensemble's `test_probs.csv` and `oof.csv`, so that it can be a member in turn). `blend`
    (weights=auto): the members' weights are learned on their OOF (podium.submission.blend).
    `test_prior`: a data.test_prior setting (None: the first member's)."""
    from podium.model.metrics import LABEL_METRICS, infer_mode
    from podium.prior import CLASSIFICATION
    from podium.submission.blend import blend_members, folder_weights
    from podium.submission.crossfit import make_parts
    from podium.submission.formats import choose_format, write_submission
    from podium.submission.leaderboard import answer_key, leaderboard
    from podium.submission.postprocess import (
        LogitAdjust,
        fit_postprocess,
        oof_labels,
        prior_weights,
        step_learners,
    )
    from podium.submission.thresholds import fit_binary_threshold

    cfg = members[0].cfg
    data, metric = cfg.data, cfg.metric.competition
    task = data.get("task", "multiclass")
    key = answer_key(answers, data.id_col)  # checked before anything is written
    total = sum(m.weight for m in members)
    summary = Summary(runs=[str(m.run) for m in members],
                      weights=[m.weight / total for m in members], metric=metric,
                      mode=infer_mode(metric), warnings=check_members_agree(members, force))
    plain, with_tta = zip(*predictions, strict=True)
    prior, summary.test_prior, warnings = choose_test_prior(
        str(test_prior or data.get("test_prior") or "train"), list(plain), members, data)
    summary.warnings += warnings
    if prior is not None:  # every member's probabilities moved to it by Bayes' rule; a
        # logit adjustment learned on the OOF moves them further when it proves itself
        plain = [to_test_prior(p, m, prior, data.target_col) for p, m in zip(plain, members,
                                                                               strict=True)]
        with_tta = [p if p is None else to_test_prior(p, m, prior, data.target_col)
                    for p, m in zip(with_tta, members, strict=True)]
        postprocess = postprocess or LogitAdjust()
    chosen = list(plain)
    if with_tta[0] is not None:
        chosen = choose_views(summary, list(plain), list(with_tta), cfg, force, prior)
    if blend:  # one weight per folder, learned on the OOF; proven like every learned step
        members, summary.blend = blend_members(members, chosen, cfg, prior)
        summary.weights = [m.weight / sum(m.weight for m in members) for m in members]
    probs = average_probs([p.test for p in chosen], [m.run for m in members],
                          [m.weight for m in members])
    oof = combine_oof([p.oof for p in chosen], data.id_col, data.target_col,
                      folder_weights(members))
    id_col, class_names = data.id_col, list(probs.columns[1:])
    if not {str(m.run) for m in members} & {str(output_dir)}:  # an ensemble's own folder
        run_files(output_dir, probs, oof)
        if prior is not None:  # its files carry the test prior, when it is a member in turn
            summary.score_prior = dict(zip(class_names, prior.tolist(), strict=True))
    test = probs.iloc[:, 1:].to_numpy()
    y = None if oof is None or task not in CLASSIFICATION else \
        oof_labels(oof, class_names, data.target_col)
    if oof is not None:
        summary.oof = oof_scores(oof, class_names, data.target_col, task, cfg.metric.k, prior)
        summary.oof_rows = len(oof)
    if y is not None:
        summary.oof_se = oof_spread(oof[class_names].to_numpy(np.float64), y, metric, prior,
                                    task, cfg.metric.k)
    label_metric = metric in LABEL_METRICS or task == "multilabel"
    # a shift to the test prior can help a metric of probabilities too (log-loss, MAP@k)
    shifts = isinstance(postprocess, LogitAdjust) and task in CLASSIFICATION
    pre = None  # post-processing that is used, as a learner: the threshold refits it per part
    if postprocess and oof is not None and (label_metric or shifts):
        adjust, summary.postprocess, warning = fit_postprocess(
            postprocess, oof, class_names, data.target_col, metric, task, None, prior,
            cfg.metric.k)
        summary.warnings += [warning] if warning else []
        # each member's test probabilities adjusted, then averaged: the step was learned on
        # OOF rows that each came from one member, and an average is softer than its parts
        shares = np.asarray([m.weight for m in members]) / sum(m.weight for m in members)
        test = np.tensordot(shares, np.stack([adjust(p.test.iloc[:, 1:].to_numpy(np.float64))
                                              for p in chosen]), axes=1)
        if summary.postprocess["used"] and task != "multilabel":
            pre = step_learners(postprocess, class_names, metric, y, prior, task,
                                cfg.metric.k)[0]
    elif postprocess:
        summary.warnings.append(f"postprocess skipped: it needs oof.csv and a label metric "
                                f"(metric.competition={metric})")
    shape = choose_format(fmt, sample, id_col, class_names, task, f"val/{metric}",
                          cfg.metric.k)
    if task == "binary" and shape.format == "label" and oof is not None \
            and metric in LABEL_METRICS:  # the cut that the metric wants, not 0.5
        weights = None if prior is None else prior_weights(prior, y, 2)
        cut, summary.threshold, warning = fit_binary_threshold(
            oof[class_names].to_numpy(dtype=np.float64), y, metric, make_parts(oof, y), pre,
            weights)
        summary.warnings += [warning] if warning else []
        shape = replace(shape, threshold=cut)
    summary.format = {"name": shape.format, "why": shape.why}
    path = write_submission(output_dir, sample, probs[id_col].tolist(), test, class_names,
                            id_col, task, shape)
    summary.submission = str(path)
    summary.leaderboard = leaderboard(path, key, id_col, task)
    return summary


def run_files(output_dir: Path, probs: pd.DataFrame, oof: pd.DataFrame | None) -> None:
    """The ensemble's averaged probabilities as a run's files (before post-processing)."""
    from podium.io import write_atomic

    write_atomic(Path(output_dir) / run.TEST_PROBS, probs.to_csv(index=False))
    if oof is not None:
        write_atomic(Path(output_dir) / run.OOF, oof.to_csv(index=False))


def submit_members(members: list[Member], output_dir: Path, fmt: str = "auto",
                   postprocess=None, tta: Sequence = (), force: bool = False,
                   blend: bool = False, test_prior: str | None = None) -> Summary:
    """The ensemble on the test set of the competition the members were trained on
    (train, cv, refit, submit): the members' own predictions, and with `tta` theirs with
    the views; `blend`: weights learned on the OOF (weights=auto)."""
    from podium.io import read_sample_submission
    from podium.submission.members import own_predictions, with_refit_oof

    data = members[0].cfg.data
    check_members_agree(members, force)  # another competition's member: named as such first
    sample = read_sample_submission(Path(data.root) / data.sample_submission, data.id_col)
    predictions = [with_refit_oof(m, *own_predictions(m, tta, sample)) for m in members]
    answers = Path(data.answers) if data.get("answers") else None
    return write_ensemble(members, output_dir, sample, predictions, fmt, postprocess, force,
                          answers, blend, test_prior)
