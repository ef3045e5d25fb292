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
    """The CPU quota that binds this process, in CPUs (1.5 for a 150000/100000 quota), or None for none.

    A quota anywhere on the way from the process's cgroup up to the root binds it, so the smallest is
    taken. cgroup v2 keeps each in ``cpu.max`` ("QUOTA PERIOD", or "max PERIOD" for none); cgroup v1 in
    ``cpu.cfs_quota_us`` (-1 for none) over ``cpu.cfs_period_us`` under the cpu controller's folder. The
    process's cgroup is read from ``/proc/self/cgroup`` unless ``own_cgroup`` gives it ("" for the root,
    where a container's cgroup namespace puts its own).
    """
    v2_path, v1_path = _own_cgroups() if own_cgroup is None else (own_cgroup, own_cgroup)
    limits = [_v2_quota(folder) for folder in _up_to_root(root, v2_path)] + [
        _v1_quota(folder) for folder in _up_to_root(root / "cpu", v1_path)
    ]
    found = [limit for limit in limits if limit is not None]
    return min(found) if found else None


def _up_to_root(root: Path, path: str | None) -> list[Path]:
    """``root/path``, each of its parents, and ``root`` itself (just ``root`` without a path)."""
    parts = [part for part in (path or "").split("/") if part and part != ".."]
    return [root.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]


def _v2_quota(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else _ratio(int(quota), int(period))
    except (OSError, ValueError):
        return None


def _v1_quota(folder: Path) -> float | None:
    try:
        quota_us = int((folder / "cpu.cfs_quota_us").read_text())
        period_us = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return _ratio(quota_us, period_us)


def _ratio(quota: int, period: int) -> float | None:
    return quota / period if quota > 0 and period > 0 else None


def _own_cgroups() -> tuple[str | None, str | None]:
    try:
        return own_cgroups(Path("/proc/self/cgroup").read_text())
    except OSError:
        return None, None


def own_cgroups(proc_self_cgroup: str) -> tuple[str | None, str | None]:
    """The cgroup paths in ``/proc/self/cgroup``: the v2 one ("0::/PATH") and the v1 cpu controller's."""
    lines = proc_self_cgroup.splitlines()
    v2: str | None = None
    v1: str | None = None
    for line in lines:
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if number == "0" and not controllers:
            v2 = path.strip()
        elif "cpu" in controllers.split(","):
            v1 = path.strip()
    return v2, v1


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
