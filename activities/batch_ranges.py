"""Cutting a batch job's rows into id ranges: the next `limit` ranges of `size` ids after a
cursor, for month-end (savings accounts) and the daily loan job (active loans). A range is
what one batch activity locks and posts in one transaction; the cursor is what the workflow
carries across continue-as-new."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def id_ranges(
    session: AsyncSession, ids: str, *, after: int, size: int, limit: int
) -> tuple[list[tuple[int, int]], bool]:
    """`ids` is a query of the eligible ids (as `id`) above `:after`, ascending, at most
    `:rows`. Returns (first id, last id) of each range, and whether more remain after them."""
    rows = (
        await session.execute(
            text(
                "SELECT min(id) AS lo, max(id) AS hi"
                " FROM (SELECT id, (row_number() OVER (ORDER BY id) - 1) / :size AS b"
                f" FROM ({ids}) x) y GROUP BY b ORDER BY b"
            ),
            {"size": size, "after": after, "rows": size * limit + 1},
        )
    ).all()
    ranges = [(r.lo, r.hi) for r in rows]
    return ranges[:limit], len(ranges) > limit
