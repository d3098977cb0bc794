"""API and worker refuse to start on keys anyone could know, with one line and exit code 2; the
API as the launcher starts it believes no X-Forwarded-For. Real processes, as deployed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.tables import AuditEntry
from schemas.keyring import KeyRing
from schemas.settings import Settings
from scripts import dev
from scripts.supervisor import Child
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
KEY_VARS = ("BANKFLOW_JWT_KEYS", "BANKFLOW_JWT_SECRET", "BANKFLOW_ENV")
OLD_DEFAULT = "dev-only-secret-change-me-in-production-32b"


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARS}
    # Nothing listens there: a service that wrongly started would fail differently, not hang.
    env["BANKFLOW_TEMPORAL_ADDRESS"] = "127.0.0.1:1"
    return env | extra


def command(component: str) -> list[str]:
    return dev.api_command(free_port()) if component == "api" else [sys.executable, "worker.py"]


@pytest.mark.parametrize("component", ["api", "worker"])
@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({}, "BANKFLOW_JWT_KEYS (or BANKFLOW_JWT_SECRET) is not set"),
        ({"BANKFLOW_JWT_SECRET": "s3cr3t-but-short"}, "shorter than 32 bytes"),
        ({"BANKFLOW_JWT_SECRET": OLD_DEFAULT}, "known placeholder"),
        ({"BANKFLOW_JWT_KEYS": f"k1:{'a' * 40}"}, "too few characters"),
        ({"BANKFLOW_JWT_KEYS": f"no-key-id-{'x1y2z3' * 8}"}, "kid:secret"),
        (
            {"BANKFLOW_JWT_KEYS": KeyRing.generate_entry(), "BANKFLOW_JWT_SECRET": "y" * 40},
            "not both",
        ),
        (
            {"BANKFLOW_JWT_KEYS": KeyRing.generate_entry(), "BANKFLOW_PAYLOAD_KEYS": ""},
            "BANKFLOW_PAYLOAD_KEYS is not set",
        ),
        (
            {
                "BANKFLOW_JWT_KEYS": KeyRing.generate_entry(),
                "BANKFLOW_PAYLOAD_KEYS": "p1:too-short-for-aes",
            },
            "BANKFLOW_PAYLOAD_KEYS: key 'p1' is shorter than 32 bytes",
        ),
    ],
)
def test_refuses_to_start_on_a_missing_or_weak_key(
    component: str, env: Mapping[str, str], reason: str
) -> None:
    done = subprocess.run(
        command(component), cwd=ROOT, env=environment(**env), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, done.stderr  # one line, no traceback
    assert lines[0].startswith(f"bankflow {component}: refusing to start: ")
    assert reason in lines[0]
    for secret in env.values():
        assert secret.partition(":")[2] not in lines[0] or not secret.partition(":")[2]


@contextmanager
def api_process(env: Mapping[str, str]) -> Iterator[str]:
    """The API exactly as `make run` starts it; its base URL once /health answers."""
    port = free_port()
    proc = subprocess.Popen(
        dev.api_command(port), cwd=ROOT, env=dict(env), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    child = Child("api", proc, Path("/dev/null"))
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while not dev.http_ok(f"{base}/health"):
            assert proc.poll() is None, f"the API exited with {proc.returncode}"
            assert time.monotonic() < deadline, "the API did not answer /health"
            time.sleep(0.2)
        yield base
    finally:
        child.stop()


def test_dev_env_starts_without_a_key() -> None:
    """BANKFLOW_ENV=dev with no key at all: the API starts, on the built-in dev key."""
    with api_process(environment(BANKFLOW_ENV="dev")) as base:
        assert httpx.get(f"{base}/health").status_code == 200


@pytest.fixture
def launched_api(settings: Settings) -> Iterator[str]:
    """On the test database, as the runtime role."""
    env = environment(
        BANKFLOW_JWT_KEYS=KeyRing.generate_entry(), BANKFLOW_DATABASE_URL=settings.database_url
    )
    with api_process(env) as base:
        yield base


async def test_forwarded_for_from_localhost_is_not_believed(
    launched_api: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Issue 11's probe: 15 wrong passwords, each claiming another address. The limits count
    them against the one real address and username, and the audit log records 127.0.0.1."""
    username = f"victim-{uuid.uuid4().hex[:6]}"
    statuses = []
    async with httpx.AsyncClient(base_url=launched_api) as client:
        for i in range(15):
            r = await client.post(
                "/v1/auth/token",
                data={"username": username, "password": f"guess-{i}"},
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
            )
            statuses.append(r.status_code)
    assert statuses[:4] == [401] * 4
    assert set(statuses[4:]) == {429}
    async with sessions() as session:
        addresses = await session.scalars(
            select(AuditEntry.client_address).where(AuditEntry.actor_username == username)
        )
        assert {str(a) for a in addresses} == {"127.0.0.1"}
