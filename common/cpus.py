"""The CPUs this process may run on (its affinity where the OS has one, else every CPU): the
default thread count of every framework and worker. No framework is imported here."""
from __future__ import annotations

import os
from typing import List


def available_cpus() -> List[int]:
    """The CPU numbers this process may use, sorted."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def cpu_count() -> int:
    """How many CPUs this process may use (at least 1)."""
    return max(len(available_cpus()), 1)
