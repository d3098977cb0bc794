"""MonthEndInterest on the real stack: postings and balances, the ledger's invariants, the stored
and e-mailed summary, exactly once (re-run, retried batch), continue-as-new, and refusals."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.db import in_transaction
from activities.ledger.chart import INTEREST_EXPENSE, WITHHOLDING_TAX
from activities.month_end_batch import post_interest_batch
from activities.reads.accounts import statement
from schemas.month_end import BatchRequest, Stage
from tests.month_end.conftest import FINANCE, Stack
from tests.workflows.conftest import record_history
from workflows.month_end_interest import MonthEndInterestWorkflow

PERIOD = "2026-10"  # 31 days
OCT = date(2026, 10, 1)


async def test_posts_a_month_of_interest_once(stack: Stack) -> None:
    product = await stack.product(
        annual_rate="0.0365", withholding_tax_rate="0.15", min_balance="10.00"
    )
    # 3650.00 all month: 0.365 a day x 31 = 11.315 -> 11.32 (half-even on ...315000000 -> .32)
    steady = await stack.account(product, date(2026, 9, 1), [(date(2026, 9, 1), 365000)])
    # opened on the 17th with 1000.00: 15 days x 0.1 = 1.50
    late = await stack.account(product, date(2026, 10, 17), [(date(2026, 10, 17), 100000)])
    # 5.00 (below the 10.00 minimum) until 500.00 arrives on the 22nd: 10 days x 0.05 = 0.50
    low = await stack.account(
        product, date(2026, 9, 1), [(date(2026, 9, 1), 500), (date(2026, 10, 22), 49500)]
    )
    # a deposit dated after the period does not count: 1000.00 all month = 3.10
    after = await stack.account(
        product, date(2026, 9, 1), [(date(2026, 9, 1), 100000), (date(2026, 11, 3), 900000)]
    )
    handle = await stack.start(PERIOD)
    summary = await handle.result()
    await record_history(handle, "month_end_posted")

    # tax at 15 %, half-even: 1.698 -> 1.70, 0.225 -> 0.22, 0.075 -> 0.08, 0.465 -> 0.46
    expected = {steady: (1132, 170), late: (150, 22), low: (50, 8), after: (310, 46)}
    for account, (gross, tax) in expected.items():
        row = await stack.scalar(
            "SELECT posted_minor || '/' || tax_minor FROM interest_postings "
            "WHERE account_id = :a AND period = :p", a=account, p=PERIOD)  # fmt: skip
        assert row == f"{gross}/{tax}"
    assert await stack.balance(steady) == 365000 + 1132 - 170
    assert await stack.balance(after) == 1000000 + 310 - 46
    assert summary.accounts == 4 and summary.status == "completed"
    [usd] = summary.totals
    assert (usd.interest_minor, usd.tax_minor, usd.net) == (1642, 246, "13.96")
    assert (await stack.verify()).ok
    progress = await handle.query(MonthEndInterestWorkflow.progress)
    assert progress.stage == Stage.COMPLETED and progress.accounts_done == 4
    assert progress.interest_minor == {"USD": 1642}
    mails = await stack.scalar(
        "SELECT count(*) FROM notifications WHERE process_id = :w AND recipient = :r "
        "AND template = 'month_end_summary'", w=handle.id, r=FINANCE)  # fmt: skip
    assert mails == 1

    postings = await stack.scalar("SELECT count(*) FROM postings")
    again = await stack.start(PERIOD)
    rerun = await again.result()
    await record_history(again, "month_end_already_done")
    assert summary.this_run == summary.totals and rerun.this_run == []  # posted nothing
    assert rerun.model_copy(update={"this_run": None}) == summary.model_copy(
        update={"this_run": None}
    )
    assert await stack.scalar("SELECT count(*) FROM postings") == postings
    assert (await again.query(MonthEndInterestWorkflow.progress)).stage == Stage.ALREADY_DONE


async def test_a_retried_batch_posts_nothing(stack: Stack) -> None:
    product = await stack.product(annual_rate="0.05")
    first = await stack.account(product, date(2026, 9, 1), [(date(2026, 9, 1), 100000)])
    last = await stack.account(product, date(2026, 9, 1), [(date(2026, 9, 1), 200000)])
    req = BatchRequest(period=PERIOD, workflow_id="t", first_account_id=first, last_account_id=last)
    done = await in_transaction(stack.sessions, lambda s: post_interest_batch(s, req, print))
    assert done.posted_now == 2 and done.interest_minor == {"USD": 425 + 849}
    again = await in_transaction(stack.sessions, lambda s: post_interest_batch(s, req, print))
    assert (again.accounts, again.posted_now, again.journal_id) == (2, 0, None)
    assert await stack.balance(first) == 100000 + 425
    assert (await stack.verify()).ok


async def test_continues_as_new_and_carries_progress(stack: Stack) -> None:
    product = await stack.product(annual_rate="0.0365")
    accounts = [
        await stack.account(product, date(2026, 9, 1), [(date(2026, 9, 1), 100000 * (i + 1))])
        for i in range(5)
    ]
    handle = await stack.start(PERIOD, batch_size=2, batches_per_run=1, concurrency=2)
    summary = await handle.result()
    await record_history(handle, "month_end_continued")
    # 1000.00 x 0.0365 / 365 = 0.1 a day: 3.10 per 1000.00, so 3.10 x (1+2+3+4+5)
    assert summary.accounts == 5 and summary.totals[0].interest_minor == 310 * 15
    assert await stack.balance(accounts[4]) == 500000 + 1550
    first_run = stack.client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
    events = [e async for e in first_run.fetch_history_events()]
    assert events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    progress = await stack.client.get_workflow_handle(handle.id).query(
        MonthEndInterestWorkflow.progress
    )
    assert (progress.accounts_done, progress.accounts_total) == (5, 5)
    assert (await stack.verify()).ok


async def test_quarterly_product_accrues_then_posts(stack: Stack) -> None:
    product = await stack.product(annual_rate="0.365", posting="quarterly")
    account = await stack.account(product, date(2026, 6, 1), [(date(2026, 6, 1), 100000)])
    await stack.run("2026-07")
    await stack.run("2026-08")
    assert await stack.balance(account) == 100000  # nothing posted before the quarter ends
    await stack.run("2026-09")
    # 1 a day on 1000: July 31; August 31 x 1.031 = 31.961; September 30 x 1.062961 =
    # 31.88883; posted 94.84983 -> 94.85
    assert await stack.balance(account) == 100000 + 9485
    accrued = await stack.scalar(
        "SELECT accrued FROM interest_postings WHERE account_id = :a AND period = '2026-08'",
        a=account,
    )
    assert accrued == Decimal("62.961")
    assert (await stack.verify()).ok


async def test_refuses_a_period_that_has_not_ended(stack: Stack) -> None:
    with pytest.raises(WorkflowFailureError) as failed:
        await stack.run("2999-01")
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "PeriodNotEnded"
    assert await stack.scalar("SELECT count(*) FROM month_end_runs") == 0


async def test_a_batch_posts_the_net_interest_per_account_and_the_tax_once(stack: Stack) -> None:
    """One posting per account (net interest, expense -> member) and one per batch and currency
    (the tax, expense -> withholding tax payable): half the rows of a gross-and-tax pair per
    account, the same balances, and the statement still shows gross, tax and net."""
    product = await stack.product(annual_rate="0.0365", withholding_tax_rate="0.15")
    steady = await stack.account(product, date(2026, 9, 1), [(date(2026, 9, 1), 365000)])
    other = await stack.account(product, date(2026, 9, 1), [(date(2026, 9, 1), 100000)])
    await stack.run(PERIOD)
    journal = await stack.scalar(
        "SELECT journal_id FROM interest_postings WHERE account_id = :a AND period = :p",
        a=steady, p=PERIOD)  # fmt: skip
    lines = await stack.scalar(
        "SELECT string_agg(CASE WHEN credit_account_id IN (:s, :o) THEN 'member:'"
        " || amount_minor ELSE 'tax:' || amount_minor END, ',' ORDER BY line)"
        " FROM postings WHERE journal_id = :j", s=steady, o=other, j=journal)  # fmt: skip
    # 11.32 gross - 1.70 tax = 9.62; 3.10 - 0.46 = 2.64; tax 1.70 + 0.46 = 2.16
    assert sorted(lines.split(",")) == ["member:264", "member:962", "tax:216"]
    expense, wht = stack.chart[INTEREST_EXPENSE.number], stack.chart[WITHHOLDING_TAX.number]
    assert await stack.scalar(
        "SELECT debit_account_id || '>' || credit_account_id FROM postings"
        " WHERE journal_id = :j AND amount_minor = 216", j=journal) == f"{expense}>{wht}"  # fmt: skip
    assert await stack.balance(steady) == 365000 + 962
    code = await stack.scalar("SELECT code FROM ledger_accounts WHERE id = :a", a=steady)
    async with stack.sessions() as session:
        page = await statement(session, code, date_from=date(2026, 10, 31))
    [line] = page.lines
    assert (line.kind, line.credit, line.debit) == ("interest", "9.62", None)
    assert line.interest is not None
    assert (line.interest.period, line.interest.gross, line.interest.tax, line.interest.net) == (
        PERIOD, "11.32", "1.70", "9.62")  # fmt: skip
    assert (await stack.verify()).ok
