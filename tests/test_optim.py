"""Parameter groups, gradient accumulation, resume, EMA/SWA, mixed precision and lr-find,
each checked against a reference computed here."""

from __future__ import annotations

import copy
import math
from functools import partial

import lightning as L
import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from tiny_fit import TRAIN_BATCHES, FakeMetric, fit, logged_lrs, one_thread  # noqa: F401
from torch import nn

from conftest import image_spec, make_cfg, run_cli, run_dirs
from podium.build import best_checkpoint, build_module
from podium.errors import PodiumError
from podium.model.module import CompetitionModule
from podium.model.nets import CifarResNet
from podium.model.optim import build_optimizer, param_groups


# -- parameter groups ------------------------------------------------------------------------
def groups_by_param(optimizer: torch.optim.Optimizer) -> dict[int, dict]:
    return {id(p): g for g in optimizer.param_groups for p in g["params"]}


@pytest.mark.parametrize("kind", ["resnet", "timm"])
def test_no_decay_and_backbone_lr_groups_on_a_real_net(kind):
    if kind == "resnet":
        net = CifarResNet(depth=8, num_classes=5, in_chans=3)
        head, linear = net.head, net.head[2]
    else:
        import timm

        net = timm.create_model("resnet18", pretrained=False, num_classes=5)
        head = linear = net.fc
    factory = partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-3)
    optimizer = build_optimizer(net, factory, no_decay_norm_bias=True, backbone_lr_mult=0.25)
    group_of = groups_by_param(optimizer)
    params = list(net.parameters())
    assert len(group_of) == len(params) == sum(len(g["params"]) for g in optimizer.param_groups)
    head_ids = {id(p) for p in head.parameters()}
    norm_and_bias = [p for m in net.modules() if isinstance(m, nn.BatchNorm2d)
                     for p in m.parameters()] + [linear.bias]
    assert all(group_of[id(p)]["weight_decay"] == 0.0 for p in norm_and_bias)
    for p in params:
        group = group_of[id(p)]
        assert group["weight_decay"] == (0.0 if p.ndim <= 1 else 1e-3)
        assert group["lr"] == pytest.approx(0.1 if id(p) in head_ids else 0.025)

    # Behaviour, not bookkeeping: with zero gradients, one SGD step shrinks exactly the
    # decayed parameters, by lr x weight_decay.
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for p, old in zip(params, before, strict=True):
        group = group_of[id(p)]
        torch.testing.assert_close(p.detach(), old * (1 - group["lr"] * group["weight_decay"]))


@pytest.mark.parametrize("compiled", [False, True])
def test_a_vits_no_weight_decay_names_are_not_decayed(compiled):
    """pos_embed and cls_token are 3-D: only the model's `no_weight_decay()` names keep them
    out of weight decay, also through torch.compile's wrapper (its names gain `_orig_mod.`)."""
    import timm

    net = timm.create_model("test_vit", num_classes=3)
    by_name = dict(net.named_parameters())
    wrapped = torch.compile(net) if compiled else net
    optimizer = build_optimizer(wrapped, partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.05))
    group_of = groups_by_param(optimizer)
    for name in ("pos_embed", "cls_token"):
        assert by_name[name].ndim == 3 and group_of[id(by_name[name])]["weight_decay"] == 0.0
    for name, p in by_name.items():
        expected = 0.0 if p.ndim <= 1 or name in ("pos_embed", "cls_token") else 0.05
        assert group_of[id(p)]["weight_decay"] == expected, name
    # the network's order, in and across groups: a checkpointed optimizer state maps back
    order = {id(p): i for i, p in enumerate(by_name.values())}
    positions = [[order[id(p)] for p in g["params"]] for g in optimizer.param_groups]
    assert all(pos == sorted(pos) for pos in positions)
    assert [pos[0] for pos in positions] == sorted(pos[0] for pos in positions)


def test_torch_behaviour_without_no_decay():
    net = CifarResNet(depth=8, num_classes=5, in_chans=1)
    optimizer = build_optimizer(net, partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.05),
                                no_decay_norm_bias=False)
    assert len(optimizer.param_groups) == 1
    assert all(g["weight_decay"] == 0.05 and g["lr"] == 1e-3 for g in optimizer.param_groups)


def test_backbone_lr_mult_needs_a_head():
    with pytest.raises(PodiumError, match="backbone_lr_mult=0.1 needs a classifier head"):
        param_groups(nn.Sequential(nn.Linear(2, 2)), backbone_lr_mult=0.1)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_config_wires_groups_into_the_module(optimizer, tmp_path):
    cfg = make_cfg(tmp_path, [f"optimizer={optimizer}", "model.backbone_lr_mult=0.1",
                              "scheduler=none"])
    module = build_module(cfg, image_spec(["a", "b", "c"], [0.5], [0.25]))
    opt = module.configure_optimizers()
    base = cfg.optimizer.lr
    assert type(opt).__name__.lower() == optimizer
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == pytest.approx({"head": base, "head_no_decay": base,
                                 "backbone": base * 0.1, "backbone_no_decay": base * 0.1})


def test_any_torch_optimizer_by_target(tmp_path):
    cfg = make_cfg(tmp_path, ["optimizer._target_=torch.optim.RAdam", "optimizer.lr=0.02",
                              "scheduler=none"])
    opt = build_module(cfg, image_spec(["a", "b"], [0.5], [0.25])).configure_optimizers()
    assert type(opt).__name__ == "RAdam"
    assert {g["lr"] for g in opt.param_groups} == {0.02}
    assert "fused" not in opt.defaults  # RAdam has no fused step: the key is not passed


@pytest.mark.parametrize("optimizer", ["adamw", "adam"])
def test_the_fused_step_moves_weights_as_torchs_own_step(tmp_path, optimizer):
    """`optimizer.fused=true` (the tabular recipe's) is torch's fused kernel, and it steps
    the weights as the same class without it does, group by group."""
    cfg = make_cfg(tmp_path, [f"optimizer={optimizer}", "optimizer.fused=true", "scheduler=none"])
    module = build_module(cfg, image_spec(["a", "b"], [0.5], [0.25]))
    reference = copy.deepcopy(module.net)
    fused = module.configure_optimizers()
    assert fused.defaults["fused"] is True
    twin = dict(zip(map(id, module.net.parameters()), reference.parameters(), strict=True))
    plain = type(fused)([{**g, "fused": False, "params": [twin[id(p)] for p in g["params"]]}
                         for g in fused.param_groups])
    images = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    for _ in range(3):
        for net, opt in ((module.net, fused), (reference, plain)):
            opt.zero_grad()
            net(images).square().sum().backward()
            opt.step()
    for (name, p), q in zip(module.net.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)


# -- gradient accumulation --------------------------------------------------------------------
def no_bn_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 10))


def one_optimizer_step(images, labels, batch_size: int, accumulate: int) -> nn.Module:
    torch.manual_seed(0)
    net = no_bn_net()
    module = CompetitionModule(
        net, loss=nn.CrossEntropyLoss(),
        optimizer=partial(build_optimizer, optimizer=partial(
            torch.optim.SGD, lr=0.5, momentum=0.9, weight_decay=1e-2)),
        spec=image_spec([str(i) for i in range(10)]),
    )
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels),
                                         batch_size=batch_size, shuffle=False)
    trainer = L.Trainer(max_steps=1, accumulate_grad_batches=accumulate, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    trainer.fit(module, train_dataloaders=loader)
    assert trainer.global_step == 1
    return net


def test_batch_8_times_accumulate_4_equals_batch_32(demo_root):
    from podium.data.image import ImageDataModule

    data = ImageDataModule(root=demo_root, demo_root=demo_root)
    data.prepare_data()
    data.setup("fit")
    images, labels = zip(*(data.train_set[i] for i in range(32)), strict=True)
    images, labels = torch.stack(images), torch.as_tensor(labels)
    torch.manual_seed(0)
    start = no_bn_net().state_dict()
    big = one_optimizer_step(images, labels, batch_size=32, accumulate=1).state_dict()
    small = one_optimizer_step(images, labels, batch_size=8, accumulate=4).state_dict()
    for name in start:
        assert not torch.allclose(big[name], start[name])  # the step moved every tensor
        torch.testing.assert_close(small[name], big[name], atol=1e-5, rtol=0)


# -- resume -----------------------------------------------------------------------------------
class StopAfterEpoch(Callback):
    """An interruption: stop (after validation and last.ckpt) at the end of `epoch`."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            trainer.should_stop = True


def test_resume_from_last_ckpt_matches_an_uninterrupted_run(tmp_path, demo_root):
    # The default shuffling and augmentation: EpochSeed makes each epoch's randomness a
    # function of seed + epoch, not of how many epochs this process has run.
    overrides = ["optimizer=sgd", "scheduler=warmup_cosine", "scheduler.scheduler.warmup_steps=3",
                 "trainer.max_epochs=3", "trainer.deterministic=true",
                 "++trainer.limit_train_batches=3"]
    _, _, whole, _ = fit(tmp_path / "whole", demo_root, overrides)
    _, first, _, _ = fit(tmp_path / "first", demo_root, overrides, callbacks=[StopAfterEpoch(0)])
    assert first.current_epoch == 1
    last = tmp_path / "first" / "run" / "checkpoints" / "last.ckpt"
    _, _, resumed, _ = fit(tmp_path / "resumed", demo_root, overrides, ckpt_path=str(last))

    whole_lr, resumed_lr = (logged_lrs(tmp_path / d / "run") for d in ("whole", "resumed"))
    assert list(resumed_lr.index) == [3, 4, 5, 6, 7, 8]  # epochs 1-2, 3 steps each
    pd.testing.assert_frame_equal(resumed_lr, whole_lr.loc[3:])
    for name, value in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, atol=1e-6, rtol=0)


# -- EMA and SWA ------------------------------------------------------------------------------
class RecordWeights(Callback):
    """The module's floating-point state after every optimizer step, by global_step."""

    def __init__(self) -> None:
        self.after_step: dict[int, dict[str, torch.Tensor]] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.after_step[trainer.global_step] = {
            k: v.detach().clone() for k, v in pl_module.state_dict().items()
            if v.is_floating_point()
        }


def ema_by_hand(history: dict[int, dict[str, torch.Tensor]], upto: int, decay: float):
    ema = copy.deepcopy(history[1])  # the average starts as the weights after step 1
    for step in range(2, upto + 1):
        for k in ema:
            ema[k] = decay * ema[k] + (1 - decay) * history[step][k]
    return ema


def test_ema_weights_are_checkpointed_and_used_for_prediction(tmp_path, demo_root):
    decay = 0.8
    recorder = RecordWeights()
    _, trainer, module, data = fit(tmp_path, demo_root, [
        "callbacks=ema", f"callbacks.ema.multi_avg_fn.decay={decay}", "trainer.max_epochs=3",
    ], callbacks=[recorder])
    assert trainer.global_step == 3 * TRAIN_BATCHES

    for path in (best_checkpoint(trainer), str(tmp_path / "run/checkpoints/last.ckpt")):
        ckpt = torch.load(path, weights_only=False)
        expected = ema_by_hand(recorder.after_step, ckpt["global_step"], decay)
        raw = recorder.after_step[ckpt["global_step"]]
        for k, value in expected.items():
            torch.testing.assert_close(ckpt["state_dict"][k], value, atol=1e-6, rtol=1e-5)
        assert any(not torch.allclose(raw[k], expected[k]) for k in expected)

    # As train() does: predict with best.ckpt on the same trainer -> the EMA weights.
    best = best_checkpoint(trainer)
    trainer.validate(module, datamodule=data, ckpt_path=best, verbose=False)
    predictions = trainer.predict(module, datamodule=data, ckpt_path=best)
    loaders = data.predict_dataloader()
    if isinstance(loaders, list):  # several predict loaders: the test images come first
        predictions, loaders = predictions[0], loaders[0]
    reference = copy.deepcopy(module)
    reference.load_state_dict(
        ema_by_hand(recorder.after_step, torch.load(best, weights_only=False)["global_step"],
                    decay), strict=False)
    reference.eval()
    with torch.no_grad():
        expected = torch.cat([reference.predict_step(x, i) for i, x in enumerate(loaders)])
    torch.testing.assert_close(torch.cat(predictions), expected, atol=1e-5, rtol=0)


class RecordEpochStart(Callback):
    """Parameters at the start of every epoch (what Lightning's SWA averages)."""

    def __init__(self) -> None:
        self.at_start: list[list[torch.Tensor]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.at_start.append([p.detach().clone() for p in pl_module.parameters()])


def test_swa_averages_the_epochs_from_swa_epoch_start(tmp_path, demo_root):
    recorder = RecordEpochStart()
    # 4 epochs, start at epoch 2 (0-based 1): averages the weights at the start of epochs
    # 1, 2, 3 (Lightning's SWA updates at epoch start); an extra epoch resets BatchNorm.
    _, trainer, module, _ = fit(tmp_path, demo_root, [
        "callbacks=swa", "callbacks.swa.swa_epoch_start=2", "trainer.max_epochs=4",
        "++trainer.limit_train_batches=2",
    ], callbacks=[recorder])
    assert len(recorder.at_start) == 5  # 4 epochs + the BatchNorm epoch
    expected = [torch.stack(ps).mean(0) for ps in zip(*recorder.at_start[1:4], strict=True)]
    for p, value in zip(module.parameters(), expected, strict=True):
        torch.testing.assert_close(p.detach(), value, atol=1e-6, rtol=1e-5)
    assert math.isfinite(trainer.callback_metrics["val/loss"])


def test_early_stopping_stops_when_the_monitor_stalls(tmp_path, demo_root):
    # The monitor never improves after epoch 0; patience 2 -> stop after epoch 2.
    _, trainer, _, _ = fit(tmp_path, demo_root, [
        "callbacks=early_stopping", "callbacks.early_stopping.patience=2",
        "metric.monitor=val/fake", "metric.mode=min", "trainer.max_epochs=10",
        "++trainer.limit_train_batches=1",
    ], callbacks=[FakeMetric([1.0] * 10)])
    assert trainer.current_epoch == 3  # epochs 0, 1, 2 ran


# -- precision, compile, lr-find --------------------------------------------------------------
def test_bf16_mixed_trains_on_cpu_without_nan(tmp_path, demo_root):
    _, trainer, module, _ = fit(tmp_path, demo_root, [
        "trainer.precision=bf16-mixed", "trainer.max_epochs=2", "trainer.accelerator=cpu",
    ])
    assert trainer.precision == "bf16-mixed"
    assert math.isfinite(trainer.callback_metrics["val/loss"])
    frame = pd.read_csv(tmp_path / "run" / "csv" / "metrics.csv")
    assert frame["train/loss_step"].dropna().map(math.isfinite).all()
    assert all(torch.isfinite(p).all() for p in module.parameters())
    first, last = frame["train/loss_step"].dropna().iloc[[0, -1]]
    assert last < first  # it learnt something


@pytest.mark.slow
def test_compile_runs_a_fast_dev_run_on_cpu(tmp_path, demo_root):
    _, trainer, module, _ = fit(tmp_path, demo_root, ["model.compile=true", "debug=fdr"])
    assert type(module.net).__name__ == "OptimizedModule"
    assert math.isfinite(trainer.callback_metrics["val/loss"])


def test_lr_find_prints_a_suggestion_and_saves_the_plot(tmp_path, demo_root, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    proc = run_cli("podium.lr_find", "model.net.depth=8", "model.net.width=4",
                   "lr_find.num_training=20", f"data.root={demo_root}",
                   f"data.demo_root={demo_root}", f"paths.log_dir={tmp_path / 'logs'}")
    [run] = run_dirs(tmp_path / "logs", task="lr_find")
    assert (run / "lr_find.png").stat().st_size > 1000
    line = next(x for x in proc.stdout.splitlines() if x.startswith("suggested lr: "))
    assert 1e-6 <= float(line.split()[2]) <= 1.0
    assert not list(run.glob(".lr_find*.ckpt"))  # the finder's temporary checkpoint is gone


class FakeTie(Callback):
    """Logs `val/fake` and `val/fake_tie` per epoch: a monitor and its tie-break."""

    def __init__(self, values: list[float], ties: list[float]) -> None:
        self.values, self.ties = values, ties

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        pl_module.log("val/fake", self.values[trainer.current_epoch])
        pl_module.log("val/fake_tie", self.ties[trainer.current_epoch])


@pytest.mark.parametrize(("tie_break", "best_epoch"), [("val/fake_tie", 3), ("null", 1)])
def test_a_tie_with_the_best_score_goes_to_the_lower_tie_break(tie_break, best_epoch, tmp_path,
                                                               demo_root):
    """Epochs 1-4 tie on the monitor (a saturated small split); the lowest tie-break among
    them (epoch 3) is kept; a worse score never wins on its tie-break; without one,
    Lightning's rule: the first epoch to reach the score."""
    from podium.callbacks.checkpoints import checkpoint_epoch

    values, ties = [0.5, 0.9, 0.9, 0.9, 0.9, 0.8], [0.1, 0.8, 0.6, 0.4, 0.5, 0.01]
    _, trainer, _, _ = fit(tmp_path, demo_root, [
        "metric.monitor=val/fake", "metric.mode=max", f"trainer.max_epochs={len(values)}",
        f"callbacks.model_checkpoint.tie_break={tie_break}", "++trainer.limit_train_batches=1",
    ], callbacks=[FakeTie(values, ties)])
    best = trainer.checkpoint_callback
    assert checkpoint_epoch(best.best_model_path) == best_epoch
    assert float(best.best_model_score) == pytest.approx(0.9)
    assert best.state_dict()["best_tie"] == (pytest.approx(0.4) if tie_break != "null" else None)
