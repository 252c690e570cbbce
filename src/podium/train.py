"""`python -m podium.train [overrides]`: the whole competition loop, top to bottom.

compose config -> seed -> read the data -> build the module -> fit -> validate and
predict the test set with the best checkpoint -> submission.csv + metrics.json.
"""

from __future__ import annotations

import inspect
import logging
import os
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
        sample_transform=instantiate(cfg.augment.get("sample")),
        sampler=instantiate(cfg.sampler) if cfg.get("sampler") else None,
    )


def build_loss(cfg: DictConfig, class_counts: list[int]):
    """Instantiate `loss`, injecting the training class counts when the loss takes them."""
    from hydra.utils import instantiate

    factory = instantiate(cfg.loss)
    check_loss_task(cfg)
    if "class_counts" in inspect.signature(factory).parameters:
        return factory(class_counts=class_counts)
    return factory()


REGRESSION_LOSSES = ("torch.nn.MSELoss", "torch.nn.L1Loss", "torch.nn.HuberLoss",
                     "torch.nn.SmoothL1Loss")


def check_loss_task(cfg: DictConfig) -> None:
    """A classification loss on float targets (or the reverse) trains silently wrong."""
    regression = cfg.data.get("task", "multiclass") == "regression"
    if regression != (cfg.loss.get("_target_") in REGRESSION_LOSSES):
        raise PodiumError(
            f"loss {cfg.loss.get('_target_')} does not fit data.task={cfg.data.get('task')}: "
            + ("use loss=mse|l1|huber" if regression else "use a classification loss, e.g. loss=ce")
        )


def build_module(cfg: DictConfig, class_names: list[str], mean: list[float],
                 std: list[float], class_counts: list[int] | None = None,
                 net_inputs: dict[str, int] | None = None):
    """The LightningModule; class names and input statistics come from the data.

    `net_inputs`: the network's input size argument, `{"in_chans": C}` for images (the
    default, from `mean`) or `{"in_features": F}` for tabular data. Regression has one
    output (`class_names` is then `[target_col]`).
    """
    from hydra.utils import instantiate

    from podium.metrics import resolve_metric
    from podium.module import ClassifierModule

    resolve_metric(cfg)
    net_inputs = dict(net_inputs or {"in_chans": len(mean)})
    net = instantiate(cfg.model.net, num_classes=len(class_names), **net_inputs)
    images = "in_chans" in net_inputs  # image augmentation does not apply to tabular features
    augment = instantiate(cfg.augment.get("batch")) if images and cfg.get("augment") else None
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
        augment=augment,
        tta=[instantiate(t) for t in cfg.get("tta") or []],
        task=cfg.data.get("task", "multiclass"),
        metric_k=cfg.metric.k,
        net_inputs=net_inputs,
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
    import warnings

    from hydra.utils import instantiate

    from podium.callbacks import MonitorCheck
    from podium.metrics import resolve_metric

    resolve_metric(cfg)
    callbacks = [MonitorCheck(cfg.metric.monitor)]  # first: before ModelCheckpoint's error
    # an epoch shorter than log_every_n_steps is fine: the loggers count steps across epochs
    warnings.filterwarnings("ignore", message="The number of training batches .* is smaller "
                            "than the logging interval")
    callbacks += [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    logger_cfgs = [c for c in (cfg.get("logger") or {}).values() if c]
    if any(str(c.get("tracking_uri", "")).startswith("file:") for c in logger_cfgs):
        # logger=mlflow's local file store: recent mlflow refuses it unless opted in
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    loggers = [instantiate(c) for c in logger_cfgs]
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **kwargs)


def best_checkpoint(trainer) -> str | None:
    """The best checkpoint's path, or None (fast_dev_run saves none: use current weights)."""
    callback = trainer.checkpoint_callback
    path = callback.best_model_path if callback is not None else ""
    return path if path and Path(path).exists() else None


CONFIG_ORDER = ("data", "model", "loss", "optimizer", "scheduler", "sampler", "augment",
                "trainer")


def print_config(cfg: DictConfig, save_to: Path | None = None) -> None:
    """The composed config as a rich tree (groups in CONFIG_ORDER, then the rest; hydra's
    own settings left out), printed and, with `save_to`, written there as plain text."""
    from omegaconf import OmegaConf
    from rich.console import Console
    from rich.syntax import Syntax
    from rich.tree import Tree

    tree = Tree("config", guide_style="dim")
    fields = [f for f in CONFIG_ORDER if f in cfg] + [f for f in cfg if f not in CONFIG_ORDER]
    for field in fields:
        if field == "hydra":
            continue
        value = cfg[field]
        try:
            text = OmegaConf.to_yaml(value, resolve=True) if OmegaConf.is_config(value) \
                else str(value)
        except Exception:  # an interpolation that only resolves inside a Hydra run
            text = OmegaConf.to_yaml(value) if OmegaConf.is_config(value) else str(value)
        tree.add(field, style="bold").add(Syntax(text.rstrip(), "yaml", theme="ansi_dark"))
    Console().print(tree)
    if save_to is not None:
        save_to.parent.mkdir(parents=True, exist_ok=True)
        with open(save_to, "w") as file:
            Console(file=file, width=120, color_system=None).print(tree)


NUMERIC_KEYS = {  # key -> type; a wrong type here fails deep inside torch otherwise
    "seed": int, "trainer.max_epochs": int, "trainer.max_steps": int,
    "trainer.accumulate_grad_batches": int, "trainer.log_every_n_steps": int,
    "trainer.check_val_every_n_epoch": int, "trainer.gradient_clip_val": float,
    "data.batch_size": int, "data.num_workers": int, "data.val_fraction": float,
    "optimizer.lr": float, "optimizer.weight_decay": float,
}


def check_types(cfg: DictConfig) -> None:
    """One line naming the key, instead of a TypeError from deep inside a library."""
    from omegaconf import OmegaConf

    for key, kind in NUMERIC_KEYS.items():
        value = OmegaConf.select(cfg, key, default=None)
        ok = isinstance(value, (int, float)) if kind is float else isinstance(value, int)
        if value is not None and (not ok or isinstance(value, bool)):
            what = "an integer" if kind is int else "a number"
            raise PodiumError(f"{key}={value!r} must be {what} "
                              f"(e.g. {key}={1 if kind is int else 0.001})")


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, then validate and predict with the best checkpoint; returns the metrics."""
    import lightning as L
    from lightning.pytorch.utilities import rank_zero_only

    from podium.metrics import resolve_metric
    from podium.submission import leaderboard_score, write_json

    check_types(cfg)
    resolve_metric(cfg)  # metric.monitor/mode: null -> the task's key, inferred mode
    if cfg.get("print_config", True) and rank_zero_only.rank == 0:
        print_config(cfg, Path(cfg.paths.output_dir) / "config_tree.txt")
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")  # reads and checks everything before any training
    module = build_module(cfg, datamodule.class_names, datamodule.mean, datamodule.std,
                          datamodule.class_counts, getattr(datamodule, "net_inputs", None))
    trainer = build_trainer(cfg)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    ckpt = best_checkpoint(trainer)
    metrics = trainer.validate(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)[0]
    metrics = {k: float(v) for k, v in metrics.items()}
    trainer.predict(module, datamodule=datamodule, ckpt_path=ckpt, return_predictions=False)

    output_dir = Path(cfg.paths.output_dir)
    # the file this run wrote (submission-1.csv when an earlier submission.csv is kept)
    submission = next((c.path for c in trainer.callbacks if getattr(c, "path", None)
                       and c.__class__.__name__ == "SubmissionWriter"), None)
    if datamodule.answers and datamodule.answers.is_file() and submission is not None:
        task = getattr(datamodule, "task", "multiclass")
        key = "leaderboard/mae" if task == "regression" else "leaderboard/f1_macro"
        metrics[key] = leaderboard_score(submission, datamodule.answers, datamodule.id_col, task)
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
    if "leaderboard/mae" in metrics:
        print(f"demo leaderboard MAE: {metrics['leaderboard/mae']:.4f}")


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
