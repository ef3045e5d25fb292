"""Start and stop a real gunicorn server for end-to-end tests.

``start_server(...)`` migrates the database, launches
``python -m gunicorn -c idp/gunicorn_conf.py 'idp.app:create_app()'`` on a free loopback port with a
clean ``IDP_*`` environment, waits for ``/healthz`` and returns a :class:`Server`. The server's stderr
goes to a file; when startup fails its tail is part of the error. ``Server.stop()`` stops it quickly
(SIGQUIT), then kills.

Tests normally use the ``live_server`` fixture factory from ``tests/e2e/conftest.py`` instead of
calling this module directly; the benchmarks reuse :func:`free_port` and :func:`start_gunicorn`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
GUNICORN_CONF = REPO_ROOT / "idp" / "gunicorn_conf.py"
APP_SPEC = "idp.app:create_app()"
STARTUP_SECONDS = 60.0
STOP_SECONDS = 15.0
IDP = Path(sys.executable).with_name("idp")


class ServerStartError(RuntimeError):
    """The server exited or never answered /healthz; the message carries the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_port() -> int:
    """A loopback port with no listener, for "backing service down" tests."""
    return free_port()


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def base_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The parent's environment without any ``IDP_*`` variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env["PYTHONUNBUFFERED"] = "1"
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + existing if existing else "")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_gunicorn(
    app_spec: str,
    env: Mapping[str, str],
    port: int,
    log_path: Path,
    *,
    health_path: str = "/healthz",
    timeout: float = STARTUP_SECONDS,
) -> subprocess.Popen[bytes]:
    """Start gunicorn with the project's config on 127.0.0.1:``port`` and wait until it answers."""
    full_env = dict(env)
    full_env["IDP_BIND"] = f"127.0.0.1:{port}"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), app_spec],
            cwd=str(REPO_ROOT),
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}{health_path}"
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise ServerStartError(
                f"gunicorn exited with {process.returncode} before answering {health_path}; "
                f"log {log_path}:\n{log_tail(log_path)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback only
                if response.status == 200:
                    return process
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            stop_process(process)
            raise ServerStartError(
                f"gunicorn did not answer {health_path} within {timeout:.0f}s; log {log_path}:\n{log_tail(log_path)}"
            )
        time.sleep(0.1)


def stop_process(
    process: subprocess.Popen[bytes], timeout: float = STOP_SECONDS, sig: signal.Signals = signal.SIGTERM
) -> None:
    """Send ``sig`` (SIGTERM: a graceful stop), wait, then SIGKILL the process group.

    SIGTERM lets a gunicorn master drain its workers, which wait up to the keep-alive time for idle
    connections (a test's ``requests.Session``, a browser); SIGQUIT is gunicorn's quick stop.
    """
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=timeout)


@contextmanager
def idp_serve(tmp_path: Path, port: int, *args: str, **env: str) -> Iterator[tuple[str, Path]]:
    """``idp serve ARGS`` as an operator starts it: no ``IDP_*`` variable but ``env``, and an instance
    folder of the test's own. Yields (``http://127.0.0.1:PORT``, its log) once ``/healthz`` answers on
    ``port``; then stops the whole process group."""
    import requests

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("IDP_", "PROMETHEUS_"))}
    clean.update(IDP_INSTANCE_PATH=str(tmp_path / "instance"), **env)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own command
            [str(IDP), "serve", *args], env=clean, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert process.poll() is None, log_tail(log)
            try:
                if requests.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except (requests.RequestException, OSError):
                pass
            assert time.monotonic() < deadline, log_tail(log)
            time.sleep(0.2)
        yield base, log
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


class Server:
    """A running gunicorn serving the real app; ``services()`` reaches the same database and Redis."""

    def __init__(
        self,
        *,
        backend: str,
        port: int,
        env: dict[str, str],
        process: subprocess.Popen[bytes],
        log_path: Path,
    ) -> None:
        self.backend = backend
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = env
        self.database_url = env["IDP_DATABASE_URL"]
        self.redis_url: str | None = env.get("IDP_REDIS_URL") or None
        self.process = process
        self.log_path = log_path
        self._services: list[Any] = []

    def settings(self, **overrides: Any) -> Any:
        """The server's ``Settings`` as the test process sees them (same database, Redis and secret)."""
        import dataclasses

        from idp.config import Settings

        settings = Settings.from_env(self.env).validate()
        return dataclasses.replace(settings, **overrides) if overrides else settings

    def services(self, *, clock: Any = None, **overrides: Any) -> Any:
        """A ``Services`` on the server's database and queue store; closed when the server stops."""
        from idp.app import build_services

        built = build_services(self.settings(**overrides), clock)
        self._services.append(built)
        return built

    def log(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        for built in self._services:
            built.close()
        self._services.clear()
        # Quick: what a test asked of the server is answered and logged by now (the workers write
        # their pending lines as they exit); a graceful stop would wait out idle keep-alive connections.
        stop_process(self.process, sig=signal.SIGQUIT)

    def __repr__(self) -> str:
        return f"<Server {self.backend} {self.url}>"


def start_server(
    *,
    backend: str,
    workdir: Path,
    database_url: str,
    redis_url: str | None,
    secret_key: str,
    migrate: bool = True,
    env: Mapping[str, Any] | None = None,
) -> Server:
    """Migrate (unless told not to) and start the real app; ``env`` overrides any ``IDP_*`` default.

    Defaults: 2 workers, cache TTL 0 ms (every answer fresh), log level WARNING, test environment.
    """
    from tests.migrated import migrate as migrate_database

    workdir.mkdir(parents=True, exist_ok=True)
    extra = {k: str(v) for k, v in (env or {}).items() if v is not None}
    last_error: ServerStartError | None = None
    for attempt in range(3):
        port = free_port()
        values: dict[str, str] = {
            "IDP_ENV": "test",
            "IDP_DATABASE_URL": database_url,
            "IDP_SECRET_KEY": secret_key,
            "IDP_ISSUER": f"http://127.0.0.1:{port}",
            "IDP_WORKERS": "2",
            "IDP_CACHE_TTL_MS": "0",
            "IDP_LOG_LEVEL": "WARNING",
            "IDP_INSTANCE_PATH": str(workdir / "instance"),
        }
        if redis_url:
            values["IDP_REDIS_URL"] = redis_url
        values.update(extra)
        if values.get("IDP_REDIS_URL") == "":
            del values["IDP_REDIS_URL"]
        if migrate and attempt == 0:
            migrate_database(values["IDP_DATABASE_URL"])
        log_path = workdir / f"gunicorn-{port}.log"
        full_env = base_environment(values)
        try:
            process = start_gunicorn(APP_SPEC, full_env, port, log_path)
        except ServerStartError as exc:
            last_error = exc
            if "Address already in use" in log_tail(log_path, 200):
                continue  # another process took the port between the probe and the bind
            raise
        full_env["IDP_BIND"] = f"127.0.0.1:{port}"
        idp_env = {k: v for k, v in full_env.items() if k.startswith("IDP_")}
        return Server(backend=backend, port=port, env=idp_env, process=process, log_path=log_path)
    assert last_error is not None
    raise last_error
