"""How many threads one process computes with (torch, OpenMP, BLAS): `threads=auto|N`.

A second thread only helps when a core is free for it. On a shared machine (another
training run, a second fold of `make cv JOBS=2`) every parallel region of a process that
holds two threads waits for the busier core, and small models ran 5-8x slower. `auto` is
the same on every run of a command, never read off the machine's load: the thread count
changes a network's floating-point sums, and a seed must give the same model whatever else
runs. It gives a network on a table one thread (its models are small: a second thread
gains little and loses much beside other work), and anything else the cores this process
may use, shared among the parallel jobs (Hydra's joblib launcher); at least one.
"""

from __future__ import annotations

import os


def cores() -> int:
    """The cores this process may run on (its CPU affinity; a container's limit)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def parallel_jobs() -> int:
    """The jobs Hydra's launcher runs side by side (1 without Hydra or a parallel one)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        jobs = HydraConfig.get().launcher.get("n_jobs")
    except ValueError:  # no Hydra run (a notebook, a test)
        return 1
    return int(jobs) if jobs and int(jobs) > 0 else 1


def current() -> int:
    """The threads this process was given (`use_threads`), else its cores."""
    return int(os.environ.get("OMP_NUM_THREADS") or cores())


def auto_threads(n_cores: int, jobs: int, table_network: bool = False) -> int:
    """One for a network on a table, else the cores shared among `jobs`; at least one."""
    return 1 if table_network else max(1, n_cores // max(jobs, 1))


def use_threads(setting: int | str | None = "auto", table_network: bool = False) -> str:
    """Set the threads of this process (torch's intra-op pool, OpenMP and BLAS already
    loaded, and OMP_NUM_THREADS for libraries loaded later); returns the line to print."""
    import torch
    from threadpoolctl import threadpool_limits

    if setting in (None, "auto"):
        n_cores, jobs = cores(), parallel_jobs()
        n = auto_threads(n_cores, jobs, table_network)
        why = ("auto: a network on a table; set threads=N" if table_network else
               f"auto: {n_cores} core(s), {jobs} parallel job(s); set threads=N")
    else:
        n = int(setting)
        why = f"threads={n}"
    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)
    threadpool_limits(n)
    return f"threads: {n} ({why})"
