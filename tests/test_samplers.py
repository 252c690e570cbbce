"""ClassBalancedSampler: target distribution, reproducibility, epochs and DDP sharding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from hypothesis import given, settings
from hypothesis import strategies as st
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from omegaconf import OmegaConf

from podium.data.samplers import ClassBalancedSampler

CONF = Path(__file__).resolve().parents[1] / "conf"
COUNTS = [1000, 100, 10]


def make_labels(counts: list[int] = COUNTS, seed: int = 0) -> torch.Tensor:
    """Shuffled labels with the given class counts, so class blocks are not contiguous."""
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


@pytest.mark.parametrize("power", [1.0, 0.5, 0.0])
def test_class_histogram_matches_target(power: float) -> None:
    labels = make_labels()
    draws = 60_000
    sampler = ClassBalancedSampler(labels, power=power, num_samples=draws, seed=3)
    idx = torch.tensor(list(sampler))
    freq = torch.bincount(labels[idx], minlength=3).double() / draws
    # P(class c) = n_c * n_c^-power / sum_k n_k^(1-power), written out by hand.
    n = np.array(COUNTS, dtype=np.float64)
    target = n ** (1 - power) / (n ** (1 - power)).sum()
    # Tolerance: the std of a class frequency is sqrt(p(1-p)/draws) <= 0.0021 here; 0.01 is
    # over 4.5 sigma, while the nearest wrong scheme is off by more than 0.05.
    np.testing.assert_allclose(freq.numpy(), target, atol=0.01)


def test_samples_uniform_within_class() -> None:
    labels = make_labels()
    draws = 60_000
    idx = torch.tensor(list(ClassBalancedSampler(labels, num_samples=draws, seed=1)))
    per_sample = torch.bincount(idx, minlength=len(labels)).double()
    rare = (labels == 2).nonzero().squeeze(1)
    # Each rare sample has p = 1/30: expected 2000 hits, std ~44; 10 % (~4.5 sigma) tolerance.
    expected = draws / 3 / COUNTS[2]
    assert torch.all((per_sample[rare] - expected).abs() < 0.1 * expected)
    assert per_sample.sum() == draws


def test_length_and_range() -> None:
    labels = make_labels()
    sampler = ClassBalancedSampler(labels)
    order = list(sampler)
    assert len(sampler) == len(labels) == len(order)
    assert min(order) >= 0 and max(order) < len(labels)
    assert len(ClassBalancedSampler(labels, num_samples=17)) == 17
    assert len(list(ClassBalancedSampler(labels, num_samples=17))) == 17


def test_same_seed_same_order_different_seed_different_order() -> None:
    labels = make_labels()
    a = list(ClassBalancedSampler(labels, seed=5))
    b = list(ClassBalancedSampler(labels.clone(), seed=5))
    c = list(ClassBalancedSampler(labels, seed=6))
    assert a == b
    assert a != c


def test_order_changes_between_epochs_without_set_epoch() -> None:
    sampler = ClassBalancedSampler(make_labels(), seed=0)
    first, second, third = list(sampler), list(sampler), list(sampler)
    assert first != second and second != third and first != third


def test_set_epoch_defines_the_order() -> None:
    labels = make_labels()
    walked = ClassBalancedSampler(labels, seed=2)
    natural = [list(walked) for _ in range(3)]  # epochs 0, 1, 2 by counting
    fresh = ClassBalancedSampler(labels, seed=2)
    fresh.set_epoch(2)
    assert list(fresh) == natural[2]
    walked.set_epoch(0)  # going back reproduces epoch 0 exactly
    assert list(walked) == natural[0]
    walked.set_epoch(1)
    walked.set_epoch(1)  # idempotent
    assert list(walked) == natural[1]


def test_labels_need_not_be_contiguous() -> None:
    labels = torch.tensor([7] * 90 + [-3] * 9 + [100] * 1)
    idx = torch.tensor(list(ClassBalancedSampler(labels, num_samples=30_000)))
    drawn = labels[idx]
    for value in (7, -3, 100):  # each ~1/3; std 0.0027, tolerance 0.02
        assert abs((drawn == value).double().mean().item() - 1 / 3) < 0.02
    list_sampler = ClassBalancedSampler(labels.tolist(), num_samples=50)
    assert list(list_sampler) == list(ClassBalancedSampler(labels, num_samples=50))


@pytest.mark.parametrize("num_samples", [1110, 1111])
def test_ddp_shards_are_disjoint_and_cover_the_epoch(num_samples: int) -> None:
    labels = make_labels()
    shards: dict[int, list[list[int]]] = {}
    for rank in (0, 1):  # each "rank" builds its own sampler, as separate processes would
        sampler = ClassBalancedSampler(labels, num_samples=num_samples, seed=11)
        wrapper = DistributedSamplerWrapper(sampler, num_replicas=2, rank=rank, shuffle=False)
        shards[rank] = []
        for epoch in range(3):
            wrapper.set_epoch(epoch)  # what Lightning does each epoch
            shards[rank].append(list(wrapper))
    for epoch in range(3):
        reference = ClassBalancedSampler(labels, num_samples=num_samples, seed=11)
        reference.set_epoch(epoch)
        full = list(reference)
        s0, s1 = shards[0][epoch], shards[1][epoch]
        assert len(s0) == len(s1) == (num_samples + 1) // 2
        # DistributedSampler(shuffle=False) gives rank r the positions r, r+2, ...; padding
        # (odd length) repeats position 0. Interleaving the shards must rebuild the epoch.
        merged = [None] * (len(s0) + len(s1))
        merged[0::2], merged[1::2] = s0, s1
        assert merged[:num_samples] == full
        assert merged[num_samples:] == full[: len(merged) - num_samples]
    assert shards[0][0] != shards[0][1]  # and the epochs differ


def test_ddp_ranks_agree_without_set_epoch() -> None:
    labels = make_labels()
    wrappers = [
        DistributedSamplerWrapper(
            ClassBalancedSampler(labels, seed=4), num_replicas=2, rank=r, shuffle=False
        )
        for r in (0, 1)
    ]
    for epoch in range(3):  # nobody calls set_epoch: both ranks advance in lockstep
        fresh = ClassBalancedSampler(labels, seed=4)
        fresh.set_epoch(epoch)
        full = list(fresh)
        assert list(wrappers[0]) == full[0::2] and list(wrappers[1]) == full[1::2]


BAD = [
    (lambda: ClassBalancedSampler(torch.tensor([0.5, 1.0])), "torch.float32"),
    (lambda: ClassBalancedSampler(torch.zeros(2, 3, dtype=torch.long)), "(2, 3)"),
    (lambda: ClassBalancedSampler(torch.tensor([], dtype=torch.long)), "(0,)"),
    (lambda: ClassBalancedSampler([0, 1], num_samples=0), "num_samples=0"),
    (lambda: ClassBalancedSampler([0, 1], power=float("inf")), "power=inf"),
]


@pytest.mark.parametrize("make,needle", BAD, ids=[needle for _, needle in BAD])
def test_bad_input_raises_value_error(make, needle: str) -> None:
    with pytest.raises(ValueError) as info:
        make()
    assert needle in str(info.value) and "\n" not in str(info.value)


@settings(max_examples=50, deadline=None)
@given(
    counts=st.lists(st.integers(1, 50), min_size=1, max_size=6),
    power=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    seed=st.integers(0, 2**31),
)
def test_indices_valid_for_any_labels(counts: list[int], power: float, seed: int) -> None:
    labels = make_labels(counts, seed)
    sampler = ClassBalancedSampler(labels, power=power, seed=seed)
    order = list(sampler)
    assert len(order) == len(sampler) == sum(counts)
    assert all(0 <= i < len(labels) for i in order)


@pytest.mark.parametrize("name,power", [("balanced", 1.0), ("sqrt", 0.5)])
def test_sampler_configs_instantiate(name: str, power: float) -> None:
    factory = instantiate(OmegaConf.load(CONF / "sampler" / f"{name}.yaml"))
    labels = make_labels()
    sampler = factory(labels=labels, seed=9)
    assert isinstance(sampler, ClassBalancedSampler) and sampler.power == power
    order = list(sampler)
    assert len(order) == len(labels) and max(order) < len(labels)
    assert order == list(ClassBalancedSampler(labels, power=power, seed=9))
