"""How many gunicorn workers ``idp serve`` starts by default: per usable core, capped by a container's CPU quota."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from idp.processes import cgroup_cpu_limit, default_workers, is_gevent, own_cgroups, usable_cores

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def _cgroup_v2(root: Path, cpu_max: str, own: str = "") -> Path:
    folder = root / own.lstrip("/") if own else root
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cpu.max").write_text(cpu_max + "\n")
    return root


@pytest.mark.parametrize(
    ("cpu_max", "limit"),
    [("max 100000", None), ("200000 100000", 2.0), ("150000 100000", 1.5), ("50000 100000", 0.5)],
)
def test_a_cgroup_v2_quota_is_read_in_cpus(tmp_path: Path, cpu_max: str, limit: float | None) -> None:
    assert cgroup_cpu_limit(_cgroup_v2(tmp_path, cpu_max), own_cgroup="") == limit


def test_the_smallest_quota_on_the_way_to_the_root_binds(tmp_path: Path) -> None:
    own = "/system.slice/idp.service"
    _cgroup_v2(tmp_path, "max 100000")
    _cgroup_v2(tmp_path, "300000 100000", own=own)
    assert cgroup_cpu_limit(tmp_path, own_cgroup=own) == 3.0
    # A parent slice limited to 2 CPUs binds a service whose own cgroup has no limit ...
    _cgroup_v2(tmp_path, "200000 100000", own="/system.slice")
    assert cgroup_cpu_limit(tmp_path, own_cgroup=own) == 2.0
    _cgroup_v2(tmp_path, "max 100000", own=own)
    assert cgroup_cpu_limit(tmp_path, own_cgroup=own) == 2.0
    # ... or none at all (the CPU controller is not enabled for it).
    (tmp_path / "system.slice" / "idp.service" / "cpu.max").unlink()
    assert cgroup_cpu_limit(tmp_path, own_cgroup=own) == 2.0
    # A container's namespace root limited to 1 CPU binds a process in a child cgroup of it (/init).
    container = tmp_path / "container"
    _cgroup_v2(container, "100000 100000")
    _cgroup_v2(container, "max 100000", own="/init")
    assert cgroup_cpu_limit(container, own_cgroup="/init") == 1.0
    assert cgroup_cpu_limit(tmp_path, own_cgroup="/user.slice") is None


def test_the_cgroup_paths_are_read_from_proc_self_cgroup() -> None:
    hybrid = "9:name=systemd:/\n4:memory:/process_api/x\n3:cpu,cpuacct:/system.slice/idp.service\n0::/\n"
    assert own_cgroups(hybrid) == ("/", "/system.slice/idp.service")
    assert own_cgroups("0::/kubepods/burstable/pod1/abc\n") == ("/kubepods/burstable/pod1/abc", None)
    assert own_cgroups("") == (None, None)


def test_a_cgroup_v1_quota_of_the_cpu_controllers_own_folder_binds(tmp_path: Path) -> None:
    service = tmp_path / "cpu" / "system.slice" / "idp.service"
    service.mkdir(parents=True)
    (service / "cpu.cfs_quota_us").write_text("150000\n")
    (service / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path, own_cgroup="/system.slice/idp.service") == 1.5


@pytest.mark.parametrize(("quota", "limit"), [("-1", None), ("400000", 4.0), ("25000", 0.25)])
def test_a_cgroup_v1_quota_is_read_in_cpus(tmp_path: Path, quota: str, limit: float | None) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(quota + "\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path, own_cgroup="") == limit


@pytest.mark.parametrize("cpu_max", ["", "garbage", "abc 100000", "100000 0"])
def test_an_unreadable_quota_is_no_limit(tmp_path: Path, cpu_max: str) -> None:
    assert cgroup_cpu_limit(_cgroup_v2(tmp_path, cpu_max), own_cgroup="") is None
    assert cgroup_cpu_limit(tmp_path / "missing", own_cgroup="") is None


def test_usable_cores_are_the_affinity_capped_by_the_quota_rounded_up(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert usable_cores(tmp_path / "none", own_cgroup="") == affinity
    assert usable_cores(_cgroup_v2(tmp_path / "half", "50000 100000"), own_cgroup="") == 1
    quota = _cgroup_v2(tmp_path / "many", f"{(affinity + 8) * 100000} 100000")
    assert usable_cores(quota, own_cgroup="") == affinity, "a quota above the host's CPUs changes nothing"
    if affinity >= 2:
        one_and_a_half = _cgroup_v2(tmp_path / "one-and-a-half", "150000 100000")
        assert usable_cores(one_and_a_half, own_cgroup="") == 2


@pytest.mark.parametrize(
    ("worker_class", "gevent"),
    [
        ("gevent", True),
        ("gevent_pywsgi", True),
        ("gevent_wsgi", True),
        ("gunicorn.workers.ggevent.GeventWorker", True),
        ("sync", False),
        ("gthread", False),
    ],
)
def test_every_name_of_a_gevent_worker_counts_as_gevent(worker_class: str, gevent: bool) -> None:
    assert is_gevent(worker_class) is gevent
    assert default_workers(worker_class, 1) == (2 if gevent else 3)
    assert default_workers(worker_class, 8) == (8 if gevent else 17)


def _gunicorn_settings(tmp_path: Path, **env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    clean.update(env, PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"))
    script = (
        "import json, runpy; ns = runpy.run_path('idp/gunicorn_conf.py'); "
        "print(json.dumps({k: ns[k] for k in ('workers', 'worker_class', 'keepalive')}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=clean, capture_output=True, text=True, timeout=60, check=True
    )
    return dict(json.loads(done.stdout))


def test_the_gunicorn_settings_take_the_default_and_the_variables(tmp_path: Path) -> None:
    cores = usable_cores()
    assert _gunicorn_settings(tmp_path) == {"workers": max(2, cores), "worker_class": "gevent", "keepalive": 5}
    assert _gunicorn_settings(tmp_path, IDP_WORKER_CLASS="gevent_pywsgi")["workers"] == max(2, cores)
    assert _gunicorn_settings(tmp_path, IDP_THREADS="4")["workers"] == cores * 2 + 1
    assert _gunicorn_settings(tmp_path, IDP_THREADS="4")["worker_class"] == "gthread"
    assert _gunicorn_settings(tmp_path, IDP_KEEPALIVE="65")["keepalive"] == 65
    assert _gunicorn_settings(tmp_path, IDP_WORKERS="5")["workers"] == 5
    assert _gunicorn_settings(tmp_path, IDP_WORKERS="0")["workers"] == max(2, cores), "0 is the default"
