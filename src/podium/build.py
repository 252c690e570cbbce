"""Config -> objects: the datamodule, the LightningModule, the Trainer; config checks.

Every entry point (train, submit, predict, eda, lr_find) builds through here, so none of
them imports another. Builders take an already resolved config (`resolve_metric` runs
once, in the entry point) and have no process-wide side effects.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from podium.errors import PodiumError

log = logging.getLogger(__name__)
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def build_datamodule(cfg: DictConfig):
    """The datamodule from `data`, with the `sampler` group and (images) the `augment`
    group's per-sample transform plugged in."""
    from hydra.utils import get_class, instantiate

    check_sampler_task(cfg)
    extra = {"sampler": instantiate(cfg.sampler) if cfg.get("sampler") else None}
    if "sample_transform" in inspect.signature(get_class(cfg.data._target_)).parameters:
        extra["sample_transform"] = instantiate((cfg.get("augment") or {}).get("sample"))
    return instantiate(cfg.data, **extra)


def build_loss(cfg: DictConfig, class_counts: list[int], train_rows: int = 0):
    """Instantiate `loss`, injecting the training class counts (and, for multi-label
    pos_weight, the training rows) when the loss takes them."""
    from hydra.utils import instantiate

    factory = instantiate(cfg.loss)
    check_loss_task(cfg)
    parameters = inspect.signature(factory).parameters
    kwargs = {"class_counts": class_counts, "train_rows": train_rows}
    return factory(**{k: v for k, v in kwargs.items() if k in parameters})

REGRESSION_LOSSES = ("torch.nn.MSELoss", "torch.nn.L1Loss", "torch.nn.HuberLoss",
                     "torch.nn.SmoothL1Loss")

MULTILABEL_LOSSES = ("bce", "focal_bce", "asymmetric", "soft_f1_multilabel")  # conf/loss

def check_loss_task(cfg: DictConfig) -> None:
    """A classification loss on float targets (or the reverse) trains silently wrong."""
    multilabel = cfg.data.get("task", "multiclass") == "multilabel"
    if multilabel != str(cfg.loss.get("_target_")).startswith("podium.multilabel_losses."):
        raise PodiumError(
            f"loss {cfg.loss.get('_target_')} does not fit data.task={cfg.data.get('task')}: "
            + (f"use loss={', '.join(MULTILABEL_LOSSES[:-1])} or {MULTILABEL_LOSSES[-1]}"
               if multilabel
               else "it is for data.task=multilabel; use e.g. loss=ce")
        )
    if multilabel:
        return
    regression = cfg.data.get("task", "multiclass") == "regression"
    if regression != (cfg.loss.get("_target_") in REGRESSION_LOSSES):
        raise PodiumError(
            f"loss {cfg.loss.get('_target_')} does not fit data.task={cfg.data.get('task')}: "
            + ("use loss=mse|l1|huber" if regression else "use a classification loss, e.g. loss=ce")
        )


def check_sampler_task(cfg: DictConfig) -> None:
    """A class-balanced sampler reads one class per image: on multi-label data, say so."""
    target = str((cfg.get("sampler") or {}).get("_target_"))
    if cfg.data.get("task") == "multilabel" and target.endswith("ClassBalancedSampler"):
        raise PodiumError("sampler=balanced and sampler=sqrt draw one class per image, but "
                          "data.task=multilabel gives images several labels: use "
                          "sampler=rarest_label")


def build_module(cfg: DictConfig, spec):
    """The LightningModule for the data described by `spec` (podium.spec.DataSpec).

    The network gets `num_classes` and the spec's input size (`in_chans` for images,
    `in_features` for tabular data); image augmentation applies to images only.
    """
    from hydra.utils import instantiate

    from podium.module import CompetitionModule

    net = instantiate(cfg.model.net, num_classes=len(spec.class_names), **spec.net_inputs)
    augment = (instantiate(cfg.augment.get("batch"))
               if spec.images and cfg.get("augment") else None)
    if cfg.model.get("compile"):
        import torch

        net = torch.compile(net)
    return CompetitionModule(
        net=net,
        spec=spec,
        loss=build_loss(cfg, list(spec.class_counts), spec.train_rows),
        optimizer=build_optimizer_factory(cfg),
        scheduler=instantiate(cfg.scheduler, _convert_="all") if cfg.get("scheduler") else None,
        channels_last=cfg.model.get("channels_last", False),
        augment=augment,
        tta=[instantiate(t) for t in cfg.get("tta") or []],
        metric_k=cfg.metric.k,
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
    """Lightning's Trainer with `callbacks` and `logger`; `metric.monitor` must be resolved."""
    from hydra.utils import instantiate

    from podium.callbacks import MonitorCheck

    callbacks = [MonitorCheck(cfg.metric.monitor)]  # first: before ModelCheckpoint's error
    callbacks += [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
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
