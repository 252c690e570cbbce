from __future__ import annotations

import torch

from podium.augment import RandomShift


def test_random_shift_is_a_padded_crop():
    image = torch.arange(3 * 8 * 8, dtype=torch.int64).view(3, 8, 8).to(torch.uint8)
    padded = torch.zeros(3, 10, 10, dtype=torch.uint8)  # fraction 1/8 of 8 = 1 pixel per side
    padded[:, 1:9, 1:9] = image
    crops = {tuple(padded[:, i : i + 8, j : j + 8].flatten().tolist())
             for i in range(3) for j in range(3)}
    torch.manual_seed(0)
    seen = {tuple(RandomShift(0.125)(image).flatten().tolist()) for _ in range(200)}
    assert seen == crops  # every one of the 9 offsets, and nothing else
