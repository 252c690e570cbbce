"""threads=auto|N: the threads one process computes with."""

from __future__ import annotations

import pytest
import torch

from podium.threads import auto_threads, use_threads


@pytest.mark.parametrize(("n_cores", "jobs", "table_network", "expected"), [
    (2, 1, False, 2),    # every core
    (2, 2, False, 1),    # make cv JOBS=2: a core per fold
    (16, 3, False, 5),   # shared among the jobs
    (16, 1, True, 1),    # a network on a table: one, however many cores
    (1, 4, False, 1),    # at least one
])
def test_auto_is_the_cores_shared_among_jobs_and_one_for_a_table_network(
        n_cores, jobs, table_network, expected):
    assert auto_threads(n_cores, jobs, table_network) == expected


def test_auto_does_not_depend_on_the_machines_load(monkeypatch):
    """The thread count changes a network's sums: the same command, whatever else runs,
    gets the same threads (and so the same model for a seed)."""
    import os

    from podium import threads

    before = torch.get_num_threads()
    try:
        said = set()
        for load in (0.0, 7.5):
            monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, load, load))
            said.add(use_threads("auto"))
        assert len(said) == 1 and torch.get_num_threads() == threads.cores()
    finally:
        use_threads(before)


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
