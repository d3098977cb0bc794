"""Worked examples for the schedule engine, each checked against numbers computed another way:
by hand (in the comments), by Apache Fineract itself (its integration test), or by the short,
straightforward re-computations below in exact Decimal arithmetic."""

from __future__ import annotations

import decimal
from datetime import date
from decimal import Decimal, localcontext

import pytest

from domain.dates import due_dates
from domain.schedule import Schedule, ScheduleError, ScheduleTerms, generate_schedule

CENT = Decimal("0.01")


def rows(schedule: Schedule) -> list[tuple[str, str, str, str]]:
    """(principal, interest, total, balance) per installment, in major units."""

    def major(minor: int) -> str:
        return f"{Decimal(minor).scaleb(-schedule.scale):.{schedule.scale}f}"

    return [
        (
            major(i.principal_minor),
            major(i.interest_minor),
            major(i.total_minor),
            major(i.balance_minor),
        )
        for i in schedule.installments
    ]


def terms(**overrides: object) -> ScheduleTerms:
    base: dict[str, object] = {
        "principal_minor": 100000,
        "annual_rate": Decimal(12),
        "repayments": 4,
        "disbursed_on": date(2024, 1, 15),
    }
    return ScheduleTerms(**{**base, **overrides})  # type: ignore[arg-type]


def reference_declining(
    principal: Decimal, annual: Decimal, n: int, multiple: Decimal = Decimal(0)
) -> list[tuple[str, str, str, str]]:
    """Textbook annuity: r = annual / 1200, PMT = P r / (1 - (1 + r)^-n) rounded half-even to
    the multiple (else to the cent), interest = balance x r to the cent, the last installment
    clears the balance."""
    with localcontext() as ctx:
        ctx.prec = 60
        r = annual / 1200
        pmt = principal * r / (1 - (1 + r) ** -n)
        emi = (pmt / multiple).quantize(Decimal(1)) * multiple if multiple else pmt.quantize(CENT)
        out, balance = [], principal
        for k in range(1, n + 1):
            interest = (balance * r).quantize(CENT)
            paid = balance if k == n else emi - interest
            balance -= paid
            out.append(
                (f"{paid:.2f}", f"{interest:.2f}", f"{paid + interest:.2f}", f"{balance:.2f}")
            )
        return out


def test_issue_example_first_installment_and_totals() -> None:
    schedule = generate_schedule(
        terms(
            principal_minor=500000,
            repayments=18,
            disbursed_on=date(2022, 11, 1),
            first_repayment_on=date(2022, 12, 1),
            installment_multiple=Decimal(1),
        )
    )
    first = schedule.installments[0]
    assert rows(schedule)[0] == ("255.00", "50.00", "305.00", "4745.00")
    assert first.due_date == date(2022, 12, 1)
    assert rows(schedule) == reference_declining(Decimal(5000), Decimal(12), 18, Decimal(1))
    assert schedule.total_principal_minor == 500000
    assert schedule.total_due_minor == sum(i.total_minor for i in schedule.installments)


@pytest.mark.parametrize(
    ("principal", "rate", "n", "multiple"),
    [("10000", "10", 12, "0"), ("2500.55", "7.5", 36, "0"), ("750", "30", 6, "5")],
)
def test_declining_equal_installments_match_the_textbook_annuity(
    principal: str, rate: str, n: int, multiple: str
) -> None:
    schedule = generate_schedule(
        terms(
            principal_minor=int(Decimal(principal) * 100),
            annual_rate=Decimal(rate),
            repayments=n,
            installment_multiple=Decimal(multiple),
        )
    )
    assert rows(schedule) == reference_declining(
        Decimal(principal), Decimal(rate), n, Decimal(multiple)
    )


def test_fineract_integration_test_schedule() -> None:
    """ClientLoanIntegrationTest.verifyLoanRepaymentSchedule in apache/fineract: 12,000 at 2 % a
    month, 4 monthly equal installments, disbursed 2011-09-20."""
    schedule = generate_schedule(
        terms(principal_minor=1200000, annual_rate=Decimal(24), disbursed_on=date(2011, 9, 20))
    )
    got = [
        (i.due_date, r[0], r[1]) for i, r in zip(schedule.installments, rows(schedule), strict=True)
    ]
    assert got == [
        (date(2011, 10, 20), "2911.49", "240.00"),
        (date(2011, 11, 20), "2969.72", "181.77"),
        (date(2011, 12, 20), "3029.11", "122.38"),
        (date(2012, 1, 20), "3089.68", "61.79"),
    ]


# 1000.00 at 12 % a year, 4 monthly installments; by hand. PMT(1 %, 4, 1000) = 256.28 and
# PMT(1 %, 3, 1000) = 340.02.
@pytest.mark.parametrize(
    ("grace", "expected"),
    [
        # Principal grace: interest only first, then PMT over the 3 remaining periods.
        (
            {"grace_principal": 1},
            [
                ("0.00", "10.00", "10.00", "1000.00"),
                ("330.02", "10.00", "340.02", "669.98"),
                ("333.32", "6.70", "340.02", "336.66"),
                ("336.66", "3.37", "340.03", "0.00"),
            ],
        ),
        # Interest-payment grace: period 1's 10.00 is due with period 2; principal is still the
        # installment net of the period's own interest.
        (
            {"grace_interest_payment": 1},
            [
                ("246.28", "0.00", "246.28", "753.72"),
                ("248.74", "17.54", "266.28", "504.98"),
                ("251.23", "5.05", "256.28", "253.75"),
                ("253.75", "2.54", "256.29", "0.00"),
            ],
        ),
        # Interest-charged grace: no interest at all in period 1.
        (
            {"grace_interest_charged": 1},
            [
                ("256.28", "0.00", "256.28", "743.72"),
                ("248.84", "7.44", "256.28", "494.88"),
                ("251.33", "4.95", "256.28", "243.55"),
                ("243.55", "2.44", "245.99", "0.00"),
            ],
        ),
    ],
)
def test_declining_grace_periods(grace: dict[str, int], expected: list[tuple[str, ...]]) -> None:
    assert rows(generate_schedule(terms(**grace))) == expected


def test_equal_principal_rounds_to_the_currency_not_the_multiple() -> None:
    # 1000.00 / 3 = 333.33 (the multiple of 5 does not apply to principal); interest 1 % a month.
    schedule = generate_schedule(
        terms(repayments=3, amortization="equal_principal", installment_multiple=Decimal(5))
    )
    assert rows(schedule) == [
        ("333.33", "10.00", "343.33", "666.67"),
        ("333.33", "6.67", "340.00", "333.34"),
        ("333.34", "3.33", "336.67", "0.00"),
    ]


def test_flat_with_multiple_keeps_interest_exact_and_rounds_the_installment() -> None:
    """Fineract's own comment: principal 416.67 -> 417, interest 12.50 -> 13, so principal is
    417 + 13 - 12.50 = 417.50 and the installment 430.00 (with half-up rounding)."""
    flat = {
        "principal_minor": 500000,
        "annual_rate": Decimal(3),
        "repayments": 12,
        "interest_method": "flat",
        "installment_multiple": Decimal(1),
    }
    up = rows(generate_schedule(terms(**flat, rounding=decimal.ROUND_HALF_UP)))
    assert up[0] == ("417.50", "12.50", "430.00", "4582.50")
    assert up[-1] == ("407.50", "12.50", "420.00", "0.00")  # 5000 - 11 x 417.50
    # Half-even rounds 12.50 down to 12: principal 417 + 12 - 12.50 = 416.50.
    even = rows(generate_schedule(terms(**flat)))
    assert even[0] == ("416.50", "12.50", "429.00", "4583.50")
    assert even[-1] == ("418.50", "12.50", "431.00", "0.00")


@pytest.mark.parametrize(
    ("amortization", "grace", "interest"),
    [
        # 1200.00 at 12 % over 6 months: 72.00 flat interest, 12.00 a period.
        ("equal_installments", {}, ["12.00"] * 6),
        # equal principal defers the grace's interest to the first paying period ...
        (
            "equal_principal",
            {"grace_interest_payment": 2},
            ["0.00", "0.00", "36.00"] + ["12.00"] * 3,
        ),
        # ... equal installments spread it over the paying periods (72 / 4), as Fineract does.
        ("equal_installments", {"grace_interest_payment": 2}, ["0.00"] * 2 + ["18.00"] * 4),
        # interest-charged grace drops 2 x 12.00; the rest (48.00) is spread over 4 periods.
        ("equal_installments", {"grace_interest_charged": 2}, ["0.00"] * 2 + ["12.00"] * 4),
        ("equal_principal", {"grace_interest_charged": 2}, ["0.00"] * 2 + ["12.00"] * 4),
    ],
)
def test_flat_interest_and_grace(
    amortization: str, grace: dict[str, int], interest: list[str]
) -> None:
    schedule = generate_schedule(
        terms(
            principal_minor=120000,
            repayments=6,
            interest_method="flat",
            amortization=amortization,
            **grace,
        )
    )
    assert [r[1] for r in rows(schedule)] == interest
    assert [r[0] for r in rows(schedule)] == ["200.00"] * 6


def test_daily_interest_counts_actual_days_over_365_even_in_a_leap_year() -> None:
    # Disbursed 2024-01-15; due 02-15 (31 days) and 03-15 (29 days: February 2024).
    schedule = generate_schedule(
        terms(repayments=2, interest_period="daily", days_in_year="actual")
    )
    with localcontext() as ctx:
        ctx.prec = 60
        day_rate = Decimal(12) / 100 / 365
        pmt_rate = day_rate * 30  # Fineract's installment assumes 30-day months
        growth = (1 + pmt_rate) ** 2
        emi = (Decimal(1000) * pmt_rate * growth / (growth - 1)).quantize(CENT)
        i1 = (Decimal(1000) * day_rate * 31).quantize(CENT)
        balance = Decimal(1000) - (emi - i1)
        i2 = (balance * day_rate * 29).quantize(CENT)
    assert rows(schedule) == [
        (f"{emi - i1:.2f}", f"{i1:.2f}", f"{emi:.2f}", f"{balance:.2f}"),
        (f"{balance:.2f}", f"{i2:.2f}", f"{balance + i2:.2f}", "0.00"),
    ]
    assert [i.due_date for i in schedule.installments] == [date(2024, 2, 15), date(2024, 3, 15)]


def test_daily_with_30_day_months_and_360_day_year() -> None:
    schedule = generate_schedule(
        terms(
            repayments=2,
            interest_period="daily",
            days_in_year="360",
            days_in_month="30",
            amortization="equal_principal",
        )
    )
    # 12 % / 360 x 30 days = exactly 1 % per period, whatever the calendar says.
    assert [r[1] for r in rows(schedule)] == ["10.00", "5.00"]


def test_first_period_interest_is_a_standard_period() -> None:
    """Fineract charges the first period from one period before the first due date, so a long
    first period (disbursed 11-01, first due 12-15) costs one month's interest."""
    long_first = generate_schedule(
        terms(
            disbursed_on=date(2022, 11, 1),
            first_repayment_on=date(2022, 12, 15),
            interest_period="daily",
        )
    )
    standard = generate_schedule(terms(disbursed_on=date(2022, 11, 15), interest_period="daily"))
    assert rows(long_first) == rows(standard)
    assert long_first.installments[0].from_date == date(2022, 11, 1)


def test_weekly_and_zero_rate() -> None:
    schedule = generate_schedule(
        terms(frequency="weeks", every=2, annual_rate=Decimal(0), repayments=3)
    )
    assert rows(schedule) == [
        ("333.33", "0.00", "333.33", "666.67"),
        ("333.33", "0.00", "333.33", "333.34"),
        ("333.34", "0.00", "333.34", "0.00"),
    ]
    assert [i.due_date for i in schedule.installments] == [
        date(2024, 1, 29),
        date(2024, 2, 12),
        date(2024, 2, 26),
    ]


def test_month_end_due_dates_stay_on_the_seed_day() -> None:
    assert due_dates(date(2024, 1, 31), None, 4, 1, "months") == [
        date(2024, 2, 29),
        date(2024, 3, 31),
        date(2024, 4, 30),
        date(2024, 5, 31),
    ]
    # A seed on the 15th is never adjusted: Java's plusMonths clamps and the date drifts.
    assert due_dates(date(2023, 12, 15), date(2024, 1, 31), 3, 1, "months") == [
        date(2024, 1, 31),
        date(2024, 2, 29),
        date(2024, 3, 31),
    ]


def test_a_large_multiple_can_end_the_schedule_early() -> None:
    # PMT(1 %, 4, 1000) = 256.28 rounds up to 500: the loan is repaid in 3 installments, not 4,
    # and the third takes only what remains. Rounding up applies to interest too: 15.10 x 1 %
    # = 0.151 -> 0.16.
    schedule = generate_schedule(terms(installment_multiple=Decimal(500), rounding="ROUND_UP"))
    assert rows(schedule) == [
        ("490.00", "10.00", "500.00", "510.00"),
        ("494.90", "5.10", "500.00", "15.10"),
        ("15.10", "0.16", "15.26", "0.00"),
    ]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"principal_minor": 0}, "principal must be greater than zero"),
        ({"annual_rate": Decimal(-1)}, "annual rate"),
        ({"repayments": 0}, "repayments must be between"),
        ({"every": 0}, "at least 1"),
        ({"frequency": "years"}, "frequency must be one of"),
        ({"days_in_year": "366"}, "days_in_year must be one of"),
        ({"first_repayment_on": date(2024, 1, 15)}, "after the disbursement date"),
        ({"grace_principal": 4}, "grace on principal"),
        ({"grace_interest_charged": -1}, "grace on interest charged"),
        ({"installment_multiple": Decimal("0.001")}, "installment multiple"),
        ({"rounding": "ROUND_SIDEWAYS"}, "unknown rounding mode"),
        (
            {"interest_method": "flat", "grace_interest_payment": 2, "grace_interest_charged": 2},
            "outside both interest graces",
        ),
        # 12 % on 1000.00 is 10.00 a month; installments in multiples of 1000 round to 0.
        ({"installment_multiple": Decimal(1000)}, "more than the installment"),
        # Five periods of deferred interest at 120 % outgrow the installment (Fineract refuses too).
        (
            {"annual_rate": Decimal(120), "repayments": 6, "grace_interest_payment": 5},
            "installment 6 owes 377.64 interest, more than the installment of 229.61",
        ),
    ],
)
def test_bad_combinations_raise_one_line_errors(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ScheduleError, match=message) as info:
        generate_schedule(terms(**overrides))
    assert "\n" not in str(info.value)


def test_rounding_mode_accepts_both_spellings() -> None:
    assert rows(generate_schedule(terms(rounding="HALF_UP"))) == rows(
        generate_schedule(terms(rounding=decimal.ROUND_HALF_UP))
    )
