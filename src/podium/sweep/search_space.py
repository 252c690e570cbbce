"""A sweep's search space: Hydra's sweep syntax read as Optuna distributions, checked first.

`interval(a, b)`, `tag(log, interval(a, b))`, `int(interval(a, b))`, `range(a, b, step)`,
`choice(x, y, ...)` (conf/hparams_search/*.yaml and the command line). A key that is not in
the config stops the sweep before any trial with one `error:` line.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from podium.errors import PodiumError

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override
    from optuna.distributions import BaseDistribution

_ABSENT = object()

def leaf_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a config (for "did you mean" suggestions)."""
    if not OmegaConf.is_dict(cfg):
        return [prefix[:-1]] if prefix else []
    keys = [prefix[:-1]] if prefix else []
    for key in cfg.keys():
        if key != "hydra":
            keys += leaf_keys(cfg._get_node(key), f"{prefix}{key}.")
    return keys

def check_search_space(cfg: DictConfig) -> None:
    """Every key in `hydra.sweeper.params` must exist in the config (`+key` adds one)."""
    source = cfg.hydra.runtime.choices.get("hparams_search", "?")
    for key in (cfg.hydra.sweeper.get("params") or {}):
        if key.startswith(("+", "~")) or "/" in key:
            continue  # an explicit addition or deletion, or a config group
        if OmegaConf.select(cfg, key, default=_ABSENT, throw_on_resolution_failure=False) \
                is not _ABSENT:
            continue
        close = difflib.get_close_matches(key, leaf_keys(cfg), n=1)
        hint = (f"did you mean {close[0]}? " if close else "") + f"(write +{key} to add a new key)"
        if key.startswith("loss.") and cfg.get("loss") is None:  # filled in after the overrides
            hint = (f"no loss= is chosen (the task's default comes later): choose one or "
                    f"write ++{key}")
        raise PodiumError(f"conf/hparams_search/{source}.yaml: hydra.sweeper.params names {key}, "
                          f"which is not in the config; {hint}")

def distribution(override: Override) -> BaseDistribution:
    """One sweep override in Hydra's syntax -> the Optuna distribution it describes."""
    from hydra.core.override_parser.types import Transformer
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    value = override.value()
    if override.is_interval_sweep():
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):  # int(interval(..))
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(value.start, value.end, log=log)
    values = list(override.sweep_iterator(transformer=Transformer.encode))
    if override.is_range_sweep() and not value.shuffle and \
            all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return IntDistribution(min(values), max(values), step=abs(int(value.step)))
    return CategoricalDistribution(values)  # choice(...), float or shuffled ranges

def search_space(params: Mapping[str, str], arguments: list[str],
                 config_loader: Any) -> tuple[dict[str, BaseDistribution], list[str]]:
    """`hydra.sweeper.params` and the command line -> (searched keys, fixed overrides)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create(config_loader=config_loader)
    lines = [f"{key}={value}" for key, value in params.items()] + list(arguments)
    space: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in parser.parse_overrides(lines):
        key = override.get_key_element()
        if override.is_sweep_override():
            space[key] = distribution(override)
            fixed.pop(key, None)
        else:
            fixed[key] = override.input_line or f"{key}={override.get_value_element_as_str()}"
            space.pop(key, None)  # the command line fixes a searched key
    return space, list(fixed.values())

def override_value(value: Any) -> str:
    """A sampled value as it goes on the command line (`null`, `true`, `0.001`, ...)."""
    from hydra.core.override_parser.types import Transformer

    return Transformer.str(value)
