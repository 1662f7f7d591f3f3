"""Thread limits for the monitor's own numerical work (BLAS and OpenMP, through threadpoolctl).

scikit-learn's HistGradientBoosting and k-NN use OpenMP, and numpy's matrix products use a
BLAS thread pool, each as wide as the machine by default. Inside a process that already runs
several workers or request threads, or on a machine busy with other work, those pools fight
for the same cores: a HistGradientBoosting ``profile`` took 2 min 51 s on a loaded 2-core
machine and 16.7 s on one thread, with identical results. So the monitor runs its own fitting,
k-NN and model calls under a limit chosen from the machine and the number of workers
(:func:`default_threads`), which the commands take as ``--threads``.

The limit changes only the number of threads: results agree up to the last bits of
floating-point sums that a BLAS splits differently.

>>> n = default_threads(workers=1)
>>> n >= 1 and n <= available_cpus()
True
>>> with limit_threads(1):
...     import numpy as np
...     float(np.ones((4, 4)) @ np.ones(4) @ np.ones(4))
16.0
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from threadpoolctl import threadpool_limits


def available_cpus() -> int:
    """Cores this process may run on (its CPU affinity, where the OS reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_threads(workers: int = 1) -> int:
    """Threads per worker for the monitor's numerical calls: the cores shared among
    ``workers``, leaving one core for everything else (the event loop, the model server, the
    rest of the machine); at least one. On two cores: one.

    >>> default_threads(workers=64)
    1
    """
    share = available_cpus() // max(1, int(workers))
    return max(1, share - 1)


@contextlib.contextmanager
def limit_threads(threads: int | None) -> Iterator[None]:
    """Run the block with BLAS and OpenMP pools limited to ``threads`` (``None``: no limit)."""
    if threads is None:
        yield
        return
    if int(threads) < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    with threadpool_limits(limits=int(threads)):  # the libraries loaded by now
        yield


def set_process_threads(threads: int) -> None:
    """Limit BLAS and OpenMP pools for the rest of the process (a serving worker, where many
    request threads each run small numerical calls: one thread each is fastest)."""
    if int(threads) < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    threadpool_limits(limits=int(threads))  # kept: never restored


__all__ = ["available_cpus", "default_threads", "limit_threads", "set_process_threads"]
