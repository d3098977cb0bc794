"""What a bench's run cost Postgres beyond its wall time: the WAL it wrote and the checkpoints it
forced, with the settings that decide them, so a batch bench can say whether checkpoints shaped
its figures (a `max_wal_size` too small for the run shows as requested checkpoints)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# Postgres 17 moved the checkpoint counters from pg_stat_bgwriter to pg_stat_checkpointer.
_COUNTERS = {
    True: "SELECT num_timed, num_requested FROM pg_stat_checkpointer",
    False: "SELECT checkpoints_timed, checkpoints_req FROM pg_stat_bgwriter",
}


@dataclass(frozen=True)
class Snapshot:
    wal_lsn: str
    timed: int
    requested: int


async def snapshot(engine: AsyncEngine) -> Snapshot:
    async with engine.connect() as conn:
        version = int(await conn.scalar(text("SHOW server_version_num")) or 0)
        timed, requested = (await conn.execute(text(_COUNTERS[version >= 170000]))).one()
        lsn = str(await conn.scalar(text("SELECT pg_current_wal_lsn()")))
    return Snapshot(lsn, int(timed), int(requested))


async def report(engine: AsyncEngine, before: Snapshot) -> str:
    """One line: WAL written and checkpoints since `before`, and the settings behind them."""
    after = await snapshot(engine)
    async with engine.connect() as conn:
        wal = int(
            await conn.scalar(
                text("SELECT pg_wal_lsn_diff(CAST(:a AS pg_lsn), CAST(:b AS pg_lsn))"),
                {"a": after.wal_lsn, "b": before.wal_lsn},
            )
            or 0
        )
        rows = await conn.execute(
            text(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name IN "
                "('max_wal_size', 'checkpoint_timeout', 'shared_buffers', "
                "'synchronous_commit', 'wal_compression') ORDER BY name"
            )
        )
        shown = " ".join(f"{name}={value}" for name, value in rows)
    return (
        f"postgres: WAL {wal / 2**20:,.0f} MB, checkpoints {after.timed - before.timed} timed "
        f"+ {after.requested - before.requested} requested ({shown})"
    )
