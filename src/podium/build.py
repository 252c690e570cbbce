"""Config -> objects: the datamodule, the LightningModule, the Trainer; the checks that
need several groups at once (loss vs task, sampler vs task, no validation split).

Every entry point (train, submit, predict, eda, lr_find) builds through here, so none of
them imports another; `build_run` is the whole sequence a fit needs, written once. Builders
take an already resolved config (`config.resolve_defaults` runs once, in the entry point:
the task's loss and metric keys) and have no process-wide side effects other than the seed.
"""

from __future__ import annotations

import inspect
import logging
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from omegaconf import DictConfig

from podium.errors import PodiumError

log = logging.getLogger(__name__)


class Run(NamedTuple):
    """What a fit needs: the data (read, split and checked), the model, the Trainer."""

    datamodule: Any
    module: Any
    trainer: Any


def build_run(cfg: DictConfig, **trainer_kwargs: Any) -> Run:
    """seed -> datamodule (every input read and checked before any training) -> DataSpec
    -> module -> trainer: the sequence train, refit, lr-find, the bench and the tests share."""
    import lightning as L

    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg, **pretrained_inputs(cfg))
    datamodule.prepare_data()
    datamodule.setup("fit")
    resolve_max_epochs(cfg, datamodule)
    module = build_module(cfg, datamodule.spec)
    return Run(datamodule, module, build_trainer(cfg, **trainer_kwargs))


def resolve_max_epochs(cfg: DictConfig, datamodule) -> None:
    """`trainer.max_epochs=null` (the default): the data's choice, from its rows and batch
    size (podium.data.base), said in one line; the scheduler's `T_max` follows it. With
    `trainer.max_steps` set, the whole epochs nearest to that many optimizer steps (a
    preset's length in steps: the same training on a small and a large set)."""
    from lightning.pytorch.utilities import rank_zero_only
    from omegaconf import open_dict

    if cfg.trainer.get("max_epochs", 0) is not None:
        return
    steps = cfg.trainer.get("max_steps") or -1
    with open_dict(cfg):
        if steps > 0:
            cfg.trainer.max_epochs = datamodule.suggested_max_epochs(steps, (1, None))
            cfg.trainer.max_steps = -1
        else:
            cfg.trainer.max_epochs = datamodule.suggested_max_epochs()
    if rank_zero_only.rank == 0:
        source = f"trainer.max_steps={steps} in whole epochs, " if steps > 0 else ""
        print(f"trainer.max_epochs={cfg.trainer.max_epochs}, data.batch_size="
              f"{datamodule.batch_size} (from {source}{len(datamodule.train_idx)} training "
              f"rows; set them to change)", flush=True)


def build_datamodule(cfg: DictConfig, **inputs: Any):
    """The datamodule from `data`, with the `sampler` group and (images) the `augment`
    group's per-sample transform plugged in; `inputs` replace data options (a pretrained
    network's mean, std, image size: `pretrained_inputs`)."""
    from hydra.utils import get_class, instantiate

    check_sampler_task(cfg)
    extra = {"sampler": instantiate(cfg.sampler) if cfg.get("sampler") else None}
    if "sample_transform" in inspect.signature(get_class(cfg.data["_target_"])).parameters:
        extra["sample_transform"] = instantiate((cfg.get("augment") or {}).get("sample"))
    return instantiate(cfg.data, **extra, **inputs)


def build_loss(cfg: DictConfig, class_counts: list[int], train_rows: int = 0):
    """Instantiate `loss` (without its `tasks` declaration), injecting the training class
    counts (and, for multi-label pos_weight, the training rows) when the loss takes them."""
    from podium.losses import loss_factory

    factory = loss_factory(cfg.loss)
    check_loss_task(cfg)
    parameters = inspect.signature(factory).parameters
    kwargs = {"class_counts": class_counts, "train_rows": train_rows}
    return factory(**{k: v for k, v in kwargs.items() if k in parameters})


def check_loss_task(cfg: DictConfig) -> None:
    """A classification loss on float targets (or the reverse) trains silently wrong: a loss
    that declares its tasks (`podium.losses.declared_tasks`) is refused on any other, naming
    the conf/loss options that fit. One that declares none is trusted, and the log says so."""
    from podium.losses import declared_tasks, losses_for

    task = cfg.data.get("task", "multiclass")
    target = cfg.loss.get("_target_")
    tasks = declared_tasks(cfg.loss)
    if tasks is None:
        log.info("loss %s declares no tasks: not checked against data.task=%s (declare "
                 "them with loss.tasks=[...] or a `tasks` attribute on the class)", target, task)
        return
    if task not in tasks:
        fits = losses_for(task)
        options = f"{', '.join(fits[:-1])} or {fits[-1]}" if len(fits) > 1 else fits[0]
        raise PodiumError(f"loss {target} (tasks: {', '.join(tasks)}) does not fit "
                          f"data.task={task}: use loss={options}")


def check_sampler_task(cfg: DictConfig) -> None:
    """A class-balanced sampler reads one class per image: on multi-label data, say so."""
    target = str((cfg.get("sampler") or {}).get("_target_"))
    if cfg.data.get("task") == "multilabel" and target.endswith("ClassBalancedSampler"):
        raise PodiumError("sampler=balanced and sampler=sqrt draw one class per image, but "
                          "data.task=multilabel gives images several labels: use "
                          "sampler=rarest_label")


def build_module(cfg: DictConfig, spec, pretrained: bool = True):
    """The LightningModule for the data described by `spec` (podium.spec.DataSpec).

    The network gets `num_classes` and the spec's input size (`in_chans` for images,
    `in_features` for tabular data); image augmentation applies to images only.
    `pretrained=False` skips loading pretrained weights (a checkpoint replaces them).
    """
    from hydra.utils import instantiate

    from podium.model.module import CompetitionModule
    from podium.model.outputs import wrap_loss

    weights = pretrained_weights(cfg, pretrained)  # a state_dict: not a config node either
    net = instantiate(cfg.model.net, num_classes=len(spec.class_names), **spec.net_inputs,
                      _partial_=True)(**table_layout(cfg, spec), **weights)
    if "pretrained_cfg_overlay" in weights:
        from podium.model.weights import zero_new_head

        net.pretrained_cfg["state_dict"] = None  # loaded: timm's config keeps no copy
        if len(spec.class_names) != net.pretrained_cfg.get("num_classes"):
            zero_new_head(net)
    augment = (instantiate(cfg.augment.get("batch"))
               if spec.image_inputs and cfg.get("augment") else None)
    if cfg.model.get("compile"):
        import torch

        net = torch.compile(net)
    loss = build_loss(cfg, list(spec.class_counts), spec.train_rows)
    return CompetitionModule(
        net=net,
        spec=spec,
        loss=wrap_loss(loss, net, spec),
        score_prior=partial(score_prior, cfg, spec, loss),
        optimizer=build_optimizer_factory(cfg),
        scheduler=instantiate(cfg.scheduler, _convert_="all") if cfg.get("scheduler") else None,
        channels_last=cfg.model.get("channels_last", False),
        augment=augment,
        tta=[instantiate(t) for t in cfg.get("tta") or []],
        metric_k=cfg.metric.k,
        mix=build_mix(cfg, spec),
    )


def score_prior(cfg: DictConfig, spec, loss) -> tuple[float, ...]:
    """The class prior the module's probabilities carry (podium.prior.score_prior): the
    training prior as the sampler draws it and the loss weighs it (at the epoch the loss was
    last set to: the module asks again each epoch); () without classes."""
    from podium.prior import CLASSIFICATION
    from podium.prior import score_prior as carried

    if spec.task not in CLASSIFICATION:
        return ()
    sampler = cfg.get("sampler") or {}
    balanced = str(sampler.get("_target_", "")).endswith("ClassBalancedSampler")
    power = float(sampler.get("power", 1.0)) if balanced else 0.0
    return tuple(carried(spec.class_counts, loss, power).tolist())


def table_layout(cfg: DictConfig, spec) -> dict[str, Any]:
    """A tabular network that takes `features` gets the spec's column layout (numeric
    columns and their bins, category cardinalities: podium.data.columns)."""
    from hydra.utils import get_object

    target = get_object(str(cfg.model.net._target_))
    if spec.features and "features" in inspect.signature(target).parameters:
        return {"features": spec.features}
    return {}


def pretrained_weights(cfg: DictConfig, pretrained: bool = True) -> dict[str, Any]:
    """timm's arguments for offline pretrained weights (podium.model.weights): the state_dict
    of `model.weights` (an installed weights package, by name) or `model.weights_file` (a
    file: .pth/.bin/.safetensors, e.g. a Kaggle dataset), in timm's key layout or matched
    to it by position, goes to `pretrained_cfg_overlay=dict(state_dict=...)`; timm drops a
    classifier of another size and adapts the first convolution to `in_chans`."""
    from podium.model.weights import pretrained_state, weights_path

    uses_pretrained = "pretrained" in cfg.model.net
    if not pretrained and uses_pretrained:
        return {"pretrained": False}
    weights, weights_file = cfg.model.get("weights"), cfg.model.get("weights_file")
    if not weights and not weights_file:
        return {}
    named = f"model.weights={weights}" if weights else f"model.weights_file={weights_file}"
    if not cfg.model.net.get("pretrained"):
        raise PodiumError(f"{named} is loaded by timm's pretrained path: set "
                          "model.net.pretrained=true (and model=timm)")
    path = weights_path(weights, weights_file)
    net = {k: v for k, v in cfg.model.net.items() if k not in ("_target_", "model_name")}
    state = pretrained_state(cfg.model.net.model_name, path, named, **net)
    return {"pretrained_cfg_overlay": {"state_dict": state}}


def pretrained_inputs(cfg: DictConfig) -> dict[str, Any]:
    """A pretrained network's inputs as it was trained (timm's `resolve_data_config` for its
    pretrained_cfg): `data.mean`/`data.std`/`data.image_size`/`data.interpolation` left
    null take them, all said in one line; a network trained from scratch keeps the training
    split's statistics."""
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    from podium.model.weights import data_config

    net = cfg.model.get("net") or {}
    takes = inspect.signature(get_class(cfg.data["_target_"])).parameters
    if not net.get("pretrained") or "model_name" not in net or "mean" not in takes:
        return {}
    config = data_config(net.model_name)
    wanted = {"mean": list(config["mean"]), "std": list(config["std"]),
              "image_size": list(config["input_size"][1:])}
    if "interpolation" in takes:
        wanted["interpolation"] = config["interpolation"]
    taken, said = {}, []
    for key, value in wanted.items():
        if cfg.data.get(key) is None:
            taken[key] = value
            said.append(f"{key}={value}")
        else:
            value = cfg.data[key]
            said.append(f"{key}={list(value) if OmegaConf.is_list(value) else value} "
                        f"(data.{key})")
    print(f"pretrained {net.model_name}: inputs from timm's resolve_data_config: "
          f"{', '.join(said)}", flush=True)
    return taken


def build_mix(cfg: DictConfig, spec):
    """`augment.mix` (MixUp/CutMix) for image classification; None when not configured."""
    from hydra.utils import instantiate

    mix = (cfg.get("augment") or {}).get("mix")
    if not mix or not spec.image_inputs:
        return None
    if spec.task not in ("multiclass", "binary"):
        raise PodiumError(f"augment.mix mixes class labels, but data.task={spec.task}: "
                          "use augment/mix=none")
    return instantiate(mix, num_classes=len(spec.class_names))


def build_optimizer_factory(cfg: DictConfig):
    """`optimizer` as a factory `network -> Optimizer` with podium's parameter groups.

    The group is any torch.optim class as a Hydra partial plus podium's own keys, taken
    out before torch sees the arguments: `no_decay_norm_bias`, and `fused` (torch's
    one-kernel step, for the classes that offer it: AdamW, Adam; another class such as
    RAdam runs its own step); `model.backbone_lr_mult` comes from the model group.
    """
    import inspect
    from functools import partial

    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from podium.model.optim import build_optimizer

    torch_cfg = OmegaConf.to_container(cfg.optimizer)
    no_decay = torch_cfg.pop("no_decay_norm_bias", False)
    fused = torch_cfg.pop("fused", False)
    optimizer = instantiate(torch_cfg)
    if fused and "fused" in inspect.signature(optimizer.func).parameters:
        optimizer = partial(optimizer, fused=True)
    return partial(build_optimizer, optimizer=optimizer, no_decay_norm_bias=no_decay,
                   backbone_lr_mult=cfg.model.get("backbone_lr_mult", 1.0),
                   layer_decay=cfg.model.get("layer_decay"))


def build_trainer(cfg: DictConfig, **kwargs: Any):
    """Lightning's Trainer with `callbacks` and `logger`; `metric.monitor` must be resolved.

    Without a validation split (`data.val_fraction=0`) nothing is validated and the
    checkpoint callback watches nothing: `best.ckpt` is the last epoch."""
    from hydra.utils import instantiate

    from podium.callbacks.guards import MonitorCheck

    callbacks = [MonitorCheck(cfg.metric.monitor)]  # first: before ModelCheckpoint's error
    if no_validation(cfg):
        check_no_validation(cfg)
        callbacks = [instantiate(c, **unmonitored(c)) for c in cfg.callbacks.values() if c]
        kwargs.setdefault("limit_val_batches", 0)
    else:
        callbacks += [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **kwargs)


def no_validation(cfg: DictConfig) -> bool:
    """`data.val_fraction=0`: nothing validates. Without folds every labelled row trains;
    a fold of a k-fold trains on all its training rows (no inner validation split) and
    still predicts its held-out rows for oof.csv."""
    return (cfg.get("data") or {}).get("val_fraction", 0.2) == 0


def unmonitored(callback: DictConfig) -> dict[str, Any]:
    """A checkpoint callback watching a val/ key saves every epoch as `best.ckpt` instead."""
    from hydra.utils import get_class
    from lightning.pytorch.callbacks import ModelCheckpoint

    monitor = str(callback.get("monitor") or "")
    if monitor.startswith("val/") and issubclass(get_class(callback._target_), ModelCheckpoint):
        log.info("no validation split: %s watches nothing, best.ckpt is the last epoch",
                 callback._target_)
        return {"monitor": None}
    return {}


def check_no_validation(cfg: DictConfig) -> None:
    """Options that need a validation metric, with `data.val_fraction=0`: one line each."""
    from hydra.utils import get_class
    from lightning.pytorch.callbacks import EarlyStopping

    fix = "keep a validation split (data.val_fraction=0.2) or"
    for name, callback in (cfg.get("callbacks") or {}).items():
        if callback and issubclass(get_class(callback._target_), EarlyStopping):
            raise PodiumError(f"callbacks.{name} stops on {callback.get('monitor')}, but "
                              f"data.val_fraction=0 validates nothing: {fix} use "
                              "callbacks=default")
    monitor = str((cfg.get("scheduler") or {}).get("monitor") or "")
    if monitor.startswith("val/"):
        raise PodiumError(f"scheduler.monitor={monitor}, but data.val_fraction=0 validates "
                          f"nothing: {fix} use scheduler=cosine (or scheduler.monitor="
                          "train/loss_epoch)")


def best_checkpoint(trainer) -> str | None:
    """The best checkpoint's path, or None (fast_dev_run saves none: use current weights)."""
    callback = trainer.checkpoint_callback
    path = callback.best_model_path if callback is not None else ""
    return path if path and Path(path).exists() else None


