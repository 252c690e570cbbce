"""The learned tail: every step from the members' predictions to the file, one chain.

The members' probabilities, each already moved to the test prior (`to_test_prior`: Bayes'
rule, nothing learned), are stacked as (views, folders, rows, classes). Four slots follow,
in order, each with a plain step (nothing learned) and, when asked for, a learned one:

| slot   | plain                      | learned                                             |
| ------ | -------------------------- | --------------------------------------------------- |
| views  | the plain prediction       | the tta views when they score better (`Views`)      |
| blend  | the folders' given weights | Caruana's selection / NNLS (`Blend`, weights=auto)  |
| adjust | no change                  | logit adjustment, class offsets (`Adjust`)          |
| decide | argmax, p >= 0.5           | the binary cut (`Cut`), multi-label ones (`LabelCuts`) |

Every step has `fit(x, y, scoring)` (returns the fitted step) and `apply(x)`; the chain
applies the same fitted steps to the OOF rows and to the test rows. It is judged as one
learner (`cross_fit`): on each part of the OOF rows every step is fitted, in order, on the
other parts, and the part is predicted by what they learned. A learned step replaces the
plain one only when the chain's cross-fitted score gains more than KEEP_SE (1.645) bootstrap
standard errors of the paired difference (`choose`), a one-sided 5% test: on pure noise a
step is then kept about one time in twenty at most, where one standard error kept a
threshold two times in twenty and "strictly better" about four times. The cross-fitted score
of the chain chosen is the file's `oof_score_submitted`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from podium.submission.crossfit import Parts
from podium.submission.oof import better, paired_se
from podium.submission.thresholds import F1_AVERAGES, multilabel_f1

ROWS = -2  # the rows' axis of every array the chain passes on
KEEP_SE = 1.645  # a learned step's cross-fitted gain must exceed this many paired SEs
SELECTION_ROWS = 20_000  # Caruana's selection scores at most this many rows (a sample)


@dataclass
class Scoring:
    """The competition's metric as the chain scores it: on labels (a label metric of a
    single-label task), else on probabilities (torchmetrics, as podium.model.metrics); each
    row weighs its class's weight under a test prior (`class_weights`)."""

    metric: str
    task: str
    n_classes: int
    k: int = 3
    class_weights: np.ndarray | None = None

    @property
    def on_labels(self) -> bool:
        from podium.model.metrics import LABEL_METRICS

        return self.task in ("binary", "multiclass") and self.metric in LABEL_METRICS

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """What the metric scores when no step decides: argmax labels, else probabilities."""
        return probs.argmax(1) if self.on_labels else probs

    def __call__(self, y: np.ndarray, decisions: np.ndarray) -> float:
        if self.on_labels:
            from podium.submission.oof import label_score

            return label_score(self.metric, y, decisions, self.n_classes, self.class_weights)
        if self.task == "multilabel" and self.metric in F1_AVERAGES:
            return multilabel_f1(y.astype(bool), np.asarray(decisions) > 0.5, self.metric)
        import torch

        scorer = self.scorer
        scorer.reset()
        preds = torch.as_tensor(np.asarray(decisions), dtype=torch.float32)
        scorer.update(preds[:, 0] if self.task == "regression" else preds, torch.tensor(y))
        return float(scorer.compute())

    @cached_property
    def scorer(self):
        """The metric's torchmetrics object (podium.model.metrics), built once."""
        from podium.model.metrics import task_metrics

        weights = self.class_weights if self.task in ("binary", "multiclass") else None
        return task_metrics(self.task, self.n_classes, self.k, weights)[self.metric]

    def gain(self, after: float, before: float) -> float:
        from podium.model.metrics import infer_mode

        return before - after if infer_mode(self.metric) == "min" else after - before


# -- the steps -------------------------------------------------------------------------------
@dataclass
class Views:
    """views (V, M, N, C) -> (M, N, C): the plain prediction (view 0), the tta views (1)
    under force=true, or (learned) the view whose given-weight average scores best (plain on a
    tie)."""

    weights: np.ndarray
    learn: bool = False
    view: int = 0  # the plain step's: 1 under force=true (the views applied unproven)
    name: str = "tta"

    def fit(self, x: np.ndarray, y: np.ndarray, scoring: Scoring) -> Views:
        if not self.learn:
            return self
        scores = [scoring(y, scoring.decide(np.tensordot(self.weights, v, axes=1))) for v in x]
        view = 1 if scoring.gain(scores[1], scores[0]) > 1e-12 else 0
        return replace(self, view=view)

    def apply(self, x: np.ndarray) -> np.ndarray:
        return x[min(self.view, len(x) - 1)]

    @property
    def info(self) -> dict:
        return {"view": "tta" if self.view else "plain"}


@dataclass
class Blend:
    """folders (M, N, C) -> (N, C): their given weights, or (learned, weights=auto)
    Caruana et al.'s ensemble selection with replacement (classification: on at most
    SELECTION_ROWS of the rows it is fitted on, a seeded sample, since each of its ~200
    scorings reads every row) / non-negative least squares summing to one (regression)."""

    weights: np.ndarray
    learn: bool = False
    name: str = "blend"

    def fit(self, x: np.ndarray, y: np.ndarray, scoring: Scoring) -> Blend:
        from podium.submission.blend import caruana, nnls_weights

        if not self.learn or len(x) < 2:
            return self
        if scoring.task == "regression":
            return replace(self, weights=nnls_weights(x[..., 0], y))
        if len(y) > SELECTION_ROWS:  # a seeded sample: the chain judges them on every row
            sample = np.sort(np.random.default_rng(0).choice(len(y), SELECTION_ROWS,
                                                             replace=False))
            x, y = rows(x, sample), y[sample]
        return replace(self, weights=caruana(x, lambda b: scoring(y, scoring.decide(b)),
                                             scoring.metric))

    def apply(self, x: np.ndarray) -> np.ndarray:
        return np.tensordot(self.weights, x, axes=1)

    @property
    def info(self) -> dict:
        return {"learned": [float(w) for w in self.weights]}


@dataclass
class Adjust:
    """(N, C) -> (N, C): learned offsets of the log-probabilities (`rule`: LogitAdjust's
    tau * log prior, F1Offsets' per-class offsets; podium.submission.postprocess), fitted
    for the competition's metric; nothing without a rule."""

    rule: object | None = None
    class_names: Sequence[str] = ()
    test_prior: np.ndarray | None = None
    offsets: np.ndarray | None = None
    learned: dict = field(default_factory=dict)
    name: str = "adjust"

    def fit(self, x: np.ndarray, y: np.ndarray, scoring: Scoring) -> Adjust:
        from podium.submission.postprocess import log_probs, softmax

        if self.rule is None:
            return self
        sign = -1.0 if scoring.gain(1.0, 0.0) < 0 else 1.0
        objective = (lambda truth, z: sign * scoring(truth, z.argmax(1))) if scoring.on_labels \
            else (lambda truth, z: sign * scoring(truth, softmax(z)))
        offsets, learned = self.rule.fit(log_probs(x), y, objective, self.class_names,
                                       self.test_prior)
        return replace(self, offsets=offsets, learned=learned)

    def apply(self, x: np.ndarray) -> np.ndarray:
        from podium.submission.postprocess import log_probs, softmax

        return x if self.offsets is None else softmax(log_probs(x) + self.offsets)

    @property
    def info(self) -> dict:
        return dict(self.learned)


@dataclass
class Cut:
    """A binary task scored on labels: positive when p(positive) >= the cut (0.5, or
    learned: the cut where the metric is best on the rows it is fitted on)."""

    learn: bool = False
    cut: float = 0.5
    name: str = "threshold"

    def fit(self, x: np.ndarray, y: np.ndarray, scoring: Scoring) -> Cut:
        from podium.submission.thresholds import best_threshold

        if not self.learn:
            return self
        found = best_threshold(x[:, 1], y, scoring.metric, scoring.class_weights)
        return replace(self, cut=found["threshold"])

    def apply(self, x: np.ndarray) -> np.ndarray:
        return x

    def decide(self, x: np.ndarray) -> np.ndarray:
        return (x[:, 1] >= self.cut).astype(int)

    @property
    def info(self) -> dict:
        return {"threshold": self.cut}


@dataclass
class LabelCuts:
    """Multi-label: one threshold per label (or one for all) for the F1 `average`, applied
    as a logit shift that puts each threshold at 0.5 (a label's ranking is unchanged)."""

    average: str
    per_class: bool = True
    class_names: Sequence[str] = ()
    cuts: np.ndarray | None = None
    name: str = "thresholds"

    def fit(self, x: np.ndarray, y: np.ndarray, scoring: Scoring) -> LabelCuts:
        from podium.submission.thresholds import fit_thresholds

        return replace(self, cuts=fit_thresholds(x, y, self.average, self.per_class))

    def apply(self, x: np.ndarray) -> np.ndarray:
        from podium.submission.thresholds import shift_to_half

        return x if self.cuts is None else shift_to_half(x, self.cuts)

    @property
    def info(self) -> dict:
        cuts = self.cuts if self.cuts is not None else np.full(len(self.class_names), 0.5)
        return {"thresholds": dict(zip(map(str, self.class_names), cuts.tolist(), strict=True))}


@dataclass
class Slot:
    """One place in the chain: its plain step, the learned one (None: nothing to learn)
    and, for a step judged by another F1 than the competition's, that scoring."""

    plain: object
    learned: object | None = None
    scoring: Scoring | None = None


# -- the chain -------------------------------------------------------------------------------
def fit_chain(steps: Sequence, x: np.ndarray, y: np.ndarray, scoring: Scoring) -> list:
    """Every step fitted, in order, on what the steps before it make of `x`."""
    fitted = []
    for step in steps:
        step = step.fit(x, y, scoring)
        x = step.apply(x)
        fitted.append(step)
    return fitted


def apply_chain(fitted: Sequence, x: np.ndarray) -> np.ndarray:
    """The probabilities the fitted steps make of `x` (views/folders/rows/classes in)."""
    for step in fitted:
        x = step.apply(x)
    return x


def decide(fitted: Sequence, x: np.ndarray, scoring: Scoring) -> np.ndarray:
    """What the metric scores: the last deciding step's labels, else `scoring.decide`."""
    probs = apply_chain(fitted, x)
    cutter = next((s for s in reversed(fitted) if hasattr(s, "decide")), None)
    return cutter.decide(probs) if cutter is not None else scoring.decide(probs)


def rows(x: np.ndarray, index: np.ndarray) -> np.ndarray:
    return np.take(x, index, axis=ROWS)


def cross_fit(steps: Sequence, x: np.ndarray, y: np.ndarray, scoring: Scoring,
              parts: Parts) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, decisions) of every OOF row, each part's made by the chain fitted on
    the other parts."""
    n = x.shape[ROWS]
    probs, decisions = None, None
    for held in parts.held_out:
        rest = np.setdiff1d(np.arange(n), held)
        fitted = fit_chain(steps, rows(x, rest), y[rest], scoring)
        p, d = apply_chain(fitted, rows(x, held)), decide(fitted, rows(x, held), scoring)
        if probs is None:
            probs = np.zeros((n,) + p.shape[1:], p.dtype)
            decisions = np.zeros((n,) + d.shape[1:], d.dtype)
        probs[held], decisions[held] = p, d
    return probs, decisions


@dataclass
class Chosen:
    """The chain chosen: its steps fitted on every OOF row, the cross-fitted probabilities
    and score of the OOF rows, and each learned step's report."""

    fitted: list
    oof_probs: np.ndarray | None
    score: float | None
    reports: dict[str, dict]


def choose(slots: Sequence[Slot], x: np.ndarray | None, y: np.ndarray | None,
           scoring: Scoring, parts: Parts | None) -> Chosen:
    """Slot by slot, in order: the learned step replaces the plain one when the chain's
    cross-fitted score gains more than KEEP_SE paired bootstrap standard errors. Each report:
    `before` and `after_cross_fitted` (the chain without / with the step, cross-fitted),
    `after_in_sample` (fitted and scored on every row: optimistic), `se`, `used`, what was
    learned on every row. Without OOF rows or parts, nothing is learned."""
    steps = [slot.plain for slot in slots]
    if x is None or y is None or parts is None or not parts.held_out:
        how = parts.how if parts else "no OOF rows"
        reports = {slot.learned.name: {"name": slot.learned.name, "metric": scoring.metric,
                                       "used": False, "cross_fitted_on": how}
                   for slot in slots if slot.learned is not None}
        return Chosen(steps if x is None else fit_chain(steps, x, y, scoring), None, None,
                      reports)
    base_probs, base = cross_fit(steps, x, y, scoring, parts)
    reports = {}
    for i, slot in enumerate(slots):
        if slot.learned is None:
            continue
        trial = steps[:i] + [slot.learned] + steps[i + 1:]
        trial_probs, decided = cross_fit(trial, x, y, scoring, parts)
        everywhere = fit_chain(trial, x, y, scoring)
        judge = slot.scoring or scoring
        if judge is scoring:
            pair = (base, decided)
            in_sample = judge(y, decide(everywhere, x, judge))
        else:  # its own F1, of the probabilities the chain makes
            pair = (judge.decide(base_probs), judge.decide(trial_probs))
            in_sample = judge(y, judge.decide(apply_chain(everywhere, x)))
        before, after = judge(y, pair[0]), judge(y, pair[1])
        se = paired_se(judge, y, *pair)
        used = (judge.gain(after, before) > KEEP_SE * se
                and better(after, before, judge.metric, True))
        reports[slot.learned.name] = {
            "name": slot.learned.name, "metric": judge.metric, "before": before,
            "after_in_sample": in_sample, "after_cross_fitted": after, "se": se,
            "used": bool(used), "cross_fitted_on": parts.how, **everywhere[i].info}
        if used:
            steps, base_probs, base = trial, trial_probs, decided
    return Chosen(fit_chain(steps, x, y, scoring), base_probs, scoring(y, base), reports)
