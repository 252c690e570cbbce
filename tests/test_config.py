"""Every option of every config group composes and instantiates into a working object."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from conftest import CONF, make_cfg
from podium.build import build_loss, build_optimizer_factory, build_trainer
from podium.model.metrics import resolve_metric
from podium.train import quiet_known_noise

REGRESSION_LOSSES = {"mse", "l1", "huber"}
MULTILABEL_LOSSES = {"bce", "focal_bce", "asymmetric", "soft_f1_multilabel"}

GROUPS = ["data", "model", "loss", "optimizer", "scheduler", "sampler", "augment",
          "callbacks", "trainer", "logger", "experiment", "debug"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


def test_every_group_has_options():
    assert {g for g, _ in OPTIONS} == set(GROUPS)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_instantiates(group, option, tmp_path, demo_root):
    if group == "logger" and option in ("wandb", "mlflow"):  # optional packages
        pytest.importorskip(option)
    task = ["data.task=regression"] if group == "loss" and option in REGRESSION_LOSSES else []
    task += ["data.task=multilabel"] if group == "loss" and option in MULTILABEL_LOSSES else []
    cfg = resolve_metric(make_cfg(tmp_path, [f"{group}={option}", f"data.root={demo_root}",
                                             *task]))
    inputs = {"in_features": 64} if cfg.model.net._target_.endswith("MLP") else {"in_chans": 1}
    if cfg.model.net._target_.endswith("TabM"):  # a table's 64 numeric columns, 3 bins each
        inputs = {"in_features": 64, "features": {
            "numeric": {f"x{i}": {"indicator": False} for i in range(64)}, "categorical": {},
            "bins": [[0.0, 64.0, 128.0, 255.0]] * 64}}
    if cfg.model.net.get("pretrained"):  # offline: loading the weights is tests/test_weights.py's
        inputs["pretrained"] = False
    net = instantiate(cfg.model.net, num_classes=3, **inputs)
    images = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    logits = net(images.float().flatten(1) if "features" in inputs else images.float())
    if logits.ndim == 3:  # an ensemble's members (TabM): (N, k, C)
        assert logits.shape[1] == cfg.model.net.k
        logits = logits.mean(dim=1)
    assert logits.shape == (4, 3)

    loss = build_loss(cfg, class_counts=[5, 3, 2])
    if cfg.data.task == "regression":  # one output, float targets
        value = loss(logits[:, 0], torch.tensor([0.5, 1.0, 2.0, 0.0]))
    elif cfg.data.task == "multilabel":  # one logit per label, multi-hot targets
        value = loss(logits, torch.tensor([[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 1.0]]))
    else:
        value = loss(logits, torch.tensor([0, 1, 2, 0]))
    assert value.ndim == 0 and torch.isfinite(value)

    optimizer = build_optimizer_factory(cfg)(params=net)
    if cfg.scheduler:
        scheduler = instantiate(cfg.scheduler, _convert_="all")
        assert scheduler["interval"] in ("step", "epoch")
        scheduler["scheduler"](optimizer)
    if cfg.sampler:
        sampler = instantiate(cfg.sampler)(labels=torch.tensor([0, 0, 0, 1, 2]), seed=0)
        assert len(list(sampler)) == len(sampler)
    for key, inputs in (("batch", images), ("sample", images[0])):
        if cfg.augment[key]:
            out = instantiate(cfg.augment[key])(inputs)
            assert out.shape == inputs.shape and out.dtype == torch.uint8
    assert instantiate(cfg.data).root == demo_root
    if cfg.trainer.accelerator != "gpu" or torch.cuda.is_available():  # trainer=ddp needs GPUs
        quiet_known_noise(cfg)  # what a run sets first (mlflow's file store opt-in)
        build_trainer(cfg)
