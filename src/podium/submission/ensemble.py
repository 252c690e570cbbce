"""The one road from trained models to a submission file.

A training run is an ensemble of one member; `make cv`, `make gbdt`, `make submit`,
`make predict` and `make refit` pass their members the same way. `write_ensemble` is the
driver: the members' predictions (plain, and with tta views when asked) are moved to the
test prior and stacked (podium.submission.stack), the chain of learned steps is chosen on
their OOF rows and cross-fitted as one learner (podium.submission.steps), and its fitted
steps make the test probabilities; the file is shaped like `sample_submission.csv` and
scored where the competition has an answer key. It returns one `Summary`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from podium import run
from podium.errors import PodiumError
from podium.submission.members import Member, Predictions
from podium.submission.stack import Stack, folder_of
from podium.submission.steps import Adjust, Blend, Cut, LabelCuts, Scoring, Slot, Views
from podium.submission.summary import Summary


@dataclass
class Options:
    """How the one road runs: the submission format, the post-processing rule (None: none;
    logit adjustment under a test prior), `force` (tta applied unproven, members of other
    competitions blended), the answer key (demos), `blend` (weights=auto) and the
    data.test_prior setting (None: the first member's)."""

    fmt: str = "auto"
    postprocess: object | None = None
    force: bool = False
    answers: Path | None = None
    blend: bool = False
    test_prior: str | None = None


def write_ensemble(members: list[Member], output_dir: Path, sample: pd.DataFrame,
                   predictions: Sequence[tuple[Predictions, Predictions | None]],
                   options: Options | None = None, warnings: Sequence[str] = ()) -> Summary:
    """The one road: `predictions` holds each member's (plain, with tta or None). Writes
    `output_dir`'s submission (and, when `output_dir` is not a member's own folder, the
    ensemble's `test_probs.csv` and `oof.csv`: the chain's probabilities, the OOF rows'
    cross-fitted, so that it can be a member in turn)."""
    from podium.model.metrics import infer_mode
    from podium.submission.crossfit import make_parts
    from podium.submission.formats import choose_format, write_submission
    from podium.submission.leaderboard import answer_key, leaderboard
    from podium.submission.oof import oof_scores, truth
    from podium.submission.postprocess import LogitAdjust
    from podium.submission.stack import choose_test_prior, stack, to_test_prior
    from podium.submission.steps import apply_chain, choose
    from podium.submission.summary import not_used_line

    options = options or Options()
    cfg = members[0].cfg
    data, metric, k = cfg.data, cfg.metric.competition, cfg.metric.k
    task = data.get("task", "multiclass")
    key = answer_key(options.answers, data.id_col)  # checked before anything is written
    summary = Summary(runs=[str(m.run) for m in members], weights=[], metric=metric,
                      mode=infer_mode(metric), warnings=list(warnings))
    plain, with_tta = (list(v) for v in zip(*predictions, strict=True))
    prior, summary.test_prior, lines = choose_test_prior(
        str(options.test_prior or data.get("test_prior") or "train"),
        stack(members, [plain], data.id_col, data.target_col), data)
    summary.warnings += lines
    postprocess = options.postprocess
    if prior is not None:  # Bayes' rule for every member; a learned adjustment may follow
        plain = [to_test_prior(p, m, prior, data.target_col)
                 for p, m in zip(plain, members, strict=True)]
        with_tta = [p and to_test_prior(p, m, prior, data.target_col)
                    for p, m in zip(with_tta, members, strict=True)]
        postprocess = postprocess or LogitAdjust()
    table = stack(members, [plain] + ([with_tta] if with_tta[0] is not None else []),
                  data.id_col, data.target_col)
    summary.warnings += [table.note] if table.note else []
    names = table.class_names
    y = None if table.oof is None else truth(table.oof, names, data.target_col, task)
    shape = choose_format(options.fmt, sample, data.id_col, names, task, f"val/{metric}", k)
    scoring = Scoring(metric, task, len(names), k, None if prior is None or y is None else
                      prior_weights(prior, y, len(names)))
    slots, notes = chain_slots(table, options, postprocess, scoring, shape.format, prior)
    summary.warnings += notes
    parts = None if y is None else make_parts(
        table.oof, np.zeros(len(y), int) if task == "regression" else y)
    chosen = choose(slots, table.oof_x, y, scoring, parts)
    blend = next(step for step in chosen.fitted if isinstance(step, Blend))
    report(summary, chosen.reports, table, options.force, blend.weights, task)
    summary.warnings += [line for line in map(not_used_line, chosen.reports.values()) if line]
    summary.weights = member_shares(members, table, blend.weights)
    test = apply_chain(chosen.fitted, table.test)
    probs = pd.DataFrame({data.id_col: table.test_ids}).join(pd.DataFrame(test, columns=names))
    oof = None
    if table.oof is not None:
        oof = table.oof.join(pd.DataFrame(chosen.oof_probs if chosen.oof_probs is not None
                                          else apply_chain(chosen.fitted, table.oof_x),
                                          columns=names))
        summary.oof = oof_scores(oof, names, data.target_col, task, k, prior)
        summary.oof_rows, summary.submitted = len(oof), chosen.score
        summary.oof_se = spread(scoring, y, oof[names].to_numpy(np.float64))
    if not {str(m.run) for m in members} & {str(output_dir)}:  # an ensemble's own folder
        run_files(output_dir, probs, oof)
        if prior is not None:  # its files carry the test prior, when it is a member in turn
            summary.score_prior = dict(zip(names, prior.tolist(), strict=True))
    cut = next((step.cut for step in chosen.fitted if isinstance(step, Cut)), None)
    shape = replace(shape, threshold=cut) if cut is not None else shape
    summary.format = {"name": shape.format, "why": shape.why}
    path = write_submission(output_dir, sample, table.test_ids, test, names, data.id_col,
                            task, shape)
    summary.submission = str(path)
    summary.leaderboard = leaderboard(path, key, data.id_col, task, scoring.metric)
    return summary


def chain_slots(table: Stack, options: Options, postprocess, scoring: Scoring, fmt: str,
                prior: np.ndarray | None) -> tuple[list[Slot], list[str]]:
    """The chain's slots for this ensemble (podium.submission.steps), and a note for a
    post-processing rule the metric cannot use."""
    from podium.model.metrics import LABEL_METRICS
    from podium.submission.postprocess import LogitAdjust
    from podium.submission.thresholds import F1_AVERAGES, Thresholds

    task, metric, names = scoring.task, scoring.metric, table.class_names
    tta = len(table.test) > 1
    slots = [Slot(Views(table.weights, view=int(tta and options.force)),
                  Views(table.weights, learn=True) if tta and table.oof is not None
                  and not options.force else None),
             Slot(Blend(table.weights), Blend(table.weights, learn=True)
                  if options.blend and len(table.folders) > 1 else None)]
    notes = []
    if postprocess is not None and table.oof is not None:
        if (task == "multilabel") != isinstance(postprocess, Thresholds):
            raise PodiumError(f"postprocess={postprocess.name} does not fit data.task={task}: "
                              "use " + ("postprocess=thresholds" if task == "multilabel"
                                        else "f1_offsets or logit_adjust"))
        if task == "multilabel":
            average = postprocess.metric or (metric if metric in F1_AVERAGES else "f1_micro")
            if average not in F1_AVERAGES:
                raise PodiumError(f"postprocess.metric={average}: use one of "
                                  f"{', '.join(F1_AVERAGES)}")
            judge = None if average == metric else Scoring(average, task, len(names))
            slots.append(Slot(Adjust(), LabelCuts(average, postprocess.per_class, names),
                              judge))
        elif metric in LABEL_METRICS or isinstance(postprocess, LogitAdjust):
            slots.append(Slot(Adjust(), Adjust(postprocess, names, prior,
                                               name=postprocess.name)))
        else:
            notes.append(f"postprocess skipped: it needs a label metric "
                         f"(metric.competition={metric})")
    elif postprocess is not None and options.postprocess is not None:
        notes.append("postprocess skipped: it needs oof.csv (validation predictions)")
    if task == "binary" and fmt == "label" and metric in LABEL_METRICS:
        slots.append(Slot(Cut(), Cut(learn=True) if table.oof is not None else None))
    return slots, notes


def report(summary: Summary, reports: dict[str, dict], table: Stack, force: bool,
           weights: np.ndarray, task: str) -> None:
    """Each learned step's report in the summary's field for it; the blend's weights (used
    and learned) by folder."""
    summary.tta = reports.get("tta")
    if len(table.test) > 1 and summary.tta is None:
        summary.tta = {"used": bool(force)}
        summary.warnings.append("tta applied unproven (force=true)" if force else
                                "tta not checked: no validation predictions with the views; "
                                "left out (force=true applies it anyway)")
    summary.blend = reports.get("blend")
    if summary.blend is not None:
        by_folder = lambda w: dict(zip(map(str, table.folders), map(float, w),  # noqa: E731
                                       strict=True))
        summary.blend.update(weights=by_folder(weights), method="nnls" if task == "regression"
                             else "caruana")
        if "learned" in summary.blend:
            summary.blend["learned"] = by_folder(summary.blend["learned"])
    summary.threshold = reports.get("threshold")
    summary.postprocess = next((r for n, r in reports.items()
                                if n not in ("tta", "blend", "threshold")), None)


def member_shares(members: Sequence[Member], table: Stack, weights: np.ndarray
                  ) -> list[float]:
    """Each member's share of the file: its folder's weight, split as its folds share it."""
    totals = {f: sum(m.weight for m in members if folder_of(m) == f) for f in table.folders}
    shares = []
    for member in members:
        folder = folder_of(member)
        share = member.weight / totals[folder] if totals[folder] > 0 else 0.0
        shares.append(float(weights[table.folders.index(folder)] * share))
    return shares


def prior_weights(test_prior: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-class weights test_prior / (the rows' own class shares)."""
    from podium.prior import class_weights

    return class_weights(test_prior, np.bincount(y, minlength=n_classes))


def spread(scoring: Scoring, y: np.ndarray, probs: np.ndarray) -> float | None:
    """The bootstrap standard error of the OOF score (fewer resamples where each costs
    much: many rows times many classes)."""
    from podium.submission.oof import bootstrap_se, resamples

    try:
        return bootstrap_se(scoring, y, scoring.decide(probs), resamples(len(y), probs.shape[1]))
    except ValueError:  # a resample without both classes (AUROC of a tiny split)
        return None


def run_files(output_dir: Path, probs: pd.DataFrame, oof: pd.DataFrame | None) -> None:
    """The ensemble's probabilities as a run's files."""
    from podium.io import write_atomic

    write_atomic(Path(output_dir) / run.TEST_PROBS, probs.to_csv(index=False))
    if oof is not None:
        write_atomic(Path(output_dir) / run.OOF, oof.to_csv(index=False))


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


def submit_members(members: list[Member], output_dir: Path, options: Options | None = None,
                   tta: Sequence = ()) -> Summary:
    """The ensemble on the test set of the competition the members were trained on
    (train, cv, gbdt, refit, submit): the members' own predictions, and with `tta` theirs
    with the views."""
    from podium.io import read_sample_submission
    from podium.submission.members import own_predictions

    options = options or Options()
    data = members[0].cfg.data
    warnings = check_members_agree(members, options.force)  # named as such first
    sample = read_sample_submission(Path(data.root) / data.sample_submission, data.id_col)
    predictions = [own_predictions(m, tta, sample) for m in members]
    if options.answers is None and data.get("answers"):
        options = replace(options, answers=Path(data.answers))
    return write_ensemble(members, output_dir, sample, predictions, options, warnings)
