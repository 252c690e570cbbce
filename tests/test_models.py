from __future__ import annotations

import pytest
import torch

from podium.model.nets import CifarResNet


@pytest.mark.parametrize(("depth", "blocks"), [(8, 3), (20, 9), (32, 15)])
def test_cifar_resnet_depth_and_shapes(depth, blocks):
    net = CifarResNet(depth=depth, num_classes=7, in_chans=1)
    assert len(net.layers) == blocks  # 3 stages of (depth - 2) / 6 blocks
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 7)
    assert net(torch.randn(2, 1, 33, 29)).shape == (2, 7)


def test_cifar_resnet_rejects_bad_depth():
    with pytest.raises(ValueError, match="depth=21"):
        CifarResNet(depth=21)


def test_timm_model_builds_offline():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from conftest import CONF

    cfg = OmegaConf.load(CONF / "model" / "timm.yaml")
    assert cfg.net.pretrained is False
    net = instantiate(cfg.net, num_classes=4, in_chans=3)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 4)


def test_cosine_head_gives_cosine_similarities():
    net = CifarResNet(depth=8, num_classes=5, in_chans=3, cosine_head=True)
    logits = net(torch.randn(4, 3, 16, 16))
    features = net.head[:2](net.layers(net.stem(torch.randn(1, 3, 16, 16))))
    assert logits.abs().max() <= 1 + 1e-6
    weight = net.head[2].weight
    expected = torch.nn.functional.cosine_similarity(features, weight, dim=1)
    assert torch.allclose(net.head[2](features)[0], expected, atol=1e-6)


def test_a_tiny_net_trains_contiguous_and_gets_canonical_strides(tmp_path, demo_root):
    """torch 2.14.1's channels-last backward of a strided 1x1 convolution over fewer than 8
    channels corrupts the heap on AVX2 processors: a width-4 ResNet asked for channels_last
    keeps NCHW, and a shifted one-channel batch (strides that pass for both layouts) reaches
    the net with NCHW's own strides, so no convolution picks the channels-last path."""
    import torch

    from conftest import make_cfg
    from podium.build import build_datamodule, build_module
    from podium.model.augment import RandomShift

    cfg = make_cfg(tmp_path, [f"data.root={demo_root}", f"data.demo_root={demo_root}",
                              "model.net.depth=8", "model.net.width=4"])
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    module = build_module(cfg, datamodule.spec)
    assert cfg.model.channels_last and module.memory_format == torch.contiguous_format
    seen = []
    module.net.register_forward_pre_hook(lambda _, args: seen.append(args[0].stride()))
    batch = RandomShift(0.125)(next(iter(datamodule.train_dataloader()))[0])
    assert batch.stride()[1] == 1  # channels-last strides for a one-channel batch
    module(batch)
    assert seen == [torch.empty(batch.shape).stride()]
    cfg.model.net.width = 16
    assert build_module(cfg, datamodule.spec).memory_format == torch.channels_last
