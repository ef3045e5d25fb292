"""The deployment files, checked without a Docker engine or a cluster.

* ``deploy/compose.yaml`` is validated by Debian's ``docker-compose config`` and held to the README and
  the Dockerfile (images, commands, ports, environment, the example env file).
* ``deploy/kubernetes/*.yaml`` are validated against the Kubernetes JSON schemas (kubernetes-validate,
  which ships them) and checked for what makes them work together (selectors, probes, secrets by reference).
* The wheel the Dockerfile builds carries everything the service reads at run time: a fresh interpreter
  serves the pages, the API description, the static files, the catalogs and the Lua scripts from the
  unpacked wheel alone.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import service_missing

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
EXAMPLE_ENV = DEPLOY / "example.env"
KUBERNETES = DEPLOY / "kubernetes"
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
KUBERNETES_VERSION = "1.30"
# Variables gunicorn's configuration and ``idp serve`` read besides Settings.
SERVE_VARIABLES = {"IDP_HOST", "IDP_PORT", "IDP_BIND", "IDP_WORKERS", "IDP_THREADS", "IDP_MIGRATIONS_DIR"}


def _docker_compose() -> str:
    path = shutil.which("docker-compose")
    if path is None:
        service_missing("docker-compose (Debian package docker-compose)", FileNotFoundError("docker-compose"))
    return str(path)


def _compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_docker_compose(), "--env-file", str(env_file), "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith(("IDP_", "POSTGRES_", "HTTP_PORT"))},
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as docker-compose resolves it with the example env file."""
    result = _compose_config(EXAMPLE_ENV)
    assert result.returncode == 0, result.stderr
    return dict(yaml.safe_load(result.stdout))


def _dockerfile_stage(index: int) -> str:
    stages = re.split(r"^FROM ", DOCKERFILE, flags=re.M)[1:]
    return stages[index]


def _dockerfile_env() -> dict[str, str]:
    runtime = _dockerfile_stage(-1)
    env: dict[str, str] = {}
    for block in re.findall(r"^ENV ((?:.*\\\n)*.*)$", runtime, flags=re.M):
        for pair in shlex.split(block.replace("\\\n", " ")):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def _dockerfile_cmd() -> list[str]:
    match = re.search(r"^CMD (\[.*\])$", DOCKERFILE, flags=re.M)
    assert match
    return list(json.loads(match.group(1)))


def _dockerfile_uid() -> int:
    match = re.search(r"^USER (\d+)(?::\d+)?$", DOCKERFILE, flags=re.M)
    assert match, "the image runs as a numeric user"
    return int(match.group(1))


def _parses_as_idp_command(argv: list[str]) -> None:
    """The command is ``idp ...`` and the real command-line parser accepts it."""
    from idp import cli

    assert argv[0] == "idp", argv
    cli._load_plugins()
    args = cli.build_parser().parse_args(argv[1:])
    assert callable(args.func)


def _known_variables() -> set[str]:
    from idp.config import _VARIABLES

    return {variable for variable, _coerce in _VARIABLES.values()} | SERVE_VARIABLES


# --- compose ---------------------------------------------------------------------------------------


CORE = {"proxy", "web", "worker", "migrate", "redis", "postgres"}
MONITORING = {"prometheus", "grafana"}


def test_docker_compose_validates_the_stack(compose):
    assert set(compose["services"]) == CORE | MONITORING
    for name in CORE:
        assert "profiles" not in compose["services"][name], name
    for name in MONITORING:
        assert compose["services"][name]["profiles"] == ["monitoring"], name


def test_the_monitoring_profile_loads_the_rules_and_the_dashboard(compose):
    services = compose["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]
    config_mount = next(v for v in prometheus["volumes"] if v.endswith(":/etc/prometheus:ro"))
    folder = Path(config_mount.split(":")[0])
    config = yaml.safe_load((folder / "prometheus.yaml").read_text(encoding="utf-8"))
    assert "--config.file=/etc/prometheus/prometheus.yaml" in prometheus["command"]
    assert all((folder / rule).is_file() for rule in config["rule_files"])
    (job,) = config["scrape_configs"]
    port = services["web"]["environment"]["IDP_PORT"]
    assert job["static_configs"][0]["targets"] == [f"web:{port}"] and job["metrics_path"] == "/metrics"
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"])
    provisioning = Path(next(src for src, dst in mounts.items() if dst == "/etc/grafana/provisioning"))
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text(encoding="utf-8"))
    assert datasource["datasources"][0]["type"] == "prometheus"
    assert datasource["datasources"][0]["url"].startswith("http://prometheus:9090")
    provider = yaml.safe_load((provisioning / "dashboards" / "waiting-room.yaml").read_text(encoding="utf-8"))
    folder_in_container = provider["providers"][0]["options"]["path"]
    dashboards = [Path(src) for src, dst in mounts.items() if dst.startswith(folder_in_container + "/")]
    assert [d.name for d in dashboards] == ["waiting-room.json"] and dashboards[0].is_file()
    for name in MONITORING:
        for port_spec in services[name]["ports"]:
            # docker-compose prints a port with a host address in the short form.
            host_ip = port_spec["host_ip"] if isinstance(port_spec, dict) else port_spec.split(":")[0]
            assert host_ip == "127.0.0.1", name


def test_the_stack_refuses_to_start_without_its_secrets(tmp_path):
    lines = EXAMPLE_ENV.read_text(encoding="utf-8").splitlines()
    for secret in ("IDP_SECRET_KEY", "POSTGRES_PASSWORD", "IDP_ISSUER"):
        env_file = tmp_path / f"without-{secret}.env"
        env_file.write_text("\n".join(line for line in lines if not line.startswith(secret + "=")) + "\n")
        result = _compose_config(env_file)
        assert result.returncode != 0
        assert secret in result.stderr


def test_every_secret_in_the_example_env_file_is_marked():
    text = EXAMPLE_ENV.read_text(encoding="utf-8")
    referenced = set(re.findall(r"\$\{([A-Z_]+)", COMPOSE.read_text(encoding="utf-8")))
    assigned: dict[str, str] = {}
    comment_before: dict[str, str] = {}
    comments: list[str] = []
    for line in text.splitlines():
        if line.startswith("#"):
            comments.append(line)
        elif "=" in line:
            name = line.split("=", 1)[0]
            assigned[name] = line.split("=", 1)[1]
            comment_before[name] = "\n".join(comments)
            comments = []
    assert referenced <= set(assigned), referenced - set(assigned)
    for secret in ("IDP_SECRET_KEY", "POSTGRES_PASSWORD"):
        assert "SECRET" in comment_before[secret], secret
        assert "replace-me" in assigned[secret]
    assert len(assigned["IDP_SECRET_KEY"]) >= 32  # the example passes production's check, as a shape


def test_compose_services_match_the_dockerfile_and_the_readme(compose):
    services = compose["services"]
    web, worker, migrate = services["web"], services["worker"], services["migrate"]

    # One image, built from the repository's Dockerfile, runs web, worker and the migration.
    assert Path(web["build"]["context"]).resolve() == ROOT
    assert web["build"]["dockerfile"] == "Dockerfile"
    assert web["image"] == worker["image"] == migrate["image"]

    # Commands: the image's default for web, and real idp subcommands for all three.
    assert web["command"] == _dockerfile_cmd() == ["idp", "serve"]
    assert worker["command"] == ["idp", "worker"]
    assert migrate["command"] == ["idp", "db", "upgrade"]
    for service in (web, worker, migrate):
        _parses_as_idp_command(service["command"])

    # Ports: web listens where the image says; the proxy forwards there; only the proxy is published.
    image_env = _dockerfile_env()
    exposed = re.search(r"^EXPOSE (\d+)$", DOCKERFILE, flags=re.M)
    assert exposed
    port = exposed.group(1)
    assert web["environment"]["IDP_PORT"] == image_env["IDP_PORT"] == port
    assert web["environment"]["IDP_HOST"] == "0.0.0.0"  # noqa: S104 - the container listens on its own interfaces
    assert web["expose"] == [port]
    nginx = (DEPLOY / "nginx" / "default.conf").read_text(encoding="utf-8")
    assert f"server web:{port};" in nginx
    assert "proxy_buffering on;" in nginx and "proxy_request_buffering on;" in nginx
    assert f"127.0.0.1:{port}/readyz" in " ".join(web["healthcheck"]["test"])
    assert [p["target"] for p in services["proxy"]["ports"]] == [80]
    for name in CORE - {"proxy"}:
        assert "ports" not in services[name], name

    # Environment: production, every setting a real one and documented in the README.
    assert image_env["IDP_ENV"] == "production"
    known = _known_variables()
    for name in ("web", "worker", "migrate"):
        env = services[name]["environment"]
        assert env["IDP_ENV"] == "production"
        assert env["IDP_REDIS_URL"] == "redis://redis:6379/0"
        assert env["IDP_DATABASE_URL"].startswith("postgresql+psycopg2://idp:")
        assert env["IDP_DATABASE_URL"].endswith("@postgres:5432/idp")
        assert env["IDP_ISSUER"].startswith("https://")
        for variable in env:
            assert variable in known, f"{name}: {variable} is not a setting of the service"
            assert f"`{variable}`" in README, f"{variable} is not in the README"
    assert services["web"]["environment"]["IDP_PROXY_HOPS"] == "1"

    # Backing services: the official images, Redis persisting every place, migrations before web.
    assert services["proxy"]["image"].startswith("nginx:")
    assert services["redis"]["image"].startswith("redis:")
    assert services["postgres"]["image"].startswith("postgres:")
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command
    assert "--maxmemory-policy noeviction" in redis_command
    assert web["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["proxy"]["depends_on"]["web"]["condition"] == "service_healthy"
    for name in ("web", "proxy", "redis", "postgres"):
        assert services[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    assert worker["deploy"]["replicas"] == 2


def test_the_readme_production_section_starts_from_the_stack():
    header = COMPOSE.read_text(encoding="utf-8").splitlines()
    commands = [line.removeprefix("#").strip() for line in header if re.match(r"#\s+(cp|docker) ", line)]
    commands = [c.split("  #")[0].strip() for c in commands]
    assert commands, "the compose file's header says how to start it"
    for command in commands:
        assert command in README, command
    assert "deploy/kubernetes" in README
    assert "kubectl create secret generic waiting-room" in README


# --- Kubernetes ------------------------------------------------------------------------------------


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                docs.append((path.name, doc))
    return docs


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _name, doc in _manifests() if doc["kind"] == kind]


def _validate(doc: dict[str, Any]) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("name", sorted(p.name for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml"))
def test_each_manifest_validates_against_the_kubernetes_schemas(name):
    docs = [doc for file, doc in _manifests() if file == name]
    assert docs
    for doc in docs:
        _validate(doc)


def test_the_schema_check_catches_a_broken_manifest():
    import kubernetes_validate

    deployment = copy.deepcopy(next(d for d in _by_kind("Deployment") if d["metadata"]["name"].endswith("web")))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGet"]["path"] = 5  # a number where a string belongs
    container["livenessProbe"]["httpGets"] = {}  # a misspelt field (strict)
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(deployment)


def test_the_manifests_fit_together():
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text(encoding="utf-8"))
    files = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    image_name = kustomization["images"][0]["name"]

    kinds = {doc["kind"] for _name, doc in _manifests()}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job", "ConfigMap"} <= kinds
    # Secrets by reference only: no Secret (and so no secret value) lives in the repository.
    assert "Secret" not in kinds

    deployments = {d["metadata"]["name"]: d for d in _by_kind("Deployment")}
    web, worker = deployments["waiting-room-web"], deployments["waiting-room-worker"]
    web_labels = web["spec"]["template"]["metadata"]["labels"]
    assert web["spec"]["selector"]["matchLabels"].items() <= web_labels.items()
    assert worker["spec"]["replicas"] >= 2

    container = web["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["idp", "serve"]
    port = next(p for p in container["ports"] if p["name"] == "http")
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert str(port["containerPort"]) == env["IDP_PORT"] == _dockerfile_env()["IDP_PORT"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}

    (service,) = _by_kind("Service")
    assert service["spec"]["selector"].items() <= web_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    (hpa,) = _by_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "waiting-room-web"}
    (pdb,) = _by_kind("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= web_labels.items()
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    (job,) = _by_kind("Job")

    (config_map,) = _by_kind("ConfigMap")
    known = _known_variables()
    secret_keys = set(re.findall(r"--from-literal=(IDP_[A-Z_]+)=", README))
    assert {"IDP_SECRET_KEY", "IDP_DATABASE_URL", "IDP_REDIS_URL"} <= secret_keys
    assert not secret_keys & set(config_map["data"]), "a secret in the ConfigMap"
    assert config_map["data"]["IDP_ENV"] == "production"
    assert set(config_map["data"]) | secret_keys <= known

    uid = _dockerfile_uid()
    for workload, command in ((web, ["idp", "serve"]), (worker, ["idp", "worker"]), (job, ["idp", "db", "upgrade"])):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == uid
        (box,) = pod["containers"]
        assert box["image"] == image_name
        assert box["command"] == command
        _parses_as_idp_command(box["command"])
        sources = {next(iter(s)): next(iter(s.values()))["name"] for s in box["envFrom"]}
        assert sources == {"configMapRef": "waiting-room", "secretRef": "waiting-room"}
        for variable in (e["name"] for e in box.get("env", [])):
            assert variable in known | {"PROMETHEUS_MULTIPROC_DIR"}, variable
        # A read-only root file system needs somewhere writable for temporary files.
        if box["securityContext"].get("readOnlyRootFilesystem"):
            mounts = {m["mountPath"] for m in box.get("volumeMounts", [])}
            assert "/tmp" in mounts


# --- the wheel the Dockerfile installs -------------------------------------------------------------


def _build_context(target: Path) -> None:
    """Copy what the Dockerfile's build stage copies (``COPY a b ./`` and ``COPY dir ./dir``)."""
    build = _dockerfile_stage(0)
    for line in build.splitlines():
        if not line.startswith("COPY "):
            continue
        *sources, _dest = line.split()[1:]
        for source in sources:
            path = ROOT / source
            if path.is_dir():
                shutil.copytree(path, target / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(path, target / source)


def _tracked_data_files() -> list[str]:
    """Files under idp/ and waiting_pages/ that are not Python source: the service reads them at run time."""
    result = subprocess.run(
        ["git", "ls-files", "idp", "waiting_pages"], capture_output=True, text=True, cwd=ROOT, check=True
    )
    # The .pot template only feeds translators; the compiled catalogs and their sources ship.
    return [name for name in result.stdout.split() if not name.endswith((".py", ".pot"))]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    context = tmp_path_factory.mktemp("context")
    _build_context(context)
    out = tmp_path_factory.mktemp("wheels")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-q", "--wheel-dir", str(out), "."],
        capture_output=True,
        text=True,
        cwd=context,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (built,) = out.glob("idp_waiting_room-*.whl")
    return built


def test_the_wheel_carries_every_file_the_service_reads(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    data_files = _tracked_data_files()
    missing = [name for name in data_files if name not in names]
    assert missing == []
    # The kinds the service cannot run without, named so a thinner tree cannot pass by accident.
    for pattern in (
        r"^idp/admin/openapi\.yaml$",
        r"^idp/queue/scripts/enqueue\.lua$",
        r"^idp/translations/ja/LC_MESSAGES/messages\.(po|mo)$",
        r"^waiting_pages/templates/wait\.html$",
        r"^waiting_pages/templates/landing\.html$",
        r"^waiting_pages/templates/admin/.+\.html$",
        r"^waiting_pages/static/waiting\.js$",
        r"^waiting_pages/static/admin/.+\.js$",
    ):
        assert any(re.match(pattern, name) for name in names), pattern
    # Migrations are not in the wheel: the Dockerfile copies them beside it and points the service there.
    assert re.search(r"^COPY .*migrations \./migrations$", DOCKERFILE, flags=re.M)
    assert _dockerfile_env()["IDP_MIGRATIONS_DIR"] == "/app/migrations"


SMOKE = r"""
import json, os, sys
from pathlib import Path
import idp, waiting_pages
here = Path(sys.argv[1]).resolve()
assert Path(idp.__file__).resolve().is_relative_to(here), idp.__file__
assert Path(waiting_pages.__file__).resolve().is_relative_to(here), waiting_pages.__file__
from idp.config import Settings
from idp.storage.db import upgrade_database
from idp.app import create_app
from idp.queue.redis_store import _script_source
db = "sqlite:///" + str(Path(sys.argv[2]) / "idp.sqlite3")
upgrade_database(db)
settings = Settings(env="test", secret_key="x" * 40, database_url=db, instance_path=sys.argv[2], log_level="WARNING")
app = create_app(settings)
svc = app.extensions["idp"]
svc.events.create({"event_id": "sale", "name": "Sale"})
client = app.test_client()
out = {}
for path, headers in (
    ("/", {}), ("/wait/sale", {"Accept-Language": "ja"}), ("/wait/_static/waiting.js", {}),
    ("/wait/_static/waiting.css", {}), ("/admin/api/openapi.yaml", {}), ("/admin/dashboard/sale", {}),
    ("/admin/static/dashboard.js", {}), ("/static/site/site.css", {}),
):
    response = client.get(path, headers=headers)
    out[path] = [response.status_code, response.get_data(as_text=True)[:20000]]
    response.close()
out["lua"] = [name for name in ("enqueue", "entry", "increment", "increment_once", "status", "sweep")
              if "KEYS" in _script_source(name)]
svc.close()
print(json.dumps(out))
"""


def test_a_fresh_interpreter_serves_from_the_unpacked_wheel(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    app_dir = tmp_path / "app"
    shutil.copytree(ROOT / "migrations", app_dir / "migrations", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(PYTHONPATH=str(site), IDP_MIGRATIONS_DIR=str(app_dir / "migrations"), PYTHONDONTWRITEBYTECODE="1")
    result = subprocess.run(
        [sys.executable, "-c", SMOKE, str(site), str(app_dir)],
        capture_output=True,
        text=True,
        cwd=app_dir,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    lua = out.pop("lua")
    for path, (status, _body) in out.items():
        assert status == 200, path
    assert "列に並んでいます" in out["/wait/sale"][1]
    assert "openapi: 3.1" in out["/admin/api/openapi.yaml"][1]
    assert "OpenID Connect" in out["/"][1]
    assert lua == ["enqueue", "entry", "increment", "increment_once", "status", "sweep"]
