"""Writing audit entries so that a database outage can never turn an answer into an error.

An entry is written to Postgres, retried with backoff across a restart; if Postgres still cannot
take it, it goes to a local spool (`audit_spool_dir`): one small file per entry, fsync'd and
renamed into place, so a crash leaves either the whole entry or nothing. The spool is flushed
into `audit_log` when Postgres answers again: after the next entry that is written, every few
seconds in the background, and at start-up (entries spooled by a process that then died).
Entries carry their own id, so a flush repeated after a crash writes each one once.

Writes are group-committed: entries that arrive while a write is in flight go to Postgres
together in the next one (one INSERT, one commit, one WAL flush), and each request still waits
until its own entry is committed. Under load that turns one fsync per request into one per
batch; alone, a request pays exactly what it paid before.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from activities import audit_trail
from activities.db import db_unavailable, while_unavailable
from activities.direct import DirectPool
from schemas.audit import AuditRecord

log = logging.getLogger(__name__)

# A Postgres restart takes one to three seconds; the client waits this long at most for its
# answer before the entry goes to the spool.
RETRY_WINDOW_SECONDS = 2.0
FLUSH_INTERVAL_SECONDS = 5.0
FLUSH_BATCH = 500


class AuditSpool:
    """Entries waiting for Postgres: `<entry_id>.json` files in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def put(self, entry: AuditRecord) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"{entry.entry_id}.json"
        partial = final.with_suffix(".partial")
        with open(partial, "wb") as f:
            f.write(entry.model_dump_json().encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, final)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)

    def take(self, limit: int) -> list[tuple[Path, AuditRecord]]:
        """Up to `limit` spooled entries, oldest first; an unreadable file is set aside."""
        try:
            paths = sorted(self.directory.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
        except FileNotFoundError:  # a file flushed by another process meanwhile
            return []
        found = []
        for path in paths[:limit]:
            try:
                found.append((path, AuditRecord.model_validate_json(path.read_bytes())))
            except FileNotFoundError:
                continue
            except ValidationError:
                log.error("unreadable audit spool file %s set aside", path.name)
                path.rename(path.with_suffix(".unreadable"))
        return found

    @staticmethod
    def remove(paths: list[Path]) -> None:
        for path in paths:
            path.unlink(missing_ok=True)


Write = Callable[[list[AuditRecord]], Awaitable[None]]


class GroupCommit:
    """One write in flight; entries arriving meanwhile are written together by the next.

    A batch that fails because the database is unavailable fails each of its entries (each
    caller retries or spools its own); any other error is retried entry by entry, so one bad
    entry never takes its neighbours' requests down with it.
    """

    def __init__(self, write: Write) -> None:
        self._write = write
        self._queue: list[tuple[AuditRecord, asyncio.Future[None]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def write(self, entry: AuditRecord) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((entry, done))
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        await asyncio.shield(done)  # a cancelled request's entry is still written

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._commit(batch)
        finally:
            self._drainer = None

    async def _commit(self, batch: list[tuple[AuditRecord, asyncio.Future[None]]]) -> None:
        try:
            await self._write([entry for entry, _ in batch])
        except Exception as exc:
            if len(batch) > 1 and not db_unavailable(exc):
                for one in batch:
                    await self._commit([one])
                return
            for _, done in batch:
                done.set_exception(exc)
            return
        for _, done in batch:
            done.set_result(None)


class AuditTrail:
    def __init__(self, db: DirectPool, spool_dir: Path) -> None:
        self.db = db
        self.spool = AuditSpool(spool_dir)
        self.pending = True  # until a first flush has looked
        self._flushing = asyncio.Lock()
        self._group = GroupCommit(self._write)

    async def record(self, entry: AuditRecord, *, retry: bool = True) -> None:
        """Write the entry; never raise because the database is unavailable. `retry=False`
        when the request already found it down, so its 503 is not held back further."""
        try:

            def write() -> Awaitable[None]:
                return self._group.write(entry)

            await (while_unavailable(write, window=RETRY_WINDOW_SECONDS) if retry else write())
        except (DBAPIError, PoolTimeout) as exc:
            if not db_unavailable(exc):
                raise
            await self._put(entry)
            return
        if self.pending and not self._flushing.locked():
            await self.flush_quietly()

    async def _put(self, entry: AuditRecord) -> None:
        try:
            await asyncio.to_thread(self.spool.put, entry)
        except OSError as exc:  # the answer still goes out; what was lost is said here
            log.error(
                "audit entry %s (%s by user %s, %s) lost: database down and spool failed: %s",
                entry.entry_id,
                entry.action,
                entry.actor_user_id,
                entry.outcome_status,
                exc,
            )
            return
        self.pending = True
        log.warning("database unavailable: audit entry %s spooled", entry.entry_id)

    async def _write(self, entries: list[AuditRecord]) -> None:
        await audit_trail.write_entries(self.db, entries)

    async def flush(self) -> int:
        """Move spooled entries into audit_log; how many. A database error propagates."""
        moved = 0
        async with self._flushing:
            while batch := await asyncio.to_thread(self.spool.take, FLUSH_BATCH):
                await self._write([entry for _, entry in batch])
                await asyncio.to_thread(self.spool.remove, [path for path, _ in batch])
                moved += len(batch)
            self.pending = False
        if moved:
            log.info("flushed %d spooled audit entries", moved)
        return moved

    async def flush_quietly(self) -> None:
        """Flush if Postgres takes it; the entries stay spooled for the next try otherwise."""
        try:
            await self.flush()
        except (DBAPIError, PoolTimeout) as exc:
            if not db_unavailable(exc):
                log.error("cannot flush the audit spool (%s)", type(exc).__name__)

    async def keep_flushing(self) -> None:
        """The background flusher the API runs for its whole life."""
        while True:
            await self.flush_quietly()
            await asyncio.sleep(FLUSH_INTERVAL_SECONDS)
