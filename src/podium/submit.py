"""`python -m podium.submit runs=[dir,...]`: average runs' test probabilities into one submission.

Each run folder gives its `test_probs.csv`, or, when that is missing, its
`checkpoints/best.ckpt` predicts the test set again. The class probabilities are
averaged (optionally weighted) and written as a validated `submission.csv` with the
averaged `test_probs.csv` into a new `logs/submit/...` folder.
"""

from __future__ import annotations

import logging
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


def run_config(run: Path) -> DictConfig:
    path = run / ".hydra" / "config.yaml"
    if not path.is_file():
        raise PodiumError(f"{run} is not a podium run folder (no .hydra/config.yaml)")
    return OmegaConf.load(path)


def predict_run(run: Path, cfg: DictConfig) -> pd.DataFrame:
    """Predict the test set with a run's best checkpoint (when it left no test_probs.csv)."""
    import lightning as L
    import torch

    from podium.submission import probs_frame
    from podium.train import build_datamodule, build_module

    ckpt_path = run / "checkpoints" / "best.ckpt"
    if not ckpt_path.is_file():
        raise PodiumError(f"{run} has neither test_probs.csv nor checkpoints/best.ckpt")
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    hparams = checkpoint["hyper_parameters"]
    datamodule = build_datamodule(cfg)
    datamodule.setup("predict")
    module = build_module(cfg, hparams["class_names"], hparams["mean"], hparams["std"])
    module.load_state_dict(checkpoint["state_dict"], strict=False)
    trainer = L.Trainer(accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    probs = torch.cat(trainer.predict(module, dataloaders=datamodule.predict_dataloader()))
    return probs_frame(datamodule.test_ids, probs.numpy(), hparams["class_names"],
                       datamodule.id_col)


def run_probs(run: Path, cfg: DictConfig) -> pd.DataFrame:
    path = run / "test_probs.csv"
    if path.is_file():
        return pd.read_csv(path, dtype={cfg.data.id_col: str})
    return predict_run(run, cfg)


def average_probs(frames: list[pd.DataFrame], runs: list[Path],
                  weights: list[float] | None) -> pd.DataFrame:
    """Weighted mean of the runs' probabilities; they must share ids and classes."""
    first = frames[0]
    for run, frame in zip(runs[1:], frames[1:], strict=False):
        if list(frame.columns) != list(first.columns):
            raise PodiumError(
                f"{run} was trained on classes {list(frame.columns[1:])}, {runs[0]} on "
                f"{list(first.columns[1:])}: only runs of the same competition can be averaged"
            )
        if not frame.iloc[:, 0].equals(first.iloc[:, 0]):
            raise PodiumError(f"{run} predicted other test ids than {runs[0]}")
    weights = list(weights) if weights else [1.0] * len(frames)
    if len(weights) != len(frames) or min(weights) < 0 or sum(weights) <= 0:
        raise PodiumError(f"weights={weights}: give one non-negative weight per run")
    stacked = np.stack([f.iloc[:, 1:].to_numpy(dtype=np.float64) for f in frames])
    mean = np.tensordot(np.asarray(weights) / sum(weights), stacked, axes=1)
    return first.iloc[:, :1].join(pd.DataFrame(mean, columns=first.columns[1:]))


def submit(cfg: DictConfig) -> Path:
    """Average the given runs (default: the latest) and write the submission."""
    from podium.datamodule import read_csv
    from podium.submission import leaderboard_score, write_json, write_submission

    runs = [Path(r) for r in cfg.runs] or [latest_run(Path(cfg.paths.log_dir))]
    configs = [run_config(run) for run in runs]
    for c in configs:  # the run's own paths resolve against this (submit) session
        c.paths = cfg.paths
    probs = average_probs([run_probs(r, c) for r, c in zip(runs, configs, strict=False)], runs, cfg.weights)

    data = configs[0].data
    root, id_col = Path(data.root), data.id_col
    sample = read_csv(root / data.sample_submission, [id_col], "the sample submission")
    output_dir = Path(cfg.paths.output_dir)
    path = write_submission(output_dir, sample, probs[id_col].tolist(),
                            probs.iloc[:, 1:].to_numpy(), list(probs.columns[1:]), id_col)
    summary = {"runs": [str(r) for r in runs], "weights": cfg.weights}
    answers = Path(data.answers) if data.get("answers") else None
    if answers and answers.is_file():
        summary["leaderboard/f1_macro"] = leaderboard_score(path, answers, id_col)
        print(f"demo leaderboard macro-F1: {summary['leaderboard/f1_macro']:.4f}")
    write_json(output_dir / "metrics.json", summary)
    print(f"averaged {len(runs)} run(s) into {path}")
    return path


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="submit")
@one_line_errors
def main(cfg: DictConfig) -> None:
    submit(cfg)


if __name__ == "__main__":
    main()
