"""threads=auto|N: the threads one process computes with."""

from __future__ import annotations

import pytest
import torch

from podium.threads import auto_threads, use_threads


@pytest.mark.parametrize(("n_cores", "load", "jobs", "expected"), [
    (2, 0.0, 1, 2),    # an idle machine: every core
    (2, 1.2, 1, 1),    # another process holds a core: one thread, not two waiting on it
    (2, 0.0, 2, 1),    # make cv JOBS=2: a core per fold
    (16, 3.0, 2, 8),   # a core each side, plenty free
    (16, 12.4, 2, 4),  # busy: what is free
    (2, 5.0, 1, 1),    # overloaded: still one
])
def test_auto_gives_the_free_cores_shared_among_jobs(n_cores, load, jobs, expected):
    assert auto_threads(n_cores, load, jobs) == expected


def test_a_number_sets_torch_openmp_and_the_loaded_pools():
    from threadpoolctl import threadpool_info

    before = torch.get_num_threads()
    try:
        line = use_threads(1)
        assert torch.get_num_threads() == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
        assert line == "threads: 1 (threads=1)"
    finally:
        use_threads(before)
