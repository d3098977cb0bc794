"""docker-compose.yml cannot run here (no Docker engine), so these tests hold it to the code it
deploys: the search attributes, the Settings it configures, the start-up order and the ports, no
secret with a fallback, the two database roles (its init script is run for real on a private
Postgres) and a uvicorn that believes no forwarding header."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import yaml  # type: ignore[import-untyped]
from temporalio.common import SearchAttributeKey

from activities.migrate import upgrade
from api import serve as api_serve
from schemas import search_attributes
from schemas.keyring import KeyRing
from schemas.settings import Settings, get_settings
from scripts import dev, local_postgres
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = {
    "postgres",
    "temporal",
    "temporal-ui",
    "temporal-search-attributes",
    "migrate",
    "worker",
    "api",
    "prometheus",
    "grafana",
}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
REGISTER = re.compile(
    r"temporal operator search-attribute create --address temporal:7233 --name (\w+) --type (\w+)"
)


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(compose, dict)
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Target -> condition, for both the list and the mapping form."""
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def published_ports(service: dict[str, Any]) -> set[tuple[int, int]]:
    """(host, container) pairs from "host:container" or "ip:host:container" entries."""
    pairs = set()
    for entry in service.get("ports", []):
        *_, host, container = str(entry).split(":")
        pairs.add((int(host), int(container)))
    return pairs


def resolved(value: str) -> str:
    """A compose value with every ${VAR...} interpolation filled in."""
    return re.sub(r"\$\{[^}]*\}", "pw", value)


def cli_type(key: SearchAttributeKey[Any]) -> str:
    return "".join(part.title() for part in key.indexed_value_type.name.split("_"))


def test_every_required_service_is_defined(services: dict[str, dict[str, Any]]) -> None:
    assert REQUIRED <= services.keys()


def test_dependencies_exist_and_their_conditions_can_be_met(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        for target, condition in depends_on(service).items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert condition in CONDITIONS, f"{name} -> {target}: bad condition {condition}"
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
            if condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", f"{target} must be one-shot"


def test_start_up_order(services: dict[str, dict[str, Any]]) -> None:
    assert depends_on(services["temporal"]) == {"postgres": "service_healthy"}
    assert depends_on(services["migrate"]) == {"postgres": "service_healthy"}
    for name in ("worker", "api"):
        deps = depends_on(services[name])
        assert deps["migrate"] == "service_completed_successfully"
        assert deps["temporal-search-attributes"] == "service_completed_successfully"


def test_search_attribute_job_registers_exactly_the_declared_keys(
    services: dict[str, dict[str, Any]],
) -> None:
    job = services["temporal-search-attributes"]
    assert job["image"].startswith("temporalio/admin-tools:")
    script = " ".join([*job.get("entrypoint", []), *job.get("command", [])])
    registered = REGISTER.findall(script)
    expected = sorted((key.name, cli_type(key)) for key in search_attributes.ALL)
    assert sorted(registered) == expected  # no key missing, none extra, none twice
    assert {"Int", "Keyword"} == {kind for _, kind in registered}


def test_app_services_configure_only_real_settings(services: dict[str, dict[str, Any]]) -> None:
    # BANKFLOW_SECRETS_DIR is read before the settings are built (schemas.settings.get_settings).
    fields = {f"BANKFLOW_{name.upper()}" for name in Settings.model_fields}
    fields.add("BANKFLOW_SECRETS_DIR")
    # WEB_CONCURRENCY: uvicorn's (and api.serve's) number of API processes.
    fields.add("WEB_CONCURRENCY")
    for name in ("api", "worker", "migrate"):
        env: dict[str, str] = services[name]["environment"]
        assert set(env) <= fields, f"{name} sets unknown settings {set(env) - fields}"
        assert {"BANKFLOW_DATABASE_URL", "BANKFLOW_TEMPORAL_ADDRESS"} <= set(env)
        assert "@postgres:5432/" in env["BANKFLOW_DATABASE_URL"]
        assert env["BANKFLOW_TEMPORAL_ADDRESS"] == "temporal:7233"


def test_no_secret_has_a_fallback_value() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    interpolated = re.findall(r"\$\{([A-Z0-9_]+)(:?[-?])?", text)
    secret = [(var, op) for var, op in interpolated if re.search("PASSWORD|SECRET|KEY", var)]
    assert secret, "the passwords are interpolated"
    assert all(op == ":?" for _, op in secret), secret  # required, never defaulted


def test_signing_keys_come_from_a_docker_secret_the_settings_read(
    services: dict[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    source = compose["secrets"]["bankflow_jwt_keys"]["file"]
    assert source.startswith("./secrets/")
    assert "secrets/" in (ROOT / ".gitignore").read_text().split()
    assert "secrets" in (ROOT / ".dockerignore").read_text().split()
    for name in ("api", "worker", "migrate"):
        env = services[name]["environment"]
        assert not {"BANKFLOW_JWT_SECRET", "BANKFLOW_JWT_KEYS"} & set(env)
        assert services[name]["secrets"] == ["bankflow_jwt_keys", "bankflow_payload_keys"]
        assert env["BANKFLOW_SECRETS_DIR"] == "/run/secrets"
    # what the container sees: /run/secrets/bankflow_jwt_keys, read as BANKFLOW_JWT_KEYS
    (tmp_path / "bankflow_jwt_keys").write_text(KeyRing.generate_entry("k1") + "\n")
    monkeypatch.delenv("BANKFLOW_JWT_KEYS")
    monkeypatch.setenv("BANKFLOW_SECRETS_DIR", str(tmp_path))
    get_settings.cache_clear()
    settings = get_settings()
    get_settings.cache_clear()
    assert [k.kid for k in settings.jwt_keys] == ["k1"]


def test_payload_keys_come_from_a_docker_secret_and_the_ui_decodes_through_the_api(
    services: dict[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["secrets"]["bankflow_payload_keys"]["file"] == "./secrets/bankflow_payload_keys"
    for name in ("api", "worker", "migrate"):
        assert "BANKFLOW_PAYLOAD_KEYS" not in services[name]["environment"]
    (tmp_path / "bankflow_payload_keys").write_text(KeyRing.generate_entry("p1") + "\n")
    monkeypatch.delenv("BANKFLOW_PAYLOAD_KEYS")
    monkeypatch.setenv("BANKFLOW_SECRETS_DIR", str(tmp_path))
    get_settings.cache_clear()
    settings = get_settings()
    get_settings.cache_clear()
    assert [k.kid for k in settings.payload_keys] == ["p1"]
    # the UI (in the browser) calls the API where it is published, with the codec cookie
    ui = services["temporal-ui"]
    (api_port,) = {host for host, container in published_ports(services["api"])}
    (ui_port,) = {host for host, container in published_ports(ui)}
    assert ui["environment"]["TEMPORAL_CODEC_ENDPOINT"] == f"http://127.0.0.1:{api_port}/codec"
    assert ui["environment"]["TEMPORAL_CODEC_INCLUDE_CREDENTIALS"] == "true"
    origins = services["api"]["environment"]["BANKFLOW_CODEC_CORS_ORIGINS"].split(",")
    assert f"http://127.0.0.1:{ui_port}" in origins and "*" not in origins


def test_migrate_runs_as_the_owner_and_api_and_worker_as_the_runtime_role(
    services: dict[str, dict[str, Any]],
) -> None:
    def user(url: str) -> str | None:
        return urlsplit(resolved(url)).username

    migrate = services["migrate"]["environment"]
    assert user(migrate["BANKFLOW_MIGRATION_DATABASE_URL"]) == "bankflow_owner"
    for name in ("api", "worker", "migrate"):
        env = services[name]["environment"]
        assert user(env["BANKFLOW_DATABASE_URL"]) == "bankflow_app"
        assert name == "migrate" or "BANKFLOW_MIGRATION_DATABASE_URL" not in env
    plain = {k: resolved(v) for k, v in migrate.items()}
    as_migrate = Settings(
        database_url=plain["BANKFLOW_DATABASE_URL"],
        migration_database_url=plain["BANKFLOW_MIGRATION_DATABASE_URL"],
    )
    assert as_migrate.runtime_role == "bankflow_app"  # what `bankflow db upgrade` grants to
    postgres = services["postgres"]
    assert postgres["environment"]["POSTGRES_USER"] == "postgres"
    assert services["temporal"]["environment"]["POSTGRES_USER"] == "postgres"
    assert any(
        v.startswith("./scripts/compose/init-roles.sh:/docker-entrypoint-initdb.d/")
        for v in postgres["volumes"]
    )


def test_the_compose_init_script_makes_the_two_roles_the_migration_grants(
    tmp_path: Path,
) -> None:
    """Run the script as the postgres image would, on a private server; then migrate as the
    owner and check the runtime role is refused what it must be refused."""
    port = free_port()
    _, proc = local_postgres.start_private(tmp_path / "data", port)
    try:
        env = {
            **os.environ, "POSTGRES_USER": "postgres", "PGHOST": "127.0.0.1", "PGPORT": str(port),
            "BANKFLOW_OWNER_DB_PASSWORD": "owner-pw", "BANKFLOW_APP_DB_PASSWORD": "app-pw",
        }  # fmt: skip
        for _ in range(2):  # idempotent, as a by-hand run on an older volume would be
            done = subprocess.run(
                ["sh", str(ROOT / "scripts/compose/init-roles.sh")], env=env,
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
        base = f"postgresql+psycopg://{{}}@127.0.0.1:{port}/bankflow"
        upgrade(base.format("bankflow_owner"), runtime_role="bankflow_app")
        with psycopg.connect(base.format("bankflow_app").replace("+psycopg", "")) as conn:
            conn.execute("SELECT count(*) FROM journals")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DELETE FROM postings")
        with psycopg.connect(base.format("postgres").replace("+psycopg", "")) as conn:
            roles = conn.execute(
                "SELECT rolname, rolsuper FROM pg_roles WHERE rolname LIKE 'bankflow%' ORDER BY 1"
            ).fetchall()
            owner = conn.execute(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'bankflow'"
            ).fetchone()
        assert roles == [("bankflow_app", False), ("bankflow_owner", False)]
        assert owner == ("bankflow_owner",)
    finally:
        proc.terminate()
        proc.wait(30)


def test_uvicorn_believes_no_forwarding_header_in_any_deployment(
    services: dict[str, dict[str, Any]],
) -> None:
    """Every deployment serves through api.serve, whose uvicorn never believes proxy headers,
    whatever the command line says."""
    serve = ["python", "-m", "api.serve"]
    assert services["api"]["command"][:3] == serve
    assert dev.api_command(8000)[1:3] == serve[1:]
    cmd = re.search(r"^CMD (.+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert cmd and json.loads(cmd.group(1))[:3] == serve
    for argv in ([], ["--workers", "3"], ["--port", "8001"]):
        assert api_serve.config(argv).proxy_headers is False


def test_several_api_processes_answer_without_delayed_ack_stalls() -> None:
    """uvicorn's own multi-process socket has protocol 0, so asyncio never sets TCP_NODELAY on
    its connections; api.serve sets it on the listening socket, which accepted ones inherit."""
    cfg = api_serve.config(["--workers", "2", "--port", "0"])
    sock = api_serve.listening_socket(cfg)
    try:
        sock.listen()
        client = socket.create_connection(sock.getsockname()[:2])
        accepted, _ = sock.accept()
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        accepted.close()
        client.close()
    finally:
        sock.close()


def test_temporal_persists_to_the_shared_postgres_in_its_own_databases(
    services: dict[str, dict[str, Any]],
) -> None:
    env = services["temporal"]["environment"]
    assert services["temporal"]["image"].startswith("temporalio/auto-setup:")
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] == "postgres"
    app_url = resolved(services["api"]["environment"]["BANKFLOW_DATABASE_URL"])
    app_database = urlsplit(app_url).path.lstrip("/")
    assert app_database == "bankflow"  # the one scripts/compose/init-roles.sh creates
    assert app_database not in {env["DBNAME"], env["VISIBILITY_DBNAME"]}
    assert services["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"


def test_processes_and_published_ports(services: dict[str, dict[str, Any]]) -> None:
    assert services["worker"]["command"] == ["python", "worker.py"]
    assert services["migrate"]["command"] == ["bankflow", "db", "upgrade"]
    api = services["api"]["command"]
    assert api[:3] == ["python", "-m", "api.serve"]
    assert api[api.index("--host") + 1] == "0.0.0.0"
    assert (8000, 8000) in published_ports(services["api"])
    assert (8233, 8080) in published_ports(services["temporal-ui"])


def test_app_image_is_slim_and_runs_unprivileged(services: dict[str, dict[str, Any]]) -> None:
    for name in ("api", "worker", "migrate"):
        assert services[name]["build"] == "."
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.MULTILINE)
    users = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".data", ".env", ".git"} <= set(ignored)


def test_prometheus_scrapes_api_and_worker_and_loads_the_alert_rules(
    services: dict[str, dict[str, Any]],
) -> None:
    """The files the rules test validates are the files compose mounts, and the targets are the
    ports the services serve metrics on."""
    mounts = {
        target: ROOT / source
        for source, target, *_ in (v.split(":") for v in services["prometheus"]["volumes"])
        if source.startswith("./")
    }
    config = yaml.safe_load(mounts["/etc/prometheus/prometheus.yml"].read_text())
    assert mounts["/etc/prometheus/alerts.yml"] == ROOT / "scripts/compose/prometheus/alerts.yml"
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    targets = {
        t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    }
    defaults = Settings()
    assert targets == {
        "api:8000",
        f"worker:{defaults.worker_metrics_port}",
        f"worker:{defaults.worker_sdk_metrics_port}",
    }
    # the worker binds its metrics servers where Prometheus can reach them, and publishes nothing
    assert services["worker"]["environment"]["BANKFLOW_METRICS_HOST"] == "0.0.0.0"
    assert not services["worker"].get("ports")
    assert (9090, 9090) in published_ports(services["prometheus"])


def test_grafana_provisions_the_committed_dashboard_from_prometheus(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = services["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    provisioning = ROOT / mounts["./scripts/compose/grafana/provisioning"].replace(
        "/etc/grafana/provisioning", "scripts/compose/grafana/provisioning"
    )
    [source] = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["url"] == "http://prometheus:9090" and source["uid"] == "prometheus"
    [provider] = yaml.safe_load((provisioning / "dashboards/bankflow.yml").read_text())["providers"]
    assert mounts["./scripts/compose/grafana/dashboards"] == provider["options"]["path"]
    dashboard = json.loads((ROOT / "scripts/compose/grafana/dashboards/bankflow.json").read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {source["uid"]}
    assert "GRAFANA_ADMIN_PASSWORD:?" in grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert depends_on(grafana) == {"prometheus": "service_started"}


def test_uvicorn_logs_no_raw_paths_unless_asked() -> None:
    """The app's access line names the route template; uvicorn's would name the raw path."""
    assert api_serve.config([]).access_log is False
    assert api_serve.config(["--access-log"]).access_log is True
