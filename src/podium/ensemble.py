"""Ensembles: trained runs averaged into one set of class probabilities, optionally
post-processed on their out-of-fold predictions, written as a validated submission. Used by
`make submit` and `make cv` (the test set the runs were trained with) and `make predict`
(the test set of another competition folder).

A member is one trained model: a run folder, or one fold of a cross-validation folder (an
exported bundle holds the same folders). Each folder given gets one weight (default 1); a
cross-validation folder's folds share it equally. A member's probabilities are its
`test_probs.csv`, or its `checkpoints/best.ckpt` predicts again (test-time augmentation, a
new folder), rebuilt from the DataSpec in the checkpoint, which is read with
`torch.load(weights_only=True)`. Functions return values; entry points print.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from podium.errors import PodiumError
from podium.oof import combine_oof, oof_scores, tta_check

log = logging.getLogger(__name__)


@dataclass
class Member:
    """One trained model of an ensemble and its share of the average."""

    run: Path  # a run folder: .hydra/config.yaml, checkpoints/best.ckpt, test_probs.csv, oof.csv
    cfg: DictConfig
    weight: float


def latest_run(log_dir: Path) -> Path:
    """The most recent training run that has predictions or a best checkpoint."""
    found = [p.parent for p in Path(log_dir).glob("train/*/*/test_probs.csv")]
    found += [p.parent.parent for p in Path(log_dir).glob("train/*/*/checkpoints/best.ckpt")]
    if not found:
        raise PodiumError(f"no training run found under {log_dir}/train: run `make train` first")
    return max(found, key=lambda p: p.stat().st_mtime)


def expand_runs(runs: Sequence[Path]) -> list[Path]:
    """Run folders as given; a cross-validation folder stands for all of its folds."""
    expanded = []
    for run in runs:
        if not run.is_dir():
            raise PodiumError(f"run folder {run} not found")
        folds = sorted(p.parent.parent for p in run.glob("*/.hydra/config.yaml"))
        expanded += folds if folds and not (run / ".hydra" / "config.yaml").exists() else [run]
    return expanded


def run_config(run: Path, paths: DictConfig) -> DictConfig:
    """A run's composed config; its `paths` resolve against this session's."""
    path = run / ".hydra" / "config.yaml"
    if not path.is_file():
        raise PodiumError(f"{run} is not a podium run folder (no .hydra/config.yaml)")
    from podium.metrics import resolve_metric

    cfg = OmegaConf.load(path)
    cfg.paths = paths
    return resolve_metric(cfg)  # its metric.monitor/mode as its training resolved them


def gather_members(folders: Sequence[Path], paths: DictConfig,
                   weights: Sequence[float] | None = None) -> list[Member]:
    """One weight per folder given; a cross-validation folder's folds share it equally."""
    weights = list(weights) if weights else [1.0] * len(folders)
    if len(weights) != len(folders) or min(weights) < 0 or sum(weights) <= 0:
        raise PodiumError(f"weights={weights}: give one non-negative weight per folder "
                          f"({len(folders)} given)")
    members = []
    for folder, weight in zip(folders, weights, strict=True):
        runs = expand_runs([folder])
        members += [Member(r, run_config(r, paths), weight / len(runs)) for r in runs]
    return members


def load_checkpoint(path: Path) -> dict:
    """A checkpoint read with `torch.load(weights_only=True)`: tensors and plain types only,
    so a file carrying pickled code is refused, never run."""
    import pickle

    import torch

    if not path.is_file():
        raise PodiumError(f"{path} not found: train the run again or pick another run folder")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[0]
        raise PodiumError(f"{path} is not a plain podium checkpoint and was not loaded "
                          f"(it holds objects that could run code: {reason[:120]})") from err


def load_member(member: Member, tta: list):
    """The member's best checkpoint as a LightningModule (eval mode) and its DataSpec."""
    from podium.build import build_module
    from podium.spec import DataSpec

    checkpoint = load_checkpoint(member.run / "checkpoints" / "best.ckpt")
    spec = DataSpec.from_dict(checkpoint["hyper_parameters"]["spec"])
    module = build_module(member.cfg, spec, pretrained=False)  # the checkpoint has the weights
    module.load_state_dict(checkpoint["state_dict"], strict=False)
    module.tta = tta
    return module.eval(), spec


def predict_test(member: Member, datamodule, tta: list) -> pd.DataFrame:
    """The member's probabilities on `datamodule`'s test set (set up already)."""
    import lightning as L
    import torch

    from podium.submission import probs_frame

    module, spec = load_member(member, tta)
    trainer = L.Trainer(accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    probs = torch.cat(trainer.predict(module, dataloaders=datamodule.predict_test_dataloader()))
    return probs_frame(datamodule.test_ids, probs.numpy(), spec.class_names, spec.id_col)


def member_probs(member: Member, tta: list) -> pd.DataFrame:
    """What training predicted for its own test set, or a new prediction (TTA, or no file)."""
    return member_predictions(member, tta)[0]


def member_predictions(member: Member, tta: list) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(test probabilities, OOF probabilities) of a member on its own competition: read from
    test_probs.csv / oof.csv, or, with `tta` (or no file), both predicted again with the
    same views, the OOF on its validation split."""
    import lightning as L
    import torch

    from podium.submission import probs_frame

    test_file = member.run / "test_probs.csv"
    data = member.cfg.data
    if test_file.is_file() and not tta:
        return pd.read_csv(test_file, dtype={data.id_col: str}), member_oof(member)
    from podium.build import build_datamodule

    datamodule = build_datamodule(member.cfg)
    datamodule.setup("predict")
    module, spec = load_member(member, tta)
    trainer = L.Trainer(accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    test, val = (torch.cat(trainer.predict(module, dataloaders=loader)).numpy() for loader in
                 (datamodule.predict_test_dataloader(), datamodule.val_dataloader()))
    oof = probs_frame(datamodule.val_ids, val, spec.class_names, spec.id_col)
    oof.insert(1, "fold", datamodule.fold or 0)
    oof.insert(2, data.target_col, [str(v) for v in datamodule.val_labels])
    return probs_frame(datamodule.test_ids, test, spec.class_names, spec.id_col), oof


def member_oof(member: Member) -> pd.DataFrame | None:
    """The member's oof.csv (its validation split's probabilities), if it has one."""
    path, data = member.run / "oof.csv", member.cfg.data
    if not path.is_file():
        return None
    return pd.read_csv(path, dtype={data.id_col: str, data.target_col: str},
                       keep_default_na=False)  # an empty multi-label set stays ""


def average_probs(frames: list[pd.DataFrame], runs: list[Path],
                  weights: Sequence[float] | None = None) -> pd.DataFrame:
    """Weighted mean of the runs' probabilities; they must share ids and classes."""
    first = frames[0]
    for run, frame in zip(runs[1:], frames[1:], strict=True):
        if list(frame.columns) != list(first.columns):
            raise PodiumError(
                f"{run} was trained on classes {list(frame.columns[1:])}, {runs[0]} on "
                f"{list(first.columns[1:])}: only runs of the same competition can be averaged"
            )
        if not frame.iloc[:, 0].equals(first.iloc[:, 0]):
            raise PodiumError(f"{run} predicted other test ids than {runs[0]}")
    weights = list(weights) if weights else [1.0] * len(frames)
    stacked = np.stack([f.iloc[:, 1:].to_numpy(dtype=np.float64) for f in frames])
    mean = np.tensordot(np.asarray(weights) / sum(weights), stacked, axes=1)
    return first.iloc[:, :1].join(pd.DataFrame(mean, columns=first.columns[1:]))


def write_ensemble(members: list[Member], output_dir: Path, sample: pd.DataFrame,
                   frames: list[pd.DataFrame], oofs: Sequence[pd.DataFrame | None] = (),
                   fmt: str = "auto", postprocess=None, answers: Path | None = None) -> dict:
    """Average the members' test probabilities (`frames`) into `output_dir`'s submission
    shaped like `sample`. Every step is learned on, and scored on, the members' combined OOF
    predictions (`oofs`, the same kind of predictions as `frames`) by the competition's
    metric: post-processing, and for a binary task scored on labels the decision threshold.
    Returns a summary for metrics.json (members and weights, OOF scores, `format`,
    `submission`, the demo leaderboard score where there is an answer key)."""
    from podium.demo import leaderboard
    from podium.metrics import LABEL_METRICS
    from podium.postprocess import fit_postprocess
    from podium.submission import choose_format, write_submission
    from podium.thresholds import best_threshold

    runs = [m.run for m in members]
    probs = average_probs(frames, runs, [m.weight for m in members])
    cfg = members[0].cfg
    data, metric = cfg.data, cfg.metric.competition
    id_col, class_names = data.id_col, list(probs.columns[1:])
    task = data.get("task", "multiclass")
    test = probs.iloc[:, 1:].to_numpy()
    total = sum(m.weight for m in members)
    summary: dict = {"runs": [str(r) for r in runs], "metric": metric,
                     "weights": [m.weight / total for m in members]}
    oof = combine_oof(oofs, id_col, data.target_col)
    if oof is not None:
        summary["oof"] = oof_scores(oof, class_names, data.target_col, task, cfg.metric.k)
    label_metric = metric in LABEL_METRICS or task == "multilabel"
    if postprocess and oof is not None and label_metric:
        adjust, summary["postprocess"] = fit_postprocess(postprocess, oof, class_names,
                                                         data.target_col, metric, task)
        test = adjust(test)
        oof = oof.assign(**dict(zip(class_names, adjust(oof[class_names].to_numpy()).T,
                                    strict=True)))
    elif postprocess:
        summary["warnings"] = [f"postprocess skipped: it needs oof.csv and a label metric "
                               f"(metric.competition={metric})"]
    shape = choose_format(fmt, sample, id_col, class_names, task, f"val/{metric}",
                          cfg.metric.k)
    if task == "binary" and shape.format == "label" and oof is not None \
            and metric in LABEL_METRICS:
        index = {str(c): i for i, c in enumerate(class_names)}
        y = oof[data.target_col].astype(str).map(index).to_numpy()
        summary["threshold"] = best_threshold(oof[class_names[1]].to_numpy(), y, metric)
        shape = replace(shape, threshold=summary["threshold"]["threshold"])
    summary["format"] = {"name": shape.format, "why": shape.why}
    path = write_submission(output_dir, sample, probs[id_col].tolist(), test, class_names, id_col,
                            task, shape)
    summary["submission"] = str(path)
    summary.update(leaderboard(path, answers, id_col, task))
    return summary


def submit_members(members: list[Member], output_dir: Path, fmt: str = "auto",
                   postprocess=None, tta: Sequence = (), force: bool = False) -> dict:
    """The ensemble on the test set of the competition the members were trained on.

    Test-time augmentation is proven first: the members' OOF predictions with the same
    views are scored against those without; views that lower the OOF score are dropped
    with a warning (unless `force`)."""
    from podium.io import read_csv

    data = members[0].cfg.data
    sample = read_csv(Path(data.root) / data.sample_submission, [data.id_col],
                      "the sample submission")
    chosen = [member_predictions(m, []) for m in members]
    checks = {}
    if tta:
        with_tta = [member_predictions(m, list(tta)) for m in members]
        checks = tta_check(members, chosen, with_tta, force)
        if checks["tta"]["used"]:
            chosen = with_tta
    frames, oofs = zip(*chosen, strict=True)
    answers = Path(data.answers) if data.get("answers") else None
    summary = write_ensemble(members, output_dir, sample, list(frames), oofs, fmt, postprocess,
                             answers)
    summary.update(checks)
    summary["warnings"] = summary.get("warnings", []) + checks.get("warnings", [])
    return summary


def print_summary(summary: dict) -> None:
    """What `make submit`, `make cv` and `make predict` print about an ensemble they wrote:
    every member and its weight, every OOF check before/after, the ensemble's OOF score."""
    from podium.demo import leaderboard_lines

    for run, weight in zip(summary["runs"], summary["weights"], strict=True):
        print(f"member {run}: weight {weight:.3f}")
    metric = summary.get("metric")
    for step in ("tta", "postprocess", "threshold"):
        report = summary.get(step)
        if report and "before" in report:
            name = report.get("name", step)
            extra = f" at {report['threshold']:.4f}" if step == "threshold" else ""
            print(f"{name}{extra}: OOF {report['metric']} {report['before']:.4f} -> "
                  f"{report['after']:.4f}")
    for warning in summary.get("warnings", []):
        print(f"warning: {warning}")
    if "oof" in summary and f"oof/{metric}" in summary["oof"]:
        print(f"ensemble OOF {metric}: {summary['oof'][f'oof/{metric}']:.4f}")
    print(f"submission format: {summary['format']['name']} ({summary['format']['why']})")
    for line in leaderboard_lines(summary):
        print(line)
    print(f"averaged {len(summary['runs'])} run(s) into {summary['submission']}")
