"""DailyLoanJob on the real stack: arrears ageing, penalties with their rounding residue carried
day to day, interest accrual for accrual products, cash products charging without posting, a
re-run posting nothing, and a missed date caught up to the same books as running every day.

Worked numbers: a 1,200.00 loan at 12 % over 12 months disbursed 2026-01-01 owes 106.62 on
2026-02-01 (94.62 principal, 12.00 interest). At a 36.5 % penalty rate a day in arrears costs
106.62 * 0.365 / 365 = 0.10662 on that installment alone, i.e. 10.662 minor units.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.db import in_transaction
from activities.ledger.chart import (
    INTEREST_INCOME,
    INTEREST_RECEIVABLE,
    PENALTIES_RECEIVABLE,
    PENALTY_INCOME,
)
from activities.reads.loan_statement import payoff_quote
from activities.repayments import post_repayment
from schemas.repayments import RepaymentRequest
from tests.daily_loan_job.conftest import Stack
from tests.workflows.conftest import record_history

JAN1 = date(2026, 1, 1)
RATE = "36.5"


async def loan_row(stack: Stack, loan_id: int) -> dict[str, object]:
    row = await stack.scalar("SELECT row_to_json(l) FROM loans l WHERE id = :i", i=loan_id)
    assert isinstance(row, dict)
    return row


async def test_arrears_and_penalty_residue_on_a_cash_product(stack: Stack) -> None:
    product = await stack.product(penalty_rate=RATE, accounting="cash")
    loan = await stack.active_loan(product, JAN1)
    [first, second, *_] = await stack.installments(loan)
    assert (first.principal_minor, first.interest_minor) == (9462, 1200)

    # Due on 02-01 and not paid: in arrears from the end of 02-02 on, not on the due date.
    await stack.run(date(2026, 2, 1))
    row = await loan_row(stack, loan)
    assert (row["days_past_due"], row["arrears_bucket"], row["overdue_since"]) == (
        0,
        "current",
        None,
    )

    expected = {  # date -> (penalty_exact, installment 1 penalty charged so far)
        date(2026, 2, 2): ("10.662", 11),  # 10.662 rounds to 11: residue -0.338
        date(2026, 2, 3): ("21.324", 21),  # charged 10 today, the residue carried
        date(2026, 2, 4): ("31.986", 32),  # charged 11
    }
    for day, (exact, charged) in expected.items():
        await stack.run(day)
        row = await loan_row(stack, loan)
        assert Decimal(str(row["penalty_exact"])) == Decimal(exact)
        assert (await stack.installments(loan))[0].penalty_minor == charged
        assert row["days_past_due"] == (day - date(2026, 2, 1)).days
        assert (row["arrears_bucket"], row["overdue_since"]) == ("1-30", "2026-02-01")
        assert row["serviced_through"] == day.isoformat()

    # Four weeks missed: 02-05..03-01 one installment overdue (25 days x 10.662), then from
    # 03-02 two (4 days x 21.324): 31.986 + 266.55 + 85.296 = 383.832, charged 384 in all.
    await stack.run(date(2026, 3, 5))
    row = await loan_row(stack, loan)
    assert Decimal(str(row["penalty_exact"])) == Decimal("383.832")
    [first, second, *_] = await stack.installments(loan)
    assert (first.penalty_minor, second.penalty_minor) == (384, 0)
    assert (row["days_past_due"], row["arrears_bucket"]) == (32, "31-60")
    # Cash accounting: charged on the installment, nothing booked until it is paid.
    assert row["penalty_receivable_minor"] == 0 and row["interest_receivable_minor"] == 0
    assert await stack.journals() == 0
    assert await stack.balance(PENALTIES_RECEIVABLE.number) == 0
    assert await stack.transactions(loan, "penalty") == []
    await stack.verify()


async def test_accrual_product_posts_interest_and_penalties_once(stack: Stack) -> None:
    product = await stack.product(penalty_rate=RATE, accounting="accrual")
    loan = await stack.active_loan(product, JAN1)

    # 10 of January's 31 days: 12.00 * 10 / 31 = 3.87096... -> 387 minor units earned.
    handle = await stack.start(date(2026, 1, 11))
    first = await handle.result()
    await record_history(handle, "daily_loan_job_accrued")
    assert first.accrual_minor == {"USD": 387} and first.penalty_minor == {}
    assert await stack.balance(INTEREST_RECEIVABLE.number) == 387
    assert await stack.balance(INTEREST_INCOME.number) == -387

    # 02-03: all of installment 1 (1200) and 2 of February's 28 days of installment 2
    # (1105 * 2 / 28 = 78.93 -> 79): 1279 earned, 892 more; two days in arrears: 21 penalty.
    day = date(2026, 2, 3)
    second = await stack.run(day)
    assert second.accrual_minor == {"USD": 892} and second.penalty_minor == {"USD": 21}
    row = await loan_row(stack, loan)
    assert row["interest_recognized_minor"] == row["interest_receivable_minor"] == 1279
    assert row["penalty_receivable_minor"] == 21
    assert await stack.balance(INTEREST_RECEIVABLE.number) == 1279
    assert await stack.balance(INTEREST_INCOME.number) == -1279
    assert await stack.balance(PENALTIES_RECEIVABLE.number) == 21
    assert await stack.balance(PENALTY_INCOME.number) == -21
    assert [(t.value_date, t.amount_minor) for t in await stack.transactions(loan, "accrual")] == [
        (date(2026, 1, 11), 387),
        (day, 892),
    ]
    [penalty] = await stack.transactions(loan, "penalty")
    assert (penalty.value_date, penalty.penalty_minor, penalty.amount_minor) == (day, 21, 21)
    assert await stack.journals() == 2
    await stack.verify()

    # The same date again, under another workflow id: nothing is posted, which the summary says
    # beside the date's totals (read from the books, so the same); the balances are the same.
    assert (second.run_accrual_minor, second.run_penalty_minor) == ({"USD": 892}, {"USD": 21})
    handle = await stack.start(day, run="-again")
    again = await handle.result()
    await record_history(handle, "daily_loan_job_rerun")
    assert (again.run_accrual_minor, again.run_penalty_minor) == ({}, {})
    assert again == second.model_copy(update={"run_accrual_minor": {}, "run_penalty_minor": {}})
    assert await stack.journals() == 2
    assert await stack.balance(INTEREST_RECEIVABLE.number) == 1279
    assert await stack.balance(PENALTIES_RECEIVABLE.number) == 21
    assert await loan_row(stack, loan) == row
    # A backfill of an earlier date, already covered by 02-03, posts nothing either.
    await stack.run(date(2026, 1, 20))
    assert await stack.journals() == 2 and await loan_row(stack, loan) == row
    await stack.verify()


async def portfolio(stack: Stack) -> None:
    accrual = await stack.product(penalty_rate=RATE, accounting="accrual")
    cash = await stack.product(penalty_rate="20", accounting="cash")
    await stack.active_loan(accrual, JAN1)
    await stack.active_loan(accrual, date(2026, 3, 15), principal="5000.00", repayments=6)
    await stack.active_loan(cash, date(2026, 2, 10), principal="700.00", repayments=4)


async def test_a_batch_journal_posts_a_line_per_currency_and_kind(stack: Stack) -> None:
    """Both sides of a day's postings are GL accounts, so a batch journal carries one line per
    currency and kind (not one per loan); what each loan was charged stays in loan_transactions,
    one row per loan and kind pointing at that journal, and those rows sum to its lines."""
    await portfolio(stack)  # two accrual loans in arrears on 04-20, one cash loan
    await stack.run(date(2026, 4, 20))
    [journal] = await stack.scalar(
        "SELECT array_agg(id) FROM journals WHERE kind = 'loan_servicing'"
    )
    lines = await stack.scalar(
        "SELECT json_agg(json_build_array(debit_account_id, credit_account_id, amount_minor, "
        "currency) ORDER BY line) FROM postings WHERE journal_id = :j",
        j=journal,
    )
    rows = await stack.scalar(
        "SELECT json_object_agg(kind, json_build_array(n, amount)) FROM (SELECT kind, "
        "count(*) AS n, sum(amount_minor) AS amount FROM loan_transactions "
        "WHERE journal_id = :j GROUP BY kind) x",
        j=journal,
    )
    assert rows["penalty"][0] == rows["accrual"][0] == 2
    assert lines == [
        [stack.chart[PENALTIES_RECEIVABLE.number], stack.chart[PENALTY_INCOME.number],
         rows["penalty"][1], "USD"],
        [stack.chart[INTEREST_RECEIVABLE.number], stack.chart[INTEREST_INCOME.number],
         rows["accrual"][1], "USD"],
    ]  # fmt: skip
    assert await stack.balance(INTEREST_RECEIVABLE.number) == rows["accrual"][1]
    assert await stack.balance(PENALTY_INCOME.number) == -rows["penalty"][1]
    await stack.verify()


async def test_missed_dates_caught_up_equal_running_every_day(stack: Stack, twin: Stack) -> None:
    await portfolio(stack)
    await portfolio(twin)
    first, last = date(2026, 4, 10), date(2026, 4, 20)
    day = first
    while day <= last:
        await stack.run(day)
        day += timedelta(days=1)
    await twin.run(first)  # then ten days missed; one loan a batch, one batch a run
    handle = await twin.start(last, batch_size=1, batches_per_run=1)
    summary = await handle.result()
    await record_history(handle, "daily_loan_job_continued")
    assert summary.loans == 3
    assert await twin.books() == await stack.books()
    # one journal a run with anything to post; the catch-up, a loan a batch, posts for the two
    # accrual loans (the cash loan charges its installment and posts nothing)
    assert await stack.journals() == 11 and await twin.journals() == 1 + 2
    await stack.verify()
    await twin.verify()


async def test_a_day_not_over_is_refused(stack: Stack) -> None:
    product = await stack.product(penalty_rate=RATE)
    await stack.active_loan(product, JAN1)
    with pytest.raises(WorkflowFailureError) as failed:
        await stack.run(date.today())
    assert isinstance(failed.value.cause, ApplicationError)
    assert failed.value.cause.type == "ValidationError"
    assert await stack.scalar("SELECT count(*) FROM loans WHERE serviced_through IS NOT NULL") == 0


async def test_a_late_entered_payoff_takes_back_interest_accrued_beyond_its_date(
    stack: Stack,
) -> None:
    """The job has accrued through 02-03; a payoff dated 02-01 is entered afterwards. Interest
    earned to 02-01 is installment 1's 12.00 only, so the 0.79 accrued for February is written
    back out of income; the receivables end at zero and income is what the member paid."""
    product = await stack.product(penalty_rate=RATE, accounting="accrual")
    loan_id = await stack.active_loan(product, JAN1)
    await stack.run(date(2026, 2, 3))
    number = await stack.scalar("SELECT loan_number FROM loans WHERE id = :id", id=loan_id)
    on = date(2026, 2, 1)
    async with stack.sessions() as s:
        quote = await payoff_quote(s, number, on)
    req = RepaymentRequest(
        workflow_id=f"repayment-{number}-late",
        loan_number=number,
        amount_minor=int(quote.amount.replace(".", "")),
        source="cash",
        value_date=on,
        at=datetime(2026, 2, 4, tzinfo=UTC),
        actor="teller1",
    )
    result = await in_transaction(stack.sessions, lambda s: post_repayment(s, req))
    assert result.closed and (result.interest_minor, result.penalty_minor) == (1200, 21)
    row = await loan_row(stack, loan_id)
    assert row["interest_receivable_minor"] == row["penalty_receivable_minor"] == 0
    assert row["interest_recognized_minor"] == 1200
    assert await stack.balance(INTEREST_RECEIVABLE.number) == 0
    assert await stack.balance(PENALTIES_RECEIVABLE.number) == 0
    assert await stack.balance(INTEREST_INCOME.number) == -1200
    assert await stack.balance(PENALTY_INCOME.number) == -21
    await stack.verify()
