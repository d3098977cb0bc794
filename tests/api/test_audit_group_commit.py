"""Audit entries are group-committed: what arrives during a write goes in the next one, each
request waits for its own entry, and one failing entry never fails its neighbours."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy.exc import DataError, OperationalError

from api.audit_spool import GroupCommit
from schemas.audit import AuditRecord


def entry(resource: str = "/v1/accounts/SV1") -> AuditRecord:
    return AuditRecord(
        entry_id=uuid.uuid4(),
        at=datetime.now(UTC),
        actor_user_id=1,
        actor_username="teller1",
        action="GET /v1/accounts/{number}",
        resource=resource,
        client_address="10.0.0.7",
        user_agent=None,
        idempotency_key=None,
        member_numbers=None,
        outcome_status=200,
        outcome="ok",
    )


class Writer:
    def __init__(self, fails: set[str] | None = None, unavailable: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.fails = fails or set()
        self.unavailable = unavailable

    async def __call__(self, entries: list[AuditRecord]) -> None:
        await asyncio.sleep(0.01)  # a commit takes time; others arrive meanwhile
        if self.unavailable:
            raise OperationalError("INSERT", {}, Exception("connection refused"))
        if any(e.resource in self.fails for e in entries):
            raise DataError("INSERT", {}, Exception("bad entry"))
        self.batches.append([e.resource for e in entries])


async def test_concurrent_entries_share_commits_and_each_waits_for_its_own() -> None:
    writer = Writer()
    group = GroupCommit(writer)
    entries = [entry(f"/r/{i}") for i in range(50)]
    await asyncio.gather(*(group.write(e) for e in entries))
    written = [r for batch in writer.batches for r in batch]
    assert sorted(written) == sorted(e.resource for e in entries)  # each once
    assert len(writer.batches) <= 3  # the first alone, then the rest together


async def test_one_bad_entry_fails_only_its_own_request() -> None:
    writer = Writer(fails={"/r/bad"})
    group = GroupCommit(writer)
    results = await asyncio.gather(
        *(group.write(entry(r)) for r in ("/r/0", "/r/1", "/r/bad", "/r/2")),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results] == ["NoneType", "NoneType", "DataError", "NoneType"]
    assert sorted(r for b in writer.batches for r in b) == ["/r/0", "/r/1", "/r/2"]


async def test_an_unavailable_database_fails_every_entry_of_the_batch() -> None:
    group = GroupCommit(Writer(unavailable=True))
    results = await asyncio.gather(
        *(group.write(entry()) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, OperationalError) for r in results)
    # and the next write starts a new batch
    with pytest.raises(OperationalError):
        await group.write(entry())
