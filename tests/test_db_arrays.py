"""`pg_array`: the batch jobs' array parameters as one literal, and the values it refuses rather
than quote (a refused value is a bug in the caller, never data to be escaped)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from activities.db import pg_array


def test_numbers_dates_decimals_codes_and_null() -> None:
    assert pg_array([1, -2, None]) == "{1,-2,NULL}"
    assert pg_array([]) == "{}"
    assert pg_array([Decimal("1.5E-11"), Decimal("10.662000000000")]) == "{1.5E-11,10.662000000000}"
    assert pg_array([date(2026, 1, 1), None]) == "{2026-01-01,NULL}"
    assert pg_array(["over_90", "1-30", "USD"]) == "{over_90,1-30,USD}"


@pytest.mark.parametrize("value", ["a b", "a,b", "{", "}", '"', "a\\b", "", "null", "NULL", "\n"])
def test_a_value_that_would_need_quoting_is_refused(value: str) -> None:
    with pytest.raises(ValueError):
        pg_array(["ok", value])
