"""The optimisation pieces torch leaves to the user: parameter groups and step-sized schedules.

- `build_optimizer`: splits the network's parameters into groups (`param_groups`), then
  calls the torch optimizer of the `optimizer` group (a partial).
- `warmup_cosine`, `one_cycle`: torch's own LinearLR + CosineAnnealingLR and OneCycleLR,
  sized in optimizer steps. CompetitionModule passes `total_steps` from
  `trainer.estimated_stepping_batches`, so the schedule stays right under gradient
  accumulation, `limit_train_batches`, `max_steps` and several GPUs.
- `check_plateau_monitor`: a ReduceLROnPlateau watching a key nobody logs is a one-line error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    OneCycleLR,
    SequentialLR,
)

from podium.errors import PodiumError


def classifier_head(net: nn.Module) -> list[nn.Module]:
    """The layers that map features to classes: what a pretrained backbone lacks.

    timm models name it `get_classifier()` (a tuple for distilled models); podium's
    CifarResNet names it `head`. A compiled network forwards both attributes.
    """
    if callable(getattr(net, "get_classifier", None)):
        heads = net.get_classifier()
        heads = heads if isinstance(heads, tuple) else (heads,)
        return [h for h in heads if isinstance(h, nn.Module)]
    head = getattr(net, "head", None)
    return [head] if isinstance(head, nn.Module) else []


def param_groups(net: nn.Module, no_decay_norm_bias: bool = True,
                 backbone_lr_mult: float = 1.0) -> list[dict[str, Any]]:
    """Trainable parameters in named groups for any torch optimizer.

    - `no_decay_norm_bias`: timm's `param_groups_weight_decay` says which parameters get
      `weight_decay=0`: ndim <= 1 (norm weights/biases), every bias and a timm model's
      `no_weight_decay()` names (position embeddings, ...). Decaying them only shrinks the
      scale a norm layer is there to learn.
    - `backbone_lr_mult`: every parameter outside the classifier head gets `lr_mult` (the
      optimizer's lr times it, applied by `build_optimizer`): a pretrained backbone moves
      slower than a freshly initialised head.

    Groups are named (`params` and `no_decay`; with `backbone_lr_mult != 1`: `head`,
    `head_no_decay`, `backbone`, `backbone_no_decay`), so LearningRateMonitor logs
    `lr-AdamW/params` etc. Groups and their parameters keep the network's order (an
    optimizer state saved in a checkpoint maps back by position). Empty groups are left
    out; frozen parameters too. Both options off gives torch's behaviour: one group with
    the optimizer's defaults.
    """
    split = backbone_lr_mult != 1.0
    head = {id(p) for m in classifier_head(net) for p in m.parameters()} if split else set()
    if split and not head:
        raise PodiumError(
            f"model.backbone_lr_mult={backbone_lr_mult} needs a classifier head, but "
            f"{type(net).__name__} has neither get_classifier() (timm) nor .head; "
            "set model.backbone_lr_mult=1.0"
        )
    no_decay = no_decay_ids(net) if no_decay_norm_bias else set()
    groups: dict[str, dict[str, Any]] = {}
    for param in net.parameters():
        if not param.requires_grad:
            continue
        role = ("head" if id(param) in head else "backbone") if head else "params"
        key = role
        if id(param) in no_decay:
            key = "no_decay" if role == "params" else f"{role}_no_decay"
        group = groups.setdefault(key, {"name": key, "params": [],
                                        "lr_mult": 1.0 if role == "head" else backbone_lr_mult})
        if id(param) in no_decay:
            group["weight_decay"] = 0.0
        group["params"].append(param)
    return list(groups.values())


def no_decay_ids(net: nn.Module) -> set[int]:
    """The parameters timm's `param_groups_weight_decay` keeps out of weight decay, by id.
    A compiled network is asked through its original module, whose parameter names are
    the ones `no_weight_decay()` lists."""
    from timm.optim import param_groups_weight_decay

    model = getattr(net, "_orig_mod", net)
    skip = model.no_weight_decay() if callable(getattr(model, "no_weight_decay", None)) else ()
    # weight_decay=1.0 only marks the decayed group (0 would put every parameter in none)
    groups = param_groups_weight_decay(model, weight_decay=1.0, no_weight_decay_list=list(skip))
    return {id(p) for group in groups if group["weight_decay"] == 0.0 for p in group["params"]}


def build_optimizer(params: nn.Module, optimizer: Callable[..., Optimizer],
                    no_decay_norm_bias: bool = True, backbone_lr_mult: float = 1.0,
                    layer_decay: float | None = None) -> Optimizer:
    """`optimizer(params=param_groups(...))`, then each group's lr times its `lr_mult`.

    Args:
        params: the network, its parameters grouped by role (see `param_groups`).
        optimizer: any torch.optim class as a partial (the `optimizer` group);
            its lr and weight_decay are the defaults every group starts from.
        layer_decay: layer-wise lr decay (`layer_decay_groups`) instead of `backbone_lr_mult`.
    """
    if layer_decay is not None:
        if backbone_lr_mult != 1.0:
            raise PodiumError(f"model.layer_decay={layer_decay} and model.backbone_lr_mult="
                              f"{backbone_lr_mult}: set one of them (the other to null / 1.0)")
        groups = layer_decay_groups(params, layer_decay, no_decay_norm_bias)
    else:
        groups = param_groups(params, no_decay_norm_bias, backbone_lr_mult)
    opt = optimizer(params=groups)
    for group in opt.param_groups:
        group["lr"] = group["lr"] * group["lr_mult"]
    return opt


def layer_decay_groups(net: nn.Module, layer_decay: float, no_decay_norm_bias: bool = True
                       ) -> list[dict[str, Any]]:
    """timm's `param_groups_layer_decay` (BEiT's layer-wise lr decay): the head trains at
    the optimizer's lr, each layer below it at `layer_decay` times the one above (timm's
    `group_matcher` says what a layer is), as `lr_mult`. Weight decay as `param_groups`:
    none for norm weights/biases and `no_weight_decay()` names with `no_decay_norm_bias`,
    the optimizer's own for everything else."""
    from timm.optim import param_groups_layer_decay

    if not 0 < layer_decay <= 1:
        raise PodiumError(f"model.layer_decay={layer_decay} must be in (0, 1] (e.g. 0.75)")
    if not isinstance(net, nn.Module) or not callable(getattr(net, "group_matcher", None)):
        raise PodiumError(f"model.layer_decay needs a timm network (its group_matcher() says "
                          f"what a layer is), not {type(net).__name__}: use model=timm")
    skip = net.no_weight_decay() if no_decay_norm_bias and hasattr(net, "no_weight_decay") \
        else ()
    groups = param_groups_layer_decay(net, weight_decay=1.0, no_weight_decay_list=list(skip),
                                      weight_decay_exclude_1d=no_decay_norm_bias,
                                      layer_decay=layer_decay)
    for k, group in enumerate(groups):
        group["lr_mult"] = group.pop("lr_scale")
        group["name"] = f"layer_decay{k}_x{group['lr_mult']:.3g}"
        if group["weight_decay"]:  # decayed: the optimizer's weight_decay
            del group["weight_decay"]
    return groups


def _check_warmup(warmup_steps: int, total_steps: int) -> None:
    if warmup_steps > total_steps:
        raise PodiumError(
            f"scheduler.scheduler.warmup_steps={warmup_steps} is more than the run's "
            f"{total_steps} optimizer steps (trainer.estimated_stepping_batches, after "
            "accumulate_grad_batches and limit_train_batches); lower "
            "scheduler.scheduler.warmup_steps or train longer"
        )


def warmup_cosine(optimizer: Optimizer, warmup_steps: float = 0, total_steps: int | None = None,
                  start_factor: float = 0.01, eta_min: float = 0.0) -> LRScheduler:
    """Linear warm-up from `start_factor * lr` to lr over `warmup_steps`, then cosine to
    `eta_min` at `total_steps` (torch's LinearLR then CosineAnnealingLR). Step per optimizer step.
    `warmup_steps` below 1 is a fraction of the run's steps (0.1: its first tenth, at least
    one step), so one preset warms up alike on a small and a large training set.

    `total_steps=None` (no run length known: outside a Trainer, or fast_dev_run) builds it
    for `warmup_steps + 1` steps, which only checks the configuration.
    """
    if 0 < warmup_steps < 1:
        warmup_steps = max(1, round(warmup_steps * (total_steps or 1)))
    if total_steps is None:
        total_steps = warmup_steps + 1
    _check_warmup(warmup_steps, total_steps)
    cosine = CosineAnnealingLR(optimizer, T_max=max(total_steps - warmup_steps, 1), eta_min=eta_min)
    if warmup_steps == 0:
        return cosine
    warmup = LinearLR(optimizer, start_factor=start_factor, end_factor=1.0,
                      total_iters=warmup_steps)
    return SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])


def one_cycle(optimizer: Optimizer, total_steps: int | None = None, **kwargs: Any) -> OneCycleLR:
    """torch's OneCycleLR peaking at each group's own lr (so `backbone_lr_mult` holds).

    `kwargs` go to OneCycleLR (pct_start, div_factor, final_div_factor, anneal_strategy,
    cycle_momentum, ...). `total_steps=None` builds a 1-step cycle, only to check the config.
    """
    max_lr = [group["lr"] for group in optimizer.param_groups]
    return OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps or 1, **kwargs)


def check_plateau_monitor(trainer: Any) -> None:
    """Fail with the logged keys when a ReduceLROnPlateau watches a key that was never logged.

    Called at the end of each training epoch (after its validation), just before Lightning
    steps the plateau schedulers and would raise its own multi-line exception.
    """
    for config in trainer.lr_scheduler_configs:
        if not (config.reduce_on_plateau and config.strict):
            continue
        logged = trainer.callback_metrics  # built on each access: only when there is a plateau
        if config.monitor not in logged:
            from podium.model.metrics import never_logged

            raise PodiumError(never_logged(config.monitor, logged, "scheduler.monitor"))


def total_training_steps(trainer: Any) -> int | None:
    """Optimizer steps of the whole run; None under fast_dev_run (one step: a smoke test)."""
    if trainer.fast_dev_run:
        return None
    total = trainer.estimated_stepping_batches
    if total == float("inf"):
        raise PodiumError("a step-sized scheduler needs a finite run: set trainer.max_epochs "
                          "or trainer.max_steps")
    return int(total)

