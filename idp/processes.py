"""How many gunicorn worker processes ``idp serve`` starts when ``IDP_WORKERS`` is not set.

A gevent worker serves all its connections in one process and is busy only while it computes, so one
per usable core (at least two, so a restarting worker never leaves none) keeps every core working;
more of them only switch between each other (bench/README.md, "Workers per core"). Blocking workers
(sync, gthread) wait on the network with a core free: two per core, plus one.

"Usable" is what this process may run on, not what the host has: the CPUs of its affinity mask,
capped by a cgroup CPU quota (a container's ``--cpus`` or a Kubernetes CPU limit). A container
limited to 2 CPUs on a 64-core host starts 2 gevent workers, not 64.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def is_gevent(worker_class: str) -> bool:
    """Whether a gunicorn worker class (a short name such as ``gevent_pywsgi``, or a class path) is gevent's."""
    return "gevent" in worker_class.lower()


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, own_cgroup: str | None = None) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (1.5 for a 150000/100000 quota), or None for none.

    cgroup v2 keeps it in ``cpu.max`` ("QUOTA PERIOD", or "max PERIOD" for none) in the process's own
    cgroup folder (or at the root, where a container's namespace puts it); cgroup v1 in
    ``cpu/cpu.cfs_quota_us`` (-1 for none) over ``cpu/cpu.cfs_period_us``.
    """
    if own_cgroup is None:
        own_cgroup = _own_cgroup()
    folders = [root / own_cgroup.lstrip("/")] if own_cgroup else []
    folders.append(root)
    for folder in folders:
        try:
            quota, period = (folder / "cpu.max").read_text().split()[:2]
        except (OSError, ValueError):
            continue
        if quota == "max":
            return None
        try:
            return _ratio(int(quota), int(period))
        except ValueError:
            return None
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return _ratio(quota_us, period_us)


def _ratio(quota: int, period: int) -> float | None:
    return quota / period if quota > 0 and period > 0 else None


def _own_cgroup() -> str | None:
    """The cgroup v2 path of this process ("0::/PATH" in /proc/self/cgroup), or None."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            return line[3:].strip() or None
    return None


def usable_cores(root: Path = CGROUP_ROOT, own_cgroup: str | None = None) -> int:
    """The CPUs this process may use: its affinity mask, capped by its cgroup's quota (rounded up)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity on this platform
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root, own_cgroup)
    if limit is not None:
        cores = min(cores, math.ceil(limit))
    return max(1, cores)


def default_workers(worker_class: str, cores: int) -> int:
    """Worker processes for ``cores`` usable cores: one each for gevent (at least 2), else 2 each plus one."""
    return max(2, cores) if is_gevent(worker_class) else cores * 2 + 1
