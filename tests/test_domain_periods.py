"""Period arithmetic (`YYYY-MM`), pure: the one parser the ledger close, month-end, its schedule
and the CLI share."""

from __future__ import annotations

from datetime import date

import pytest

from domain.periods import (
    check_period,
    period_bounds,
    period_of,
    period_start,
    periods_between,
    previous_period,
)


@pytest.mark.parametrize("bad", ["2026-13", "2026-00", "2026-1", "26-01", "2026/01", "+202-01", ""])
def test_a_malformed_period_is_refused_everywhere(bad: str) -> None:
    with pytest.raises(ValueError, match="is not a period"):
        check_period(bad)
    with pytest.raises(ValueError):
        period_start(bad)
    with pytest.raises(ValueError):
        period_bounds(bad)


def test_bounds_cover_the_calendar_month() -> None:
    assert period_bounds("2024-02") == (date(2024, 2, 1), date(2024, 2, 29))
    assert period_bounds("2026-02") == (date(2026, 2, 1), date(2026, 2, 28))
    assert period_bounds("2026-12") == (date(2026, 12, 1), date(2026, 12, 31))
    assert period_start("2026-10") == date(2026, 10, 1)
    assert period_of(date(2026, 10, 31)) == "2026-10"


def test_stepping_crosses_the_year() -> None:
    assert previous_period("2026-01") == "2025-12"
    assert previous_period("2026-11") == "2026-10"
    assert periods_between("2025-11", "2026-02") == ["2025-11", "2025-12", "2026-01", "2026-02"]
    assert periods_between("2026-03", "2026-02") == []
