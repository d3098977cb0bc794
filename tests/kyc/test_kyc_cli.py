"""`bankflow watchlist import` and `bankflow seed kyc-case` as subprocesses on the test database
and the test Temporal server."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from temporalio.client import Client, WorkflowExecutionStatus

from activities.tables import WatchlistEntry
from schemas import search_attributes as sa
from scripts.local_postgres import drop_app_database, provision
from tests.conftest import Sessions

BANKFLOW = str(Path(sys.executable).parent / "bankflow")


def bankflow(db_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BANKFLOW, *args],
        env={**os.environ, "BANKFLOW_DATABASE_URL": db_url, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def entries(sessions: Sessions) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(WatchlistEntry)) or 0)


async def test_watchlist_import_replaces_the_list_and_refuses_bad_rows(
    db_url: str, sessions: Sessions, tmp_path: Path
) -> None:
    good = tmp_path / "list.csv"
    good.write_text(
        "full_name,date_of_birth,source,reference\n"
        "Ivan Petrov,1965-02-01,OFAC,SDN-1\n"
        "Jane Roe,,UN,QDi.9\n"
    )
    done = bankflow(db_url, "watchlist", "import", str(good))
    assert done.returncode == 0, done.stderr
    assert "2 entries" in done.stdout and await entries(sessions) == 2

    bad = tmp_path / "bad.csv"
    bad.write_text("full_name,date_of_birth\nSomeone,01/02/1960\n")
    refused = bankflow(db_url, "watchlist", "import", str(bad))
    assert refused.returncode == 1 and "line 2" in refused.stderr
    assert await entries(sessions) == 2  # the old list stays whole
    assert bankflow(db_url, "watchlist", "import", str(tmp_path / "missing.csv")).returncode == 2
    empty = tmp_path / "empty.csv"
    empty.write_text("full_name\n")
    assert bankflow(db_url, "watchlist", "import", str(empty)).returncode == 0
    assert await entries(sessions) == 0


@pytest.fixture
def demo_db(pg_server: str) -> Iterator[str]:
    """A database of its own: the demo institution must not leak into other tests' data."""
    database = provision(pg_server, f"bankflow_kyc_demo_{uuid.uuid4().hex[:8]}")
    owner = {"BANKFLOW_MIGRATION_DATABASE_URL": database.owner_url}
    assert bankflow(database.runtime_url, "db", "upgrade", **owner).returncode == 0
    yield database.runtime_url
    drop_app_database(pg_server, database.name)


async def test_seed_kyc_case_starts_the_demo_review(demo_db: str, temporal_client: Client) -> None:
    db_url = demo_db
    address = temporal_client.service_client.config.target_host
    assert bankflow(db_url, "seed", "demo").returncode == 0
    first = bankflow(db_url, "seed", "kyc-case", BANKFLOW_TEMPORAL_ADDRESS=address)
    assert first.returncode == 0, first.stderr
    assert "started" in first.stdout
    again = bankflow(db_url, "seed", "kyc-case", BANKFLOW_TEMPORAL_ADDRESS=address)
    assert again.returncode == 0, again.stderr  # still not picked up: the start is deduplicated
    case = first.stdout.split("demo KYC case ")[1].split()[0]
    handle = temporal_client.get_workflow_handle(f"kyc-{case.rsplit('-', 1)[0]}")
    described = await handle.describe()
    assert described.status == WorkflowExecutionStatus.RUNNING
    assert described.typed_search_attributes.get(sa.BUSINESS_ID) == case
    await handle.terminate("demo case checked")
