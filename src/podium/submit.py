"""`python -m podium.submit runs=[dir,...]`: average runs' test probabilities into one submission.

A run is a training run folder or a cross-validation folder (all its folds). Each run
gives its `test_probs.csv`, or, when that is missing or test-time augmentation is asked
for (`tta=hflip`), its `checkpoints/best.ckpt` predicts the test set again. The class
probabilities are averaged (optionally weighted), optionally post-processed with what the
runs' out-of-fold predictions teach (`postprocess=f1_offsets|logit_adjust`), and written
as a validated `submission.csv` with the averaged `test_probs.csv` into a new
`logs/submit/...` folder.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from podium.errors import PodiumError, one_line_errors
from podium.train import CONFIG_DIR

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


def predict_run(run: Path, cfg: DictConfig, tta: list) -> pd.DataFrame:
    """Predict the test set with a run's best checkpoint (and test-time augmentation)."""
    import lightning as L
    import torch

    from podium.submission import probs_frame
    from podium.train import build_datamodule, build_module

    ckpt_path = run / "checkpoints" / "best.ckpt"
    if not ckpt_path.is_file():
        raise PodiumError(f"{run} has no checkpoints/best.ckpt to predict with")
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    hparams = checkpoint["hyper_parameters"]
    datamodule = build_datamodule(cfg)
    datamodule.setup("predict")
    module = build_module(cfg, hparams["class_names"], hparams["mean"], hparams["std"])
    module.load_state_dict(checkpoint["state_dict"], strict=False)
    module.tta = tta
    trainer = L.Trainer(accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    probs = torch.cat(trainer.predict(module, dataloaders=datamodule.test_images_dataloader()))
    return probs_frame(datamodule.test_ids, probs.numpy(), hparams["class_names"],
                       datamodule.id_col)


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
    """Average the runs into `output_dir`'s submission; returns a summary for metrics.json."""
    from podium.datamodule import read_csv
    from podium.postprocess import fit_postprocess, read_oof
    from podium.submission import leaderboard_score, write_submission

    frames = [run_probs(r, c, tta or []) for r, c in zip(runs, configs, strict=True)]
    probs = average_probs(frames, runs, weights)
    data = configs[0].data
    id_col, class_names = data.id_col, list(probs.columns[1:])
    test = probs.iloc[:, 1:].to_numpy()
    summary: dict = {"runs": [str(r) for r in runs], "weights": weights}
    if postprocess:
        oof = read_oof(runs, id_col, data.target_col)
        adjust, report = fit_postprocess(postprocess, oof, class_names, data.target_col)
        test = adjust(test)
        summary["postprocess"] = report
        print(f"{report['name']}: OOF macro-F1 {report['before']:.4f} -> {report['after']:.4f}")

    sample = read_csv(Path(data.root) / data.sample_submission, [id_col], "the sample submission")
    task = data.get("task", "multiclass")
    path = write_submission(output_dir, sample, probs[id_col].tolist(), test, class_names, id_col,
                            task)
    summary["submission"] = str(path)
    answers = Path(data.answers) if data.get("answers") else None
    if answers and answers.is_file() and task == "regression":
        summary["leaderboard/mae"] = leaderboard_score(path, answers, id_col, task)
        print(f"demo leaderboard MAE: {summary['leaderboard/mae']:.4f}")
    elif answers and answers.is_file():
        summary["leaderboard/f1_macro"] = leaderboard_score(path, answers, id_col)
        print(f"demo leaderboard macro-F1: {summary['leaderboard/f1_macro']:.4f}")
    print(f"averaged {len(runs)} run(s) into {path}")
    return summary


def submit(cfg: DictConfig) -> Path:
    """Average the given runs (default: the latest) and write the submission."""
    from hydra.utils import instantiate

    from podium.submission import write_json

    given = [Path(r) for r in cfg.runs] or [latest_run(Path(cfg.paths.log_dir))]
    runs = expand_runs(given)
    configs = [run_config(run, cfg.paths) for run in runs]
    tta = [instantiate(t) for t in cfg.get("tta") or []]
    output_dir = Path(cfg.paths.output_dir)
    summary = write_ensemble(runs, configs, output_dir, cfg.weights, tta, cfg.get("postprocess"))
    write_json(output_dir / "metrics.json", summary)
    return Path(summary["submission"])


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="submit")
@one_line_errors
def main(cfg: DictConfig) -> None:
    submit(cfg)


if __name__ == "__main__":
    main()
