"""`python -m podium.train [overrides]`: the whole competition loop, top to bottom.

config -> data spec -> module -> trainer (callbacks write the files) -> fit -> validate and
predict the test set with the best checkpoint -> metrics.json.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import hydra
from omegaconf import DictConfig

from podium.build import CONFIG_DIR, check_types, print_config
from podium.errors import PodiumError, one_line_errors

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, then validate and predict with the best checkpoint; returns the metrics."""
    import lightning as L
    from lightning.pytorch.utilities import rank_zero_only

    from podium.build import best_checkpoint, build_datamodule, build_module, build_trainer
    from podium.callbacks import SubmissionWriter
    from podium.demo import leaderboard
    from podium.io import write_json
    from podium.metrics import resolve_metric

    check_types(cfg)
    quiet_known_noise(cfg)
    resolve_metric(cfg)  # metric.monitor/mode: null -> the task's key, inferred mode
    if cfg.get("print_config", True) and rank_zero_only.rank == 0:
        print_config(cfg, Path(cfg.paths.output_dir) / "config_tree.txt")
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")  # reads and checks everything before any training
    module = build_module(cfg, datamodule.spec)
    trainer = build_trainer(cfg)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    ckpt = best_checkpoint(trainer)
    if datamodule.has_validation:
        metrics = trainer.validate(module, datamodule=datamodule, ckpt_path=ckpt,
                                   verbose=False)[0]
    else:  # data.val_fraction=0: the last epoch's training metrics, nothing validated
        metrics = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
    metrics = {k: float(v) for k, v in metrics.items()}
    trainer.predict(module, datamodule=datamodule, ckpt_path=ckpt, return_predictions=False)

    writer = next((c for c in trainer.callbacks if isinstance(c, SubmissionWriter)), None)
    if writer is not None and writer.path is not None:  # the file this run wrote
        metrics.update(leaderboard(writer.path, datamodule.answers, datamodule.id_col,
                                   datamodule.task))
    output_dir = Path(cfg.paths.output_dir)
    if trainer.is_global_zero:
        write_json(output_dir / "metrics.json", {
            **metrics, "monitor": cfg.metric.monitor, "best_checkpoint": ckpt,
            "epochs": trainer.current_epoch, "best_epoch": best_epoch(trainer),
            "validation": datamodule.has_validation,
        })
    return metrics


def best_epoch(trainer) -> int | None:
    """The 0-based epoch of best.ckpt, as the checkpoint callback recorded it."""
    return getattr(trainer.checkpoint_callback, "best_epoch", None)


def report(output_dir: Path, metrics: dict[str, float], monitor: str) -> None:
    """The lines a competitor looks for at the end of a run."""
    print(f"run folder: {output_dir}")
    if monitor in metrics:
        print(f"best {monitor}: {metrics[monitor]:.4f}")
    else:
        print("no validation split (data.val_fraction=0): best.ckpt is the last epoch, "
              "no oof.csv")
    if "leaderboard/f1_macro" in metrics:
        print(f"demo leaderboard macro-F1: {metrics['leaderboard/f1_macro']:.4f}")
    if "leaderboard/mae" in metrics:
        print(f"demo leaderboard MAE: {metrics['leaderboard/mae']:.4f}")


def quiet_known_noise(cfg: DictConfig) -> None:
    """Process-wide settings a run makes first (never the builders: a notebook that only
    builds a Trainer keeps its warnings filters and environment as they were)."""
    # an epoch shorter than log_every_n_steps is fine: the loggers count steps across epochs
    warnings.filterwarnings("ignore", message="The number of training batches .* is smaller "
                            "than the logging interval")
    if any(str(c.get("tracking_uri", "")).startswith("file:")
           for c in (cfg.get("logger") or {}).values() if c):
        # logger=mlflow's local file store: recent mlflow refuses it unless opted in
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@one_line_errors
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the monitored metric (the sweep objective)."""
    from lightning.pytorch.utilities import rank_zero_only

    from podium.build import no_validation
    from podium.metrics import never_logged

    metrics = train(cfg)
    if rank_zero_only.rank == 0:
        report(Path(cfg.paths.output_dir), metrics, cfg.metric.monitor)
    if no_validation(cfg):
        return None
    if cfg.metric.monitor not in metrics:
        raise PodiumError(never_logged(cfg.metric.monitor, metrics))
    return metrics[cfg.metric.monitor]


if __name__ == "__main__":
    main()
