"""The composed config: where it lives, how a run prints it, and the checks on its values.

`CONFIG_DIR` is the checkout's conf/ (make install: editable) or the copy inside the wheel
(an exported bundle). A run prints the keys that differ from conf/train.yaml's defaults
(`print_config=full`: the whole tree) and saves the tree as config_tree.txt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from podium import CONFIG_DIR
from podium.errors import PodiumError

CONFIG_ORDER = ("data", "model", "loss", "optimizer", "scheduler", "sampler", "augment",
                "trainer")

def print_config(cfg: DictConfig, save_to: Path | None = None, full: bool = False,
                 listed: bool = True) -> None:
    """Print the keys that differ from conf/train.yaml's defaults, one line each (`full`:
    the whole tree; not `listed`: their count only, as a cross-validation's later folds
    do); with `save_to`, the whole tree is written there as plain text."""
    from rich.console import Console

    tree = config_tree(cfg)
    if full:
        Console().print(tree)
    else:
        default = default_config()
        changed = changed_keys(cfg, default)
        choices = " ".join(changed_choices(cfg, default))
        where = f"; the whole tree: {save_to}" if save_to is not None else ""
        print(f"config: {choices + '; ' if choices else ''}{len(changed)} key(s) differ from "
              f"conf/train.yaml{'' if listed else ' (listed by fold 0)'}{where}")
        for line in changed if listed else ():
            print(f"  {line}")
    if save_to is not None:
        save_to.parent.mkdir(parents=True, exist_ok=True)
        with open(save_to, "w") as file:
            Console(file=file, width=120, color_system=None).print(tree)

def config_tree(cfg: DictConfig):
    """The composed config as a rich tree: groups in CONFIG_ORDER, then the rest; hydra's
    own settings left out."""
    from omegaconf import OmegaConf
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
    return tree

def resolve_defaults(cfg: DictConfig, announce: bool = False) -> DictConfig:
    """Fill a training config's data- and task-dependent defaults in place, once, before
    anything reads them: what the folder is (`resolve_data`: a table, its task), the network
    that fits it (`resolve_model`), the loss (`podium.losses.resolve_loss`: the task's usual
    one when no `loss=` was given) and the metric keys (`resolve_metric`); `announce` prints
    a line for each choice made."""
    from podium.losses import resolve_loss
    from podium.model.metrics import resolve_metric

    resolve_data(cfg, announce)
    resolve_model(cfg, announce)
    resolve_loss(cfg, announce)
    return resolve_metric(cfg, announce)

TABULAR = "podium.data.tabular.TabularDataModule"
IMAGE = "podium.data.image.ImageDataModule"

def group_file(group: str, option: str) -> DictConfig:
    """conf/<group>/<option>.yaml as written (its interpolations unresolved)."""
    from omegaconf import OmegaConf

    return OmegaConf.load(Path(CONFIG_DIR) / group / f"{option}.yaml")

def resolve_data(cfg: DictConfig, announce: bool = False) -> None:
    """A folder of `train.csv` + `test.csv` and no images is read as a table whatever
    `data=` says (the keys set on the image config carried over); `data.task=auto` becomes
    the folder's task (podium.data.detect.folder_task; multiclass when it cannot tell); an
    id or target column train.csv lacks is the sample submission's (detect.sample_columns)."""
    from omegaconf import OmegaConf, open_dict

    from podium.data.detect import folder_task, looks_tabular, sample_columns

    data = cfg.get("data")
    if not data or "_target_" not in data:
        return
    root = Path(str(OmegaConf.select(cfg, "data.root", default="") or ""))
    if data._target_ == IMAGE and not any(data.get(k) for k in ("train_images", "path_col")) \
            and looks_tabular(root, data.get("train_csv", "train.csv")):
        image, table, mine = (OmegaConf.to_container(c, resolve=False) for c in (
            group_file("data", "image"), group_file("data", "tabular"), data))
        with open_dict(cfg):
            cfg.data = {**table, **{k: v for k, v in mine.items()
                                    if k in table and k != "_target_" and v != image.get(k)}}
        say(announce, f"data: {root} holds train.csv and test.csv but no images: read as a "
                      f"table (data=tabular)")
    named = {} if cfg.data.get("target_cols") else sample_columns(
        root, cfg.data.get("train_csv") or "train.csv",
        cfg.data.get("sample_submission") or "sample_submission.csv",
        cfg.data.get("id_col", "id"), cfg.data.get("target_col", "label"))
    if named:  # only in place of a default name: a name given stays (and its one-line error)
        unset = group_file("data", "tabular" if cfg.data._target_ == TABULAR else "image")
        named = {k: v for k, v in named.items() if cfg.data.get(k) == unset.get(k)}
    if named:
        lacked = " or ".join(repr(cfg.data.get(k)) for k in named)
        with open_dict(cfg):
            cfg.data.update(named)
        say(announce, f"data: {', '.join(f'data.{k}={v}' for k, v in named.items())} (the "
                      f"sample submission's columns; train.csv has no {lacked}: set "
                      f"{' / '.join(f'data.{k}' for k in named)} to choose)")
    if cfg.data.get("task") == "auto":
        found = None if cfg.data.get("target_cols") else folder_task(
            root, cfg.data.get("train_csv", "train.csv"), cfg.data.get("target_col", "label"))
        task, why = found or (("multilabel", "data.target_cols") if cfg.data.get("target_cols")
                              else ("multiclass", "the folder does not say yet"))
        with open_dict(cfg):
            cfg.data.task = task
        say(announce and found is not None, f"data.task={task} ({why}; set data.task=... "
                                            f"to choose)")

def resolve_model(cfg: DictConfig, announce: bool = False) -> None:
    """A table gets a tabular network: an image network (one without `in_features`) is
    replaced by model=tabm."""
    import inspect

    from hydra.utils import get_object
    from omegaconf import open_dict

    if (cfg.get("data") or {}).get("_target_") != TABULAR or not cfg.get("model"):
        return
    net = str(cfg.model.net._target_)
    if "in_features" in inspect.signature(get_object(net)).parameters:
        return
    with open_dict(cfg):
        cfg.model = group_file("model", "tabm")
    say(announce, f"model: tabm (a table needs a tabular network, not {net}; choose with "
                  f"model=tabm|mlp, or experiment=tabular for the tuned recipe)")

def say(announce: bool, line: str) -> None:
    if announce:
        print(line, flush=True)

def default_config() -> DictConfig:
    """conf/train.yaml composed without overrides (experiment=baseline), loss and metric
    resolved: what a run's config is compared with. Inside a Hydra run its own search path
    is used."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        default = compose("train", return_hydra_config=True)
    else:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            default = compose("train", return_hydra_config=True)
    return resolve_defaults(default)

def changed_choices(cfg: DictConfig, default: DictConfig) -> list[str]:
    """`group=option` for every config group whose option differs from the default's (the
    run's choices: its `hydra` node when composed with it, else the running job's)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    mine = OmegaConf.select(cfg, "hydra.runtime.choices", default=None)
    if mine is None and HydraConfig.initialized():
        mine = HydraConfig.get().runtime.choices
    before = OmegaConf.select(default, "hydra.runtime.choices", default=None) or {}
    return [f"{group}={option}" for group, option in (mine or {}).items()
            if not group.startswith("hydra") and before.get(group) != option]

def changed_keys(cfg: DictConfig, default: DictConfig | None = None) -> list[str]:
    """`key=value  (default: old)` for every leaf whose (unresolved) value differs from the
    default config: the command-line overrides, the experiment's and the chosen groups'
    changes. Keys the run does not have (a replaced group's) are left out; lists are one
    value; values are shown resolved where they can be."""
    from omegaconf import OmegaConf

    default = default_config() if default is None else default
    before = flat(OmegaConf.to_container(default, resolve=False))
    lines = []
    for key, raw in flat(OmegaConf.to_container(cfg, resolve=False)).items():
        if key.startswith("hydra.") or (key in before and before[key] == raw):
            continue
        if key not in before and raw in (None, [], {}):
            continue  # a new group's unset option
        line = f"{key}={shown(cfg, key, raw)}"
        if key in before:
            line += f"  (default: {shown(default, key, before[key])})"
        lines.append(line)
    return lines

def shown(cfg: DictConfig, key: str, raw: Any) -> str:
    """`key`'s value as written on a command line, resolved when it can be (`${hydra:...}`
    is shown as written: it resolves against the running job's Hydra settings only)."""
    import json

    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(raw, str) and "${hydra:" in raw:
        return raw
    try:
        value = OmegaConf.select(cfg, key)
        value = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) \
            else value
    except (OmegaConfBaseException, ValueError):
        value = raw
    return value if isinstance(value, str) else json.dumps(value)

def flat(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and empty dicts stay one value."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out

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
