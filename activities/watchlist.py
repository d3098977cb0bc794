"""Watch-list screening: import a CSV list, and match a member by fuzzy name plus date of birth.

Names are compared after folding case and accents and sorting their tokens, so "OKAFOR, Amina"
matches "Amina Okafor" and "Amína" matches "Amina". A strong name match is a hit when the dates
of birth agree (or the list has none); a strong match with another date of birth, or a weaker
name match, is only "similar" and raises the risk for a reviewer to judge.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from dataclasses import dataclass
from datetime import date

from pydantic import ValidationError
from rapidfuzz import fuzz, process, utils
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.tables import WatchlistEntry
from schemas.errors import BankflowError, ErrorCode
from schemas.kyc import WatchlistRow

CSV_COLUMNS = ("full_name", "date_of_birth", "source", "reference")


def normalise(name: str) -> str:
    folded = unicodedata.normalize("NFKD", name)
    ascii_only = "".join(c for c in folded if not unicodedata.combining(c))
    return utils.default_process(ascii_only)


def parse_csv(text: str) -> list[WatchlistRow]:
    """Rows of a CSV with a header naming `full_name` and optionally `date_of_birth` (ISO),
    `source`, `reference`. A bad row fails the whole import, naming its line."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or "full_name" not in reader.fieldnames:
        raise BankflowError(ErrorCode.VALIDATION, "the CSV needs a header with a full_name column")
    unknown = set(reader.fieldnames) - set(CSV_COLUMNS)
    if unknown:
        raise BankflowError(ErrorCode.VALIDATION, f"unknown CSV columns: {sorted(unknown)}")
    rows: list[WatchlistRow] = []
    for line, raw in enumerate(reader, start=2):
        values = {k: (v or "").strip() for k, v in raw.items() if k}
        try:
            rows.append(
                WatchlistRow(
                    full_name=values["full_name"],
                    date_of_birth=date.fromisoformat(values["date_of_birth"])
                    if values.get("date_of_birth")
                    else None,
                    source=values.get("source", ""),
                    reference=values.get("reference", ""),
                )
            )
        except (ValueError, ValidationError) as exc:
            raise BankflowError(ErrorCode.VALIDATION, f"line {line}: {exc}") from exc
    return rows


async def replace_watchlist(session: AsyncSession, rows: list[WatchlistRow]) -> int:
    """The list is replaced as a whole, in the caller's transaction: screening never sees half."""
    await session.execute(delete(WatchlistEntry))
    session.add_all(
        WatchlistEntry(
            full_name=r.full_name,
            date_of_birth=r.date_of_birth,
            source=r.source,
            reference=r.reference,
        )
        for r in rows
    )
    await session.flush()
    return len(rows)


@dataclass(frozen=True)
class Screening:
    hit: bool
    similar: bool
    score: float
    reference: str


async def screen(
    session: AsyncSession, full_name: str, born: date, *, hit_score: float, similar_score: float
) -> Screening:
    entries = (await session.execute(select(WatchlistEntry))).scalars().all()
    if not entries:
        return Screening(False, False, 0.0, "")
    names = [normalise(e.full_name) for e in entries]
    matches = process.extract(
        normalise(full_name),
        names,
        scorer=fuzz.token_sort_ratio,
        score_cutoff=similar_score,
        limit=None,
    )
    best = Screening(False, False, 0.0, "")
    for _, score, index in matches:
        entry = entries[index]
        same_person = entry.date_of_birth is None or entry.date_of_birth == born
        found = Screening(
            hit=score >= hit_score and same_person,
            similar=True,
            score=round(float(score), 1),
            reference=f"{entry.source}:{entry.reference}".strip(":"),
        )
        if (found.hit, found.score) > (best.hit, best.score):
            best = found
    return best
