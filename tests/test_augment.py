from __future__ import annotations

import torch

from conftest import image_spec
from podium.model.augment import RandomFlip, RandomShift


def test_random_shift_is_a_padded_crop():
    image = torch.arange(3 * 8 * 8, dtype=torch.int64).view(3, 8, 8).to(torch.uint8)
    padded = torch.zeros(3, 10, 10, dtype=torch.uint8)  # fraction 1/8 of 8 = 1 pixel per side
    padded[:, 1:9, 1:9] = image
    crops = {tuple(padded[:, i : i + 8, j : j + 8].flatten().tolist())
             for i in range(3) for j in range(3)}
    torch.manual_seed(0)
    seen = {tuple(RandomShift(0.125)(image).flatten().tolist()) for _ in range(200)}
    assert seen == crops  # every one of the 9 offsets, and nothing else


def crops_of(image: torch.Tensor, pad: int) -> set[tuple]:
    """Every pad-and-crop of one (C, H, W) image, by hand."""
    c, h, w = image.shape
    padded = torch.zeros(c, h + 2 * pad, w + 2 * pad, dtype=image.dtype)
    padded[:, pad : pad + h, pad : pad + w] = image
    return {tuple(padded[:, i : i + h, j : j + w].flatten().tolist())
            for i in range(2 * pad + 1) for j in range(2 * pad + 1)}


def test_random_shift_draws_an_offset_per_image_of_a_batch():
    torch.manual_seed(0)
    batch = torch.randint(0, 256, (64, 3, 16, 12), dtype=torch.uint8)
    out = RandomShift(0.125)(batch)  # 2 pixels vertically, 2 (round(1.5)) horizontally
    assert out.shape == batch.shape and out.dtype == torch.uint8
    for image, shifted in zip(batch, out, strict=True):
        assert tuple(shifted.flatten().tolist()) in crops_of(image, 2)
    # offsets differ between images: the zero border is not in one place for all
    borders = {tuple((shifted == 0).all(dim=0).flatten().tolist()) for shifted in out}
    assert len(borders) > 10


def test_random_flip_flips_each_image_on_its_own():
    torch.manual_seed(0)
    batch = torch.randint(0, 256, (64, 3, 5, 7), dtype=torch.uint8)
    out = RandomFlip(0.5)(batch)
    mirrored = [torch.equal(o, b.flip(-1)) for o, b in zip(out, batch, strict=True)]
    kept = [torch.equal(o, b) for o, b in zip(out, batch, strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True))
    assert 16 < sum(mirrored) < 48  # about half of 64, drawn per image
    assert torch.equal(RandomFlip(1.0)(batch), torch.flip(batch, dims=[3]))
    assert torch.equal(RandomFlip(0.0)(batch), batch)
    assert torch.equal(RandomFlip(1.0, dim=-2)(batch[0]), batch[0].flip(1))


def test_the_module_augments_training_batches_only():
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from podium.model.module import CompetitionModule
    from podium.model.nets import CifarResNet

    seen = []

    def augment(images):
        seen.append(images.shape[0])
        return images.flip(-1)

    data = TensorDataset(torch.randint(0, 256, (12, 1, 8, 8), dtype=torch.uint8),
                         torch.arange(12) % 3)
    module = CompetitionModule(
        CifarResNet(depth=8, width=4, num_classes=3, in_chans=1), loss=torch.nn.CrossEntropyLoss(),
        optimizer=lambda params: torch.optim.SGD(params.parameters(), lr=0.1),
        spec=image_spec(["a", "b", "c"]), augment=augment)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, DataLoader(data, batch_size=4), DataLoader(data, batch_size=6))
    assert seen == [4, 4, 4]  # three training batches; the two validation batches untouched
    trainer.predict(module, DataLoader(data, batch_size=6))
    assert seen == [4, 4, 4]
