"""Fine-tuning offline: pretrained timm weights from a file the test writes, a frozen backbone
that does not move until it is unfrozen, layer-wise lr decay equal to timm's."""

from __future__ import annotations

import copy
from functools import partial

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from lightning.pytorch.callbacks import Callback
from sklearn.metrics import f1_score
from tiny_fit import fit, one_thread  # noqa: F401

from conftest import image_spec, make_cfg
from podium.build import build_module, build_optimizer_factory
from podium.errors import PodiumError
from podium.model.nets import CifarResNet
from podium.model.optim import build_optimizer

TIMM = ["model=timm", "model.net.model_name=test_resnet", "model.channels_last=false"]


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A "pretrained" network saved as a plain state_dict: 3 channels, 1000 classes."""
    torch.manual_seed(0)
    net = timm.create_model("test_resnet", pretrained=False)
    path = tmp_path_factory.mktemp("weights") / "test_resnet.pth"
    torch.save(net.state_dict(), path)
    return path, net.state_dict()


def test_pretrained_weights_load_from_the_file(weights_file, tmp_path):
    path, saved = weights_file
    cfg = make_cfg(tmp_path, [*TIMM, "model.net.pretrained=true", f"model.weights_file={path}"])
    net = build_module(cfg, image_spec("abcd")).net  # 1 channel, 4 classes
    loaded = net.state_dict()
    assert net.get_classifier().out_features == 4
    stem = net.pretrained_cfg["first_conv"] + ".weight"
    for name, value in loaded.items():
        if name.startswith("fc."):
            continue  # a new head: the file's has 1000 classes
        if name == stem:  # 3 input channels adapted to 1: summed over them
            assert torch.allclose(value, saved[name].sum(dim=1, keepdim=True))
        else:
            assert torch.equal(value, saved[name]), name
    untrained = build_module(make_cfg(tmp_path, TIMM), image_spec("abcd")).net
    assert not torch.equal(untrained.state_dict()["layer1.0.conv1.weight"],
                           saved["layer1.0.conv1.weight"])


def test_a_checkpoint_rebuilds_without_the_weights_file(weights_file, tmp_path):
    """Prediction restores a checkpoint: the weights file may be gone by then."""
    cfg = make_cfg(tmp_path, [*TIMM, "model.net.pretrained=true",
                              f"model.weights_file={tmp_path / 'gone.pth'}"])
    with pytest.raises(PodiumError, match="gone.pth not found"):
        build_module(cfg, image_spec("abcd"))
    rebuilt = build_module(cfg, image_spec("abcd"), pretrained=False).net
    reference = timm.create_model("test_resnet", num_classes=4, in_chans=1)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == \
        {k: v.shape for k, v in reference.state_dict().items()}


def test_weights_file_without_pretrained_is_a_one_line_error(weights_file, tmp_path):
    cfg = make_cfg(tmp_path, [*TIMM, f"model.weights_file={weights_file[0]}"])
    with pytest.raises(PodiumError, match="set model.net.pretrained=true"):
        build_module(cfg, image_spec("abcd"))


# -- a frozen backbone ---------------------------------------------------------------------
class Snapshots(Callback):
    """The network's parameters and BatchNorm statistics at the start and each epoch end."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self.states.append(copy.deepcopy(pl_module.net.state_dict()))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.states.append(copy.deepcopy(pl_module.net.state_dict()))


def changed(before: dict, after: dict, head: bool) -> dict[str, bool]:
    return {k: not torch.equal(before[k], after[k]) for k in before
            if k.startswith("head.") == head and not k.endswith("num_batches_tracked")}


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_frozen_backbone_stays_put_then_trains_after_unfreezing(optimizer, tmp_path, demo_root):
    snapshots = Snapshots()
    fit(tmp_path, demo_root, [f"optimizer={optimizer}", "callbacks=finetune",
                              "callbacks.freeze_backbone.epochs=2", "trainer.max_epochs=3"],
        callbacks=[snapshots])
    start, frozen1, frozen2, thawed = snapshots.states
    # two frozen epochs: no backbone parameter or BatchNorm statistic moved (weight decay
    # and momentum included), while the head learned
    assert not any(changed(start, frozen2, head=False).values())
    assert all(changed(start, frozen1, head=True).values())
    assert all(changed(frozen1, frozen2, head=True).values())
    # unfrozen: every backbone tensor trains (weights, BatchNorm affine and statistics)
    moved = changed(frozen2, thawed, head=False)
    assert all(moved.values()), [k for k, v in moved.items() if not v]


def test_freezing_needs_a_head():
    from podium.callbacks.finetune import FreezeBackbone

    with pytest.raises(PodiumError, match="needs a classifier head"):
        FreezeBackbone.backbone(torch.nn.Sequential(torch.nn.Linear(2, 2)))


# -- layer-wise lr decay -------------------------------------------------------------------
def test_layer_decay_learning_rates_equal_timms(tmp_path):
    from timm.optim import param_groups_layer_decay

    cfg = make_cfg(tmp_path, [*TIMM, "model.layer_decay=0.7", "optimizer=adamw",
                              "optimizer.lr=0.01", "optimizer.weight_decay=0.05"])
    net = timm.create_model("test_resnet", num_classes=4, in_chans=1)
    optimizer = build_optimizer_factory(cfg)(params=net)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    decay_of = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    reference = param_groups_layer_decay(net, weight_decay=0.05, layer_decay=0.7)
    assert len(lr_of) == sum(len(g["params"]) for g in reference) == len(list(net.parameters()))
    scales = set()
    for group in reference:
        scales.add(group["lr_scale"])
        for p in group["params"]:
            assert lr_of[id(p)] == pytest.approx(0.01 * group["lr_scale"])
            assert decay_of[id(p)] == pytest.approx(group["weight_decay"])
    assert max(scales) == 1.0 and min(scales) < 0.7 ** 3  # head at lr, the stem far below
    assert all(lr_of[id(p)] == pytest.approx(0.01) for p in net.get_classifier().parameters())


def test_layer_decay_needs_a_timm_network_and_excludes_backbone_lr_mult():
    net = CifarResNet(depth=8, num_classes=3)
    sgd = partial(torch.optim.SGD, lr=0.1)
    with pytest.raises(PodiumError, match="needs a timm network"):
        build_optimizer(net, sgd, layer_decay=0.8)
    with pytest.raises(PodiumError, match="set one of them"):
        build_optimizer(timm.create_model("test_resnet"), sgd, backbone_lr_mult=0.1,
                        layer_decay=0.8)


def test_finetune_run_from_a_weights_file_writes_a_submission(weights_file, tmp_path,
                                                               demo_root):
    """The whole offline recipe on the demo: file weights, frozen epoch, layer decay."""
    from podium.train import train

    cfg = make_cfg(tmp_path, [*TIMM, "model.net.pretrained=true",
                              f"model.weights_file={weights_file[0]}", "model.layer_decay=0.75",
                              "callbacks=finetune", "callbacks.freeze_backbone.epochs=1",
                              "trainer.max_epochs=2", f"data.root={demo_root}",
                              f"data.demo_root={demo_root}"])
    metrics = train(cfg).metrics
    run = tmp_path / "run"
    oof = pd.read_csv(run / "oof.csv", dtype={"id": str})  # the best checkpoint's predictions
    classes = list(pd.read_csv(run / "test_probs.csv", nrows=0).columns[1:])
    predicted = np.array(classes)[oof[classes].to_numpy().argmax(1)]
    assert metrics["val/f1_macro"] == pytest.approx(
        f1_score(oof.label, predicted, labels=classes, average="macro", zero_division=0),
        abs=1e-6)
    submission = pd.read_csv(run / "submission.csv", dtype=str)
    sample = pd.read_csv(demo_root / "sample_submission.csv", dtype=str)
    assert list(submission.id) == list(sample.id) and set(submission.label) <= set(classes)


# -- linear probing before fine-tuning -----------------------------------------------------
class ProbeWitness(Callback):
    """The network as fine-tuning starts, and the rows its stem saw before then."""

    def setup(self, trainer, pl_module, stage) -> None:
        self.rows = 0
        pl_module.net.stem.register_forward_hook(
            lambda m, args, out: setattr(self, "rows", self.rows + len(args[0])))

    def on_train_start(self, trainer, pl_module) -> None:
        self.net, self.rows_before_training = copy.deepcopy(pl_module.net), self.rows


def test_linear_probe_fits_the_head_as_scikit_learns_logistic_regression(tmp_path, demo_root):
    """The head as fine-tuning starts is the L2-regularised multinomial logistic regression
    of the frozen features, after one forward pass per training row."""
    from sklearn.linear_model import LogisticRegression

    witness = ProbeWitness()
    _, _, module, datamodule = fit(
        tmp_path, demo_root, ["callbacks=linear_probe", "callbacks.linear_probe.penalties=[0.01]",
                              "loss=ce", "trainer.max_epochs=1"], callbacks=[witness])
    train = datamodule.train_set
    assert witness.rows_before_training == len(train)
    net = witness.net.eval()
    images, labels = train.__getitems__(list(range(len(train))))
    with torch.no_grad():  # the features by hand: normalised, stem, blocks, pooled
        x = images.float() * module.scale.cpu() - module.shift.cpu()
        features = net.head[:-1](net.layers(net.stem(x))).double().numpy()
        probs = net.head[-1].double()(torch.from_numpy(features)).softmax(-1).numpy()
    reference = LogisticRegression(C=1 / (len(train) * 0.01), tol=1e-10, max_iter=10_000)
    reference.fit(features, labels.numpy())
    assert list(reference.classes_) == list(range(probs.shape[1]))
    np.testing.assert_allclose(probs, reference.predict_proba(features), atol=2e-3)
    weight = net.head[-1].weight.detach().double().numpy()
    np.testing.assert_allclose(weight, reference.coef_, atol=2e-3)


def test_linear_probe_skips_a_resumed_run_and_needs_a_linear_head():
    from types import SimpleNamespace

    from podium.callbacks.finetune import LinearProbe, linear_head

    net = CifarResNet(depth=8, num_classes=3)
    before = copy.deepcopy(net.state_dict())
    LinearProbe().on_fit_start(SimpleNamespace(ckpt_path="last.ckpt"), SimpleNamespace(net=net))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with pytest.raises(PodiumError, match="needs a torch.nn.Linear classifier head"):
        linear_head(CifarResNet(depth=8, num_classes=3, cosine_head=True))
