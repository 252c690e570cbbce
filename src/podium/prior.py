"""The test set's class prior (`data.test_prior`): what validation weighs and the test
predictions are adjusted to.

Long-tailed training data is usually scored on a test set whose classes are distributed
otherwise (balanced, or another prior). A validation split drawn from the training data then
optimises the wrong target, so podium weighs each validation row of class c by
test_prior[c] / train_prior[c] (label shift: p(x | y) is the same, only p(y) changes) and
moves the probabilities to the test prior by Bayes' rule, from the prior they carry
(`score_prior`: the training prior for plain cross-entropy, less what the loss and the
sampler take out), in validation (the checkpoint is chosen for the prediction submitted) and
on the test set; a logit adjustment learned on the OOF rows (Menon et al. 2021, post hoc)
may move them further when it proves itself (podium.submission.postprocess).

Settings:
- `train`: the test set is distributed like the training data (no weighting, no shift);
- `uniform`: every class equally often (the standard long-tail benchmarks);
- `estimate`: estimated from the model's own test predictions, after (bias-corrected)
  temperature scaling on the OOF rows, by EM (Saerens, Latinne & Decaestecker 2002);
- a CSV file (absolute, or relative to data.root) of class -> share (two columns, a header).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from podium.errors import PodiumError

SETTINGS = ("train", "uniform", "estimate")
CLASSIFICATION = ("multiclass", "binary")
FAR = 0.2  # total variation between two priors that a run warns about


def check_setting(setting: str, task: str) -> None:
    """A prior other than `train` needs classes that exclude each other."""
    if str(setting) != "train" and task not in CLASSIFICATION:
        raise PodiumError(f"data.test_prior={setting} needs data.task=multiclass or binary "
                          f"(data.task={task} has no class prior): leave data.test_prior=train")


def resolve(setting: str | None, class_names: Sequence[str], root: Path | str | None = None
            ) -> np.ndarray | None:
    """The test prior a setting names, over `class_names`; None for `train` (no shift) and
    `estimate` (known only once the test set is predicted)."""
    setting = str(setting or "train")
    if setting in ("train", "estimate"):
        return None
    if setting == "uniform":
        return np.full(len(class_names), 1.0 / len(class_names))
    return read_prior_csv(setting, class_names, root)


def read_prior_csv(setting: str, class_names: Sequence[str], root: Path | str | None
                   ) -> np.ndarray:
    """A CSV of class -> share (any positive numbers: normalised to sum to one)."""
    from podium.io import read_csv

    path = Path(setting)
    if not path.is_absolute() and root is not None and not path.is_file():
        path = Path(root) / path
    if not path.is_file():
        raise PodiumError(f"data.test_prior={setting}: not train, uniform, estimate or a CSV "
                          f"file of class,share rows")
    frame = read_csv(path, [], "the test prior")
    if frame.shape[1] != 2:
        raise PodiumError(f"{path} has {frame.shape[1]} columns: the test prior is two "
                          f"columns, class and share")
    shares = dict(zip(frame.iloc[:, 0].astype(str), frame.iloc[:, 1], strict=True))
    missing = [c for c in map(str, class_names) if c not in shares]
    extra = sorted(set(shares) - set(map(str, class_names)))
    if missing or extra:
        raise PodiumError(f"{path} must list every class once: missing {missing}, unknown "
                          f"{extra} (classes: {', '.join(map(str, class_names))})")
    try:
        prior = np.array([float(shares[str(c)]) for c in class_names])
    except ValueError as error:
        raise PodiumError(f"{path}: a share is not a number ({error})") from None
    if not np.isfinite(prior).all() or (prior < 0).any() or prior.sum() <= 0:
        raise PodiumError(f"{path}: shares must be non-negative numbers, not all zero")
    return prior / prior.sum()


def far_from(prior: Sequence[float], rows: int) -> float:
    """The total variation above which an estimate over `rows` test rows is far from `prior`:
    0.2, or three times what drawing `rows` rows from `prior` alone moves it (expected
    |share - p| = sqrt(2 p (1 - p) / (pi n)) per class), whichever is larger: 36 test rows
    of three classes move an estimate by 0.09 by chance."""
    p = np.asarray(prior, np.float64)
    chance = 0.5 * np.sqrt(2 * p * (1 - p) / (np.pi * max(rows, 1))).sum()
    return max(FAR, 3 * float(chance))


def class_weights(test_prior: Sequence[float], class_counts: Sequence[float]) -> np.ndarray:
    """Per-class row weights test_prior[c] / train_prior[c] (train_prior: `class_counts`
    normalised): the weighted rows are distributed like the test set. A class without rows
    gets weight 0 (it has nothing to weigh)."""
    counts = np.asarray(class_counts, dtype=np.float64)
    train = counts / counts.sum()
    return np.divide(np.asarray(test_prior, dtype=np.float64), train,
                     out=np.zeros_like(train), where=train > 0)


def score_prior(class_counts: Sequence[float], loss=None, sampler_power: float = 0.0
                ) -> np.ndarray:
    """The class prior a classifier's probabilities carry, which Bayes' rule (`shift`)
    moves to the test prior: the training shares, drawn by a class-balanced sampler as
    n^(1 - power) (podium.data.samplers), times the loss's `prior_factor` (class weights;
    a logit-adjusted loss: prior^-tau; podium.losses) or its class `weight` (torch's
    cross-entropy). Plain cross-entropy, no sampler: the training shares."""
    carried = np.asarray(class_counts, dtype=np.float64) ** (1.0 - sampler_power)
    factor = getattr(loss, "prior_factor", getattr(loss, "weight", None))
    if factor is not None:
        carried = carried * np.asarray(factor.detach().cpu() if hasattr(factor, "detach")
                                       else factor, dtype=np.float64)
    return carried / carried.sum()


def total_variation(p: Sequence[float], q: Sequence[float]) -> float:
    return 0.5 * float(np.abs(np.asarray(p, float) - np.asarray(q, float)).sum())


def fit_calibration(probs: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Bias-corrected temperature scaling (Alexandari et al. 2020): the temperature T and
    per-class biases b minimising the negative log-likelihood of softmax(log p / T + b) on
    labelled rows. EM needs posteriors calibrated to the training prior; a model trained
    with a logit-adjusted loss predicts for another prior, which the biases undo."""
    from scipy.optimize import minimize

    logp = np.log(np.clip(np.asarray(probs, np.float64), 1e-12, None))
    onehot = np.eye(logp.shape[1])[y]

    def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
        t = np.exp(theta[0])
        z = logp / t + theta[1:]
        z = z - z.max(axis=1, keepdims=True)
        log_soft = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        error = np.exp(log_soft) - onehot
        grad_t = float((error * (-logp / t)).sum(axis=1).mean())
        return float(-(log_soft * onehot).sum(axis=1).mean()), \
            np.concatenate([[grad_t], error.mean(axis=0)])

    theta = minimize(nll, np.zeros(logp.shape[1] + 1), jac=True, method="L-BFGS-B",
                     bounds=[(-3.0, 3.0)] + [(None, None)] * logp.shape[1]).x
    return float(np.exp(theta[0])), theta[1:] - theta[1:].mean()


def calibrate(probs: np.ndarray, temperature: float, bias: np.ndarray) -> np.ndarray:
    z = np.log(np.clip(np.asarray(probs, np.float64), 1e-12, None)) / temperature + bias
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def bayes_ratio(source: Sequence[float], target: Sequence[float]) -> np.ndarray:
    """target[y] / source[y] (0 where source[y] is 0: a class the probabilities cannot
    carry stays at 0): the factor of Bayes' rule, for the files (`shift`) and for
    validation (podium.model.module, in torch) alike."""
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    return np.divide(target, source, out=np.zeros_like(target), where=source > 0)


def shift(probs: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Bayes' rule under label shift: p_target(y | x) ∝ p_source(y | x) target[y] / source[y]."""
    adjusted = np.asarray(probs, np.float64) * bayes_ratio(source, target)[None, :]
    return adjusted / np.clip(adjusted.sum(axis=1, keepdims=True), 1e-300, None)


def estimate_em(probs: np.ndarray, train_prior: np.ndarray, iterations: int = 300,
                tol: float = 1e-8) -> np.ndarray:
    """The test prior by EM (Saerens et al. 2002): alternately shift the test posteriors to
    the current prior and take their mean as the next prior, from the training prior."""
    train_prior = np.asarray(train_prior, np.float64)
    prior = train_prior.copy()
    for _ in range(iterations):
        new = shift(probs, train_prior, prior).mean(axis=0)
        if np.abs(new - prior).max() < tol:
            return new
        prior = new
    return prior


def estimate(test_probs: np.ndarray, oof_probs: np.ndarray, y: np.ndarray,
             train_prior: np.ndarray) -> np.ndarray:
    """The test prior the predictions imply: EM on test probabilities calibrated on the
    OOF rows (labelled, from the training distribution; `fit_calibration`)."""
    temperature, bias = fit_calibration(oof_probs, y)
    return estimate_em(calibrate(test_probs, temperature, bias), train_prior)


def describe(prior: Sequence[float], class_names: Sequence[str], width: int = 12) -> str:
    """`a 0.100, b 0.900` (the first `width` classes, then `...`)."""
    items = [f"{c} {p:.3f}" for c, p in zip(class_names, prior, strict=True)]
    return ", ".join(items[:width]) + (", ..." if len(items) > width else "")
