"""Accounting periods as `YYYY-MM` strings: parsing, bounds and stepping, in one place for the
ledger's period close, month-end interest, its schedule and the CLI. Pure; no I/O."""

from __future__ import annotations

import calendar
import re
from datetime import date

PERIOD_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"


def check_period(value: str) -> str:
    """`value` if it is a period YYYY-MM (month 01 to 12), else ValueError."""
    if not re.match(PERIOD_PATTERN, value):
        raise ValueError(f"{value!r} is not a period YYYY-MM")
    return value


def year_month(period: str) -> tuple[int, int]:
    year, month = check_period(period).split("-")
    return int(year), int(month)


def period_of(day: date) -> str:
    return f"{day:%Y-%m}"


def period_start(period: str) -> date:
    """`2026-10` -> 2026-10-01."""
    year, month = year_month(period)
    return date(year, month, 1)


def month_bounds(year: int, month: int) -> tuple[date, date]:
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


def period_bounds(period: str) -> tuple[date, date]:
    """The period's first and last day."""
    return month_bounds(*year_month(period))


def previous_period(period: str) -> str:
    year, month = year_month(period)
    return f"{year - 1}-12" if month == 1 else f"{year}-{month - 1:02d}"


def periods_between(first: str, last: str) -> list[str]:
    """Every period from `first` to `last` inclusive, in order."""
    out: list[str] = []
    year, month = year_month(first)
    while f"{year}-{month:02d}" <= last:
        out.append(f"{year}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out
