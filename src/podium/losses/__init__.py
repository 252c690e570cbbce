"""Losses chosen by `conf/loss/*.yaml`: multi-class (imbalance-aware), multi-label, and the
soft-target forms MixUp/CutMix need.

Each conf/loss file declares the tasks it fits (`tasks: [multiclass, binary]`), so the
check against `data.task` (`build.check_loss_task`) and the list of losses that fit are
read from the files, never from lists of class names. A loss of one's own declares them
the same way (its yaml, `+loss.tasks=[regression]`, or a `tasks` class attribute). With no
`loss=` chosen, the task picks its usual loss (`DEFAULT_LOSS`, `resolve_loss`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from podium import CONFIG_DIR
from podium.errors import PodiumError
from podium.spec import TASKS, check_task

LOSS_DIR = Path(CONFIG_DIR) / "loss"
DEFAULT_LOSS = {"multiclass": "ce", "binary": "ce", "regression": "mse", "multilabel": "bce"}
TASKS_KEY = "tasks"  # podium's own key in a loss config, taken out before instantiation


def resolve_loss(cfg: DictConfig, announce: bool = False) -> DictConfig:
    """With no `loss=` chosen (conf/train.yaml's `loss: null`), fill `loss` in place with
    `data.task`'s usual loss from conf/loss; keys given without a loss (a sweep's
    `++loss.label_smoothing=0.1`) stay on top of it. `announce`: print one line saying so."""
    task = (cfg.get("data") or {}).get("task", "multiclass")
    check_task(task)
    chosen = cfg.get("loss")
    if chosen is not None and chosen.get("_target_"):
        return cfg
    name = DEFAULT_LOSS[task]
    default = OmegaConf.load(LOSS_DIR / f"{name}.yaml")
    with open_dict(cfg):
        cfg.loss = OmegaConf.merge(default, chosen) if chosen else default
    if announce:
        print(f"loss: {name} (data.task={task}'s default; choose with loss=...)", flush=True)
    return cfg


def declared_tasks(loss: DictConfig) -> tuple[str, ...] | None:
    """The tasks a loss fits: its config's `tasks`, else its class's `tasks` attribute;
    None when neither says."""
    from hydra.utils import get_object

    tasks = loss.get(TASKS_KEY)
    if tasks is None:
        tasks = getattr(get_object(str(loss._target_)), TASKS_KEY, None)
    if tasks is None:
        return None
    tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise PodiumError(f"loss {loss._target_} declares tasks {', '.join(unknown)}: "
                          f"use some of {', '.join(TASKS)}")
    return tasks


def losses_for(task: str) -> list[str]:
    """The conf/loss options that declare `task`: its default first, then by name."""
    fits = sorted(p.stem for p in LOSS_DIR.glob("*.yaml")
                  if task in (OmegaConf.load(p).get(TASKS_KEY) or ()))
    return sorted(fits, key=lambda name: name != DEFAULT_LOSS[task])


def loss_factory(loss: DictConfig) -> Any:
    """Hydra's instantiation of a loss config (a partial for podium's losses), without the
    `tasks` declaration, which no loss class takes as an argument."""
    from hydra.utils import instantiate

    arguments = OmegaConf.to_container(loss, resolve=True)
    arguments.pop(TASKS_KEY, None)
    return instantiate(arguments)
