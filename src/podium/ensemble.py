"""Ensembles: run folders (and cross-validation folders, one per fold) averaged into one
set of class probabilities, optionally post-processed on their OOF predictions, written as a
validated submission. Used by `make submit` and by `make cv` after its last fold.

A run gives its `test_probs.csv`, or, when that is missing or test-time augmentation is
asked for, its `checkpoints/best.ckpt` predicts the test set again (rebuilt from the
DataSpec stored in the checkpoint). Functions return values; entry points print.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from podium.errors import PodiumError

log = logging.getLogger(__name__)


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
    cfg = OmegaConf.load(path)
    cfg.paths = paths
    return cfg


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
                          f"(it asks to run code: {reason[:160]})") from err


def load_run_module(run: Path, cfg: DictConfig, tta: list):
    """The run's best checkpoint as a LightningModule (eval mode) and its DataSpec."""
    from podium.build import build_module
    from podium.spec import DataSpec

    checkpoint = load_checkpoint(run / "checkpoints" / "best.ckpt")
    spec = DataSpec.from_dict(checkpoint["hyper_parameters"]["spec"])
    module = build_module(cfg, spec, pretrained=False)  # the checkpoint has the weights
    module.load_state_dict(checkpoint["state_dict"], strict=False)
    module.tta = tta
    return module.eval(), spec


def predict_run(run: Path, cfg: DictConfig, tta: list) -> pd.DataFrame:
    """Predict the test set with a run's best checkpoint (and test-time augmentation)."""
    import lightning as L
    import torch

    from podium.build import build_datamodule
    from podium.submission import probs_frame

    module, spec = load_run_module(run, cfg, tta)
    datamodule = build_datamodule(cfg)
    datamodule.setup("predict")
    trainer = L.Trainer(accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    probs = torch.cat(trainer.predict(module, dataloaders=datamodule.predict_test_dataloader()))
    return probs_frame(datamodule.test_ids, probs.numpy(), spec.class_names, spec.id_col)


def run_probs(run: Path, cfg: DictConfig, tta: list) -> pd.DataFrame:
    path = run / "test_probs.csv"
    if path.is_file() and not tta:
        return pd.read_csv(path, dtype={cfg.data.id_col: str})
    return predict_run(run, cfg, tta)

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
    if len(weights) != len(frames) or min(weights) < 0 or sum(weights) <= 0:
        raise PodiumError(f"weights={weights}: give one non-negative weight per run "
                          f"({len(frames)} runs)")
    stacked = np.stack([f.iloc[:, 1:].to_numpy(dtype=np.float64) for f in frames])
    mean = np.tensordot(np.asarray(weights) / sum(weights), stacked, axes=1)
    return first.iloc[:, :1].join(pd.DataFrame(mean, columns=first.columns[1:]))


def write_ensemble(runs: list[Path], configs: list[DictConfig], output_dir: Path,
                   weights: Sequence[float] | None = None, tta: list | None = None,
                   postprocess: DictConfig | None = None) -> dict:
    """Average the runs into `output_dir`'s submission; returns a summary for metrics.json
    (`submission`: the file written; `postprocess`: its OOF before/after; the demo
    leaderboard score where the competition has an answer key)."""
    from podium.demo import leaderboard
    from podium.io import read_csv
    from podium.postprocess import fit_postprocess, read_oof
    from podium.submission import write_submission

    frames = [run_probs(r, c, tta or []) for r, c in zip(runs, configs, strict=True)]
    probs = average_probs(frames, runs, weights)
    data = configs[0].data
    id_col, class_names = data.id_col, list(probs.columns[1:])
    test = probs.iloc[:, 1:].to_numpy()
    summary: dict = {"runs": [str(r) for r in runs], "weights": weights}
    if postprocess:
        oof = read_oof(runs, id_col, data.target_col)
        adjust, summary["postprocess"] = fit_postprocess(postprocess, oof, class_names,
                                                         data.target_col)
        test = adjust(test)

    sample = read_csv(Path(data.root) / data.sample_submission, [id_col], "the sample submission")
    task = data.get("task", "multiclass")
    path = write_submission(output_dir, sample, probs[id_col].tolist(), test, class_names, id_col,
                            task)
    summary["submission"] = str(path)
    answers = Path(data.answers) if data.get("answers") else None
    summary.update(leaderboard(path, answers, id_col, task))
    return summary


def print_summary(summary: dict) -> None:
    """What `make submit` / `make cv` print about an ensemble they wrote."""
    report = summary.get("postprocess")
    if report:
        print(f"{report['name']}: OOF macro-F1 {report['before']:.4f} -> {report['after']:.4f}")
    if "leaderboard/mae" in summary:
        print(f"demo leaderboard MAE: {summary['leaderboard/mae']:.4f}")
    if "leaderboard/f1_macro" in summary:
        print(f"demo leaderboard macro-F1: {summary['leaderboard/f1_macro']:.4f}")
    print(f"averaged {len(summary['runs'])} run(s) into {summary['submission']}")
