"""`python -m podium.train [overrides]`: the whole competition loop, top to bottom.

compose config -> seed -> read the data -> build the module -> fit -> validate and
predict the test set with the best checkpoint -> submission.csv + metrics.json.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from podium.errors import PodiumError, one_line_errors

log = logging.getLogger(__name__)
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def build_datamodule(cfg: DictConfig):
    """The datamodule from `data`, with the `augment` and `sampler` groups plugged in."""
    from hydra.utils import instantiate

    return instantiate(
        cfg.data,
        train_transform=instantiate(cfg.augment.train) if cfg.augment.get("train") else None,
        sampler=instantiate(cfg.sampler) if cfg.get("sampler") else None,
    )


def build_loss(cfg: DictConfig, class_counts: list[int]):
    """Instantiate `loss`, injecting the training class counts when the loss takes them."""
    from hydra.utils import instantiate

    factory = instantiate(cfg.loss)
    if "class_counts" in inspect.signature(factory).parameters:
        return factory(class_counts=class_counts)
    return factory()


def build_module(cfg: DictConfig, class_names: list[str], mean: list[float],
                 std: list[float], class_counts: list[int] | None = None):
    """The LightningModule; class names and image statistics come from the data."""
    from hydra.utils import instantiate

    from podium.module import ClassifierModule

    net = instantiate(cfg.model.net, num_classes=len(class_names), in_chans=len(mean))
    if cfg.model.get("compile"):
        import torch

        net = torch.compile(net)
    return ClassifierModule(
        net=net,
        loss=build_loss(cfg, class_counts) if class_counts is not None else None,
        optimizer=build_optimizer_factory(cfg),
        scheduler=instantiate(cfg.scheduler, _convert_="all") if cfg.get("scheduler") else None,
        class_names=class_names,
        mean=mean,
        std=std,
        channels_last=cfg.model.get("channels_last", False),
        tta=[instantiate(t) for t in cfg.get("tta") or []],
    )


def build_optimizer_factory(cfg: DictConfig):
    """`optimizer` as a factory `network -> Optimizer` with podium's parameter groups.

    The group is any torch.optim class as a Hydra partial plus podium's own key
    `no_decay_norm_bias`, which is taken out before torch sees the arguments;
    `model.backbone_lr_mult` comes from the model group.
    """
    from functools import partial

    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from podium.optim import build_optimizer

    torch_cfg = OmegaConf.to_container(cfg.optimizer)
    no_decay = torch_cfg.pop("no_decay_norm_bias", False)
    return partial(build_optimizer, optimizer=instantiate(torch_cfg), no_decay_norm_bias=no_decay,
                   backbone_lr_mult=cfg.model.get("backbone_lr_mult", 1.0))


def build_trainer(cfg: DictConfig, **kwargs: Any):
    from hydra.utils import instantiate

    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **kwargs)


def best_checkpoint(trainer) -> str | None:
    """The best checkpoint's path, or None (fast_dev_run saves none: use current weights)."""
    callback = trainer.checkpoint_callback
    path = callback.best_model_path if callback is not None else ""
    return path if path and Path(path).exists() else None


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, then validate and predict with the best checkpoint; returns the metrics."""
    import lightning as L

    from podium.submission import leaderboard_score, write_json

    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")  # reads and checks everything before any training
    module = build_module(cfg, datamodule.class_names, datamodule.mean, datamodule.std,
                          datamodule.class_counts)
    trainer = build_trainer(cfg)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    ckpt = best_checkpoint(trainer)
    metrics = trainer.validate(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)[0]
    metrics = {k: float(v) for k, v in metrics.items()}
    trainer.predict(module, datamodule=datamodule, ckpt_path=ckpt, return_predictions=False)

    output_dir = Path(cfg.paths.output_dir)
    submission = output_dir / "submission.csv"
    if datamodule.answers and datamodule.answers.is_file() and submission.is_file():
        metrics["leaderboard/f1_macro"] = leaderboard_score(
            submission, datamodule.answers, datamodule.id_col
        )
    if trainer.is_global_zero:
        write_json(output_dir / "metrics.json", {
            **metrics, "monitor": cfg.metric.monitor, "best_checkpoint": ckpt,
            "epochs": trainer.current_epoch,
        })
        report(output_dir, metrics, cfg.metric.monitor)
    return metrics


def report(output_dir: Path, metrics: dict[str, float], monitor: str) -> None:
    """The three lines a competitor looks for at the end of a run."""
    print(f"run folder: {output_dir}")
    print(f"best {monitor}: {metrics.get(monitor, float('nan')):.4f}")
    if "leaderboard/f1_macro" in metrics:
        print(f"demo leaderboard macro-F1: {metrics['leaderboard/f1_macro']:.4f}")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@one_line_errors
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the monitored metric (the sweep objective)."""
    metrics = train(cfg)
    if cfg.metric.monitor not in metrics:
        raise PodiumError(
            f"metric.monitor={cfg.metric.monitor} was never logged; logged keys: "
            f"{', '.join(sorted(metrics))}"
        )
    return metrics[cfg.metric.monitor]


if __name__ == "__main__":
    main()
