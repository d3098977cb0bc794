"""Worked interest examples, each figure derived by hand in the comments (not by the code under
test): daily 9 dp interest, compounding, posting periods, tiers, minimum balance, open/close
days, leap years, withholding tax, rounding modes and the residue carried forward."""

from __future__ import annotations

import hashlib
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from activities.ledger.batch import as_lines, content_hash
from domain.interest import Carry, Terms, Tier, balance_runs, day_balances, month_interest
from schemas.ledger import PostingLine

D = Decimal
FIVE = Terms(annual_rate=D("0.05"))


def test_daily_balance_monthly_posting() -> None:
    # 1000 x 0.05 / 365 = 0.13698630136.. -> 0.136986301 a day; x 30 days = 4.109589030
    m = month_interest(FIVE, 2026, 11, D("1000.00"))
    assert m.earned == D("4.109589030")
    assert m.posts and m.posted == D("4.11") and m.days == 30
    assert m.carry == Carry(D(0), D("-0.000410970"))


def test_leap_year_february_and_360_day_year() -> None:
    # 3650 x 0.10 / 365 = 1.000000000 a day; February 2028 has 29 days
    ten = Terms(annual_rate=D("0.10"))
    assert month_interest(ten, 2028, 2, D("3650")).earned == D("29.000000000")
    assert month_interest(ten, 2027, 2, D("3650")).earned == D("28.000000000")
    # 3650 x 0.10 / 360 = 1.01388888.. -> 1.013888889; x 29 = 29.402777781 -> 29.40
    m = month_interest(Terms(annual_rate=D("0.10"), days_in_year=360), 2028, 2, D("3650"))
    assert m.earned == D("29.402777781") and m.posted == D("29.40")
    assert m.carry.residue == D("0.002777781")


def test_mid_period_opening_and_closing() -> None:
    # open 16..30 November: 15 x 0.136986301 = 2.054794515 -> 2.05
    m = month_interest(FIVE, 2026, 11, D("1000"), opened_on=date(2026, 11, 16))
    assert (m.days, m.earned, m.posted) == (15, D("2.054794515"), D("2.05"))
    # closed on the 10th: days 1..10 accrue
    m = month_interest(FIVE, 2026, 11, D("1000"), closed_on=date(2026, 11, 10))
    assert (m.days, m.earned) == (10, D("1.369863010"))


def test_below_minimum_days_earn_nothing() -> None:
    # 50.00 on days 1..10 (below the 100.00 minimum), 1000.00 from the deposit on the 11th:
    # 20 x 0.136986301 = 2.739726020 -> 2.74
    terms = Terms(annual_rate=D("0.05"), min_balance=D("100"))
    m = month_interest(terms, 2026, 11, D("1000"), [(date(2026, 11, 11), D("950"))])
    assert m.earned == D("2.739726020") and m.posted == D("2.74")


def test_withholding_tax_and_rounding_modes() -> None:
    # posted 4.11 x 15 % = 0.6165 -> 0.62
    taxed = Terms(annual_rate=D("0.05"), withholding_tax_rate=D("0.15"))
    assert month_interest(taxed, 2026, 11, D("1000")).tax == D("0.62")
    # a carried residue of exactly 0.125 posts 0.12 half-even, 0.13 half-up
    tie = Carry(D(0), D("0.125"))
    assert month_interest(FIVE, 2026, 11, D(0), carry=tie).posted == D("0.12")
    half_up = Terms(annual_rate=D("0.05"), rounding=ROUND_HALF_UP)
    m = month_interest(half_up, 2026, 11, D(0), carry=tie)
    assert m.posted == D("0.13") and m.carry.residue == D("-0.005")


def test_daily_compounding() -> None:
    # 0.365 / 365 = 0.001 a day on 1000, open the last 5 days of November; each day's interest
    # joins the base: 1 + 1.001 + 1.002001 + 1.003003001 + 1.004006004(001 cut to 9 dp)
    # = 5.010010005
    terms = Terms(annual_rate=D("0.365"), compounding="daily")
    m = month_interest(terms, 2026, 11, D("1000"), opened_on=date(2026, 11, 26))
    assert m.earned == D("5.010010005") and m.posted == D("5.01")


def test_monthly_compounding_quarterly_posting() -> None:
    # 1 a day on 1000: October 31.000000000 accrues; November on 1031: 30 x 1.031 = 30.93;
    # December on 1061.93: 31 x 1.06193 = 32.91983; posted 94.84983 -> 94.85
    terms = Terms(annual_rate=D("0.365"), posting="quarterly")
    october = month_interest(terms, 2026, 10, D("1000"))
    assert not october.posts and october.posted == 0 and october.carry.accrued == D("31")
    november = month_interest(terms, 2026, 11, D("1000"), carry=october.carry)
    assert not november.posts and november.earned == D("30.930000000")
    december = month_interest(terms, 2026, 12, D("1000"), carry=november.carry)
    assert december.earned == D("32.919830000")
    assert december.posts and december.posted == D("94.85")
    assert december.carry == Carry(D(0), D("-0.000170000"))


def test_annual_posting_posts_only_in_december() -> None:
    terms = Terms(annual_rate=D("0.05"), posting="annually")
    assert not month_interest(terms, 2026, 11, D("1000")).posts
    assert month_interest(terms, 2026, 12, D("1000")).posts


def test_average_daily_balance_with_tiers() -> None:
    # 0 on days 1..10, 3000 on days 11..30; tier: from 2500 the rate is 7.3 % instead of 3.65 %.
    # Daily balance: 20 x (3000 x 0.073 / 365 = 0.6) = 12.00.
    # Average: 60000 / 30 = 2000 < 2500 -> 3.65 %: 30 x (2000 x 0.0365 / 365 = 0.2) = 6.00.
    tiers = (Tier(D("2500"), D("0.073")),)
    changes = [(date(2026, 11, 11), D("3000"))]
    daily = Terms(annual_rate=D("0.0365"), tiers=tiers)
    average = Terms(annual_rate=D("0.0365"), tiers=tiers, method="average_daily_balance")
    assert month_interest(daily, 2026, 11, D("3000"), changes).posted == D("12.00")
    assert month_interest(average, 2026, 11, D("3000"), changes).posted == D("6.00")


def test_residue_carried_forward() -> None:
    # November on 100.00: 30 x 0.013698630 = 0.4109589 -> 0.41, residue 0.0009589.
    # December on 100.41: 100.41 x 0.05 / 365 = 0.01375479452.. -> 0.013754795; x 31 =
    # 0.426398645; + 0.0009589 = 0.427357545 -> 0.43. Posted 0.84 = contractual 0.8373.. rounded.
    nov = month_interest(FIVE, 2026, 11, D("100.00"))
    assert nov.posted == D("0.41") and nov.carry.residue == D("0.000958900")
    dec = month_interest(FIVE, 2026, 12, D("100.41"), carry=nov.carry)
    assert dec.earned == D("0.426398645") and dec.posted == D("0.43")
    assert nov.posted + dec.posted == (nov.earned + dec.earned).quantize(D("0.01"))


def test_day_balances_step_back_from_the_closing_balance() -> None:
    balances = day_balances(
        date(2026, 11, 1), date(2026, 11, 3), D(30), [(date(2026, 11, 2), D(20))]
    )
    assert balances == [D(10), D(30), D(30)]


def test_journal_hash_is_the_stored_canonical_form() -> None:
    """Every stored journal's hash was computed over this exact JSON; `ledger verify` recomputes
    it, so the form may never drift, whichever path (engine or batch) wrote the journal."""
    lines = [(5, 900, 411, "USD"), (900, 7, 62, "USD"), (5, 901, 1, "KES")]
    models = [PostingLine(debit_account_id=d, credit_account_id=c, amount_minor=a, currency=k)
              for d, c, a, k in lines]  # fmt: skip
    value_date = date(2026, 11, 30)
    canonical = (
        b'{"kind":"interest","value_date":"2026-11-30","reverses":null,'
        b'"postings":[[5,900,411,"USD"],[900,7,62,"USD"],[5,901,1,"KES"]]}'
    )
    assert content_hash("interest", value_date, lines) == hashlib.sha256(canonical).hexdigest()
    assert content_hash("interest", value_date, as_lines(models)) == content_hash(
        "interest", value_date, lines
    )
    assert content_hash("interest", value_date, lines, "j-1") != content_hash(
        "interest", value_date, lines
    )


def test_balance_runs_agree_with_day_by_day_balances() -> None:
    start, end = date(2026, 11, 1), date(2026, 11, 30)
    changes = [(date(2026, 11, d), D(d * 10 - 55)) for d in (1, 3, 3, 9, 17, 30)]
    changes.append((date(2026, 12, 2), D(999)))  # after the month: ignored
    for opened, closed in [(None, None), (date(2026, 11, 3), None), (date(2026, 11, 5), date(2026, 11, 20)), (date(2026, 11, 30), None)]:  # fmt: skip
        days = day_balances(start, end, D(1000), changes)
        expected = [
            b for i, b in enumerate(days)
            if (opened is None or i + 1 >= opened.day) and (closed is None or i + 1 <= closed.day)
        ]  # fmt: skip
        runs = balance_runs(start, end, D(1000), changes, opened, closed)
        assert [b for b, n in runs for _ in range(n)] == expected
