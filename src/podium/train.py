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

from podium.config import CONFIG_DIR, check_types, print_config
from podium.errors import PodiumError, one_line_errors

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, then validate and predict with the best checkpoint; returns the metrics."""
    import lightning as L
    from lightning.pytorch.utilities import rank_zero_only

    from podium.build import best_checkpoint, build_datamodule, build_module, build_trainer
    from podium.callbacks import SubmissionWriter
    from podium.checkpoints import checkpoint_epoch
    from podium.demo import leaderboard
    from podium.io import write_json
    from podium.metrics import resolve_metric

    check_types(cfg)
    quiet_known_noise(cfg)
    resolve_metric(cfg)  # metric.monitor/mode: null -> the task's key, inferred mode
    if cfg.get("print_config", True) and rank_zero_only.rank == 0:  # true | full | false
        print_config(cfg, Path(cfg.paths.output_dir) / "config_tree.txt",
                     full=cfg.print_config == "full")
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
    tta = None
    if module.tta and trainer.world_size == 1:  # proven on the validation split first
        from podium.oof import validation_tta_check

        tta = validation_tta_check(module, datamodule, cfg.metric.competition, cfg.metric.k,
                                   cfg.get("force", False))
    trainer.predict(module, datamodule=datamodule, ckpt_path=ckpt, return_predictions=False)

    writer = next((c for c in trainer.callbacks if isinstance(c, SubmissionWriter)), None)
    extra = {"tta": tta} if tta else {}
    if writer is not None and writer.path is not None:  # the file this run wrote
        metrics.update(leaderboard(writer.path, datamodule.answers, datamodule.id_col,
                                   datamodule.task))
        extra.update({"threshold": writer.threshold} if writer.threshold else {})
    output_dir = Path(cfg.paths.output_dir)
    if trainer.is_global_zero:
        write_json(output_dir / "metrics.json", {
            **metrics, **extra, "monitor": cfg.metric.monitor,
            "competition": cfg.metric.competition, "best_checkpoint": ckpt,
            "best_epoch": checkpoint_epoch(ckpt), "epochs": trainer.current_epoch,
            "validation": datamodule.has_validation,
        })
    return metrics


def report(output_dir: Path, metrics: dict[str, float], monitor: str) -> None:
    """The lines a competitor looks for at the end of a run."""
    from podium.demo import leaderboard_lines

    print(f"run folder: {output_dir}")
    if monitor in metrics:
        print(f"best {monitor}: {metrics[monitor]:.4f}")
    else:
        print("no validation split (data.val_fraction=0): best.ckpt is the last epoch, "
              "no oof.csv")
    for line in leaderboard_lines(metrics):
        print(line)


def report_checks(output_dir: Path) -> None:
    """The checks a run made before writing its submission (TTA, decision threshold)."""
    import json

    path = output_dir / "metrics.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    for step in ("tta", "threshold"):
        report = saved.get(step)
        if report:
            at = f" at {report['threshold']:.4f}" if step == "threshold" else ""
            print(f"{step}{at}: validation {report['metric']} {report['before']:.4f} -> "
                  f"{report['after']:.4f}")
            if report.get("warning"):
                print(f"warning: {report['warning']}")


class KnownNoise(logging.Filter):
    """Drops Lightning's info lines that every run prints and no run acts on: the device
    inventory (podium's `fit: ...` line names the device used) and the litlogger tip."""

    PREFIXES = ("GPU available: ", "TPU available: ", "💡 Tip: For seamless cloud logging")

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.INFO
                    and str(record.msg).startswith(self.PREFIXES))


LIGHTNING_NOISE = KnownNoise()


def quiet_known_noise(cfg: DictConfig) -> None:
    """Process-wide settings a run makes first (never the builders: a notebook that only
    builds a Trainer keeps its warnings filters and environment as they were)."""
    # an epoch shorter than log_every_n_steps is fine: the loggers count steps across epochs
    warnings.filterwarnings("ignore", message="The number of training batches .* is smaller "
                            "than the logging interval")
    # torch deprecates LeafSpec; Lightning's own _pytree.py still uses it (not podium's to fix)
    warnings.filterwarnings("ignore", category=FutureWarning,
                            message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(LIGHTNING_NOISE)  # the same filter object: added once
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
        report_checks(Path(cfg.paths.output_dir))
        report(Path(cfg.paths.output_dir), metrics, cfg.metric.monitor)
    if no_validation(cfg):
        return None
    if cfg.metric.monitor not in metrics:
        raise PodiumError(never_logged(cfg.metric.monitor, metrics))
    return metrics[cfg.metric.monitor]


if __name__ == "__main__":
    main()
