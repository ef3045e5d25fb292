"""Gunicorn settings for ``idp serve``; every value can be set through the environment."""

from __future__ import annotations

import os

from idp.config import Settings
from idp.processes import default_workers, is_gevent, usable_cores

_settings = Settings.from_env()
bind = _settings.bind
threads = _settings.threads
# gevent by default: a worker holds up to worker_connections connections and parks the slow or idle
# ones, so clients that never finish their headers cannot exhaust the workers (sync and gthread workers
# each block on such a client). IDP_THREADS > 1 keeps choosing gthread; IDP_WORKER_CLASS overrides both.
worker_class = _settings.worker_class or ("gthread" if threads > 1 else "gevent")
# One gevent worker per usable core (at least two); two per core, plus one, for blocking workers. Usable
# cores are this process's CPUs capped by a container's CPU limit (idp.processes).
workers = _settings.workers or default_workers(worker_class, usable_cores())
worker_connections = _settings.worker_connections
backlog = _settings.backlog
timeout = _settings.worker_timeout
graceful_timeout = 20
keepalive = _settings.keepalive
# Access lines come from the app's own structured log (without query strings); gunicorn's would
# print request ids and codes from query strings.
accesslog = None
errorlog = "-"
loglevel = _settings.log_level.lower()
# No preload: each worker opens its own database and Redis connections after the fork.
preload_app = False
max_requests = _settings.max_requests
max_requests_jitter = max_requests // 10

# Prometheus multiprocess mode: every worker writes its samples to files in one folder and /metrics
# merges them. The folder is emptied when the server starts (stale files would add old counts) and a
# worker that exits is marked dead. Set before any worker imports prometheus_client.
_created_metrics_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _created_metrics_dir:
    import tempfile

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="idp-prometheus-")


def on_starting(server):  # type: ignore[no-untyped-def]
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        if name.endswith(".db"):
            os.remove(os.path.join(folder, name))


def post_fork(server, worker):  # type: ignore[no-untyped-def]
    from idp.logging import withhold_request_lines

    withhold_request_lines()
    if is_gevent(worker_class):
        from idp.green import make_cooperative

        make_cooperative()


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]  # prometheus_client has no annotation here


def on_exit(server):  # type: ignore[no-untyped-def]
    if _created_metrics_dir:
        import shutil

        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    # Everything loaded so far (modules, the app, its services) lives as long as the worker: move it out
    # of the garbage collector's generations, so collections scan only what requests allocate.
    import gc

    gc.collect()
    gc.freeze()
