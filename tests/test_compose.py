"""docker-compose.yml cannot run here (no Docker engine), so these tests hold it to the code it
deploys: the search attributes, the Settings it configures, the start-up order and the ports."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from temporalio.common import SearchAttributeKey

from schemas import search_attributes
from schemas.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = {
    "postgres",
    "temporal",
    "temporal-ui",
    "temporal-search-attributes",
    "migrate",
    "worker",
    "api",
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
    fields = {f"BANKFLOW_{name.upper()}" for name in Settings.model_fields}
    for name in ("api", "worker", "migrate"):
        env: dict[str, str] = services[name]["environment"]
        assert set(env) <= fields, f"{name} sets unknown settings {set(env) - fields}"
        assert {"BANKFLOW_DATABASE_URL", "BANKFLOW_TEMPORAL_ADDRESS"} <= set(env)
        assert "@postgres:5432/" in env["BANKFLOW_DATABASE_URL"]
        assert env["BANKFLOW_TEMPORAL_ADDRESS"] == "temporal:7233"
    assert "BANKFLOW_JWT_SECRET" in services["api"]["environment"]


def test_temporal_persists_to_the_shared_postgres_in_its_own_databases(
    services: dict[str, dict[str, Any]],
) -> None:
    env = services["temporal"]["environment"]
    assert services["temporal"]["image"].startswith("temporalio/auto-setup:")
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] == "postgres"
    app_database = services["postgres"]["environment"]["POSTGRES_DB"]
    assert app_database not in {env["DBNAME"], env["VISIBILITY_DBNAME"]}
    assert services["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"


def test_processes_and_published_ports(services: dict[str, dict[str, Any]]) -> None:
    assert services["worker"]["command"] == ["python", "worker.py"]
    assert services["migrate"]["command"] == ["bankflow", "db", "upgrade"]
    api = services["api"]["command"]
    assert api[:2] == ["uvicorn", "api.app:app"]
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
