"""Calendar steps for repayment dates, the way Java's LocalDate and Fineract take them.

A month step clamps to the month's last day (Jan 31 + 1 month = Feb 28), as LocalDate.plusMonths
does; Fineract then moves a date at the month's end back to the seed day when the seed day is
after the 28th (CalendarUtils.adjustDate), so a loan repaid on the 31st stays on month ends
instead of drifting to the 28th.
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from typing import Literal

Unit = Literal["days", "weeks", "months"]


def add_months(day: date, months: int) -> date:
    """`day` plus `months` calendar months, clamped to the last day of the target month."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def step(day: date, every: int, unit: Unit) -> date:
    """`day` moved by `every` units (negative moves back); no seed-day adjustment."""
    if unit == "days":
        return day + timedelta(days=every)
    if unit == "weeks":
        return day + timedelta(weeks=every)
    return add_months(day, every)


def adjust_to_seed(day: date, seed: date, unit: Unit) -> date:
    """Fineract's CalendarUtils.adjustDate: keep month-end due dates on the seed's day."""
    if unit == "months" and seed.day > 28 and day.day >= 28:
        last = calendar.monthrange(day.year, day.month)[1]
        return day.replace(day=min(last, seed.day))
    return day


def due_dates(
    disbursed_on: date, first: date | None, count: int, every: int, unit: Unit
) -> list[date]:
    """The `count` due dates: `first` (default one period after disbursement), then one period
    after each previous date, adjusted to the seed day (the first date if given, else the
    disbursement date), as Fineract's DefaultScheduledDateGenerator does."""
    seed = first or disbursed_on
    current = first or adjust_to_seed(step(disbursed_on, every, unit), seed, unit)
    dates = [current]
    for _ in range(count - 1):
        current = adjust_to_seed(step(current, every, unit), seed, unit)
        dates.append(current)
    return dates
