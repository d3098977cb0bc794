"""How a repayment lands in the books: penalty first on an overdue loan, prepayment, overpayment
in cash, insufficient savings, a repeated Idempotency-Key, and an accrual product settling its
receivables first. Real API, Temporal, worker and Postgres; the ledger verifies after each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from activities.db import in_transaction
from activities.ledger import engine as ledger_engine
from activities.ledger.chart import (
    CASH,
    INTEREST_INCOME,
    INTEREST_RECEIVABLE,
    PENALTIES_RECEIVABLE,
    PENALTY_INCOME,
)
from api.routes.repayments import workflow_id
from domain.money import to_major, to_minor
from schemas.ledger import JournalRequest, PostingLine
from tests.api.conftest import Staff
from tests.conftest import CURRENCY
from tests.loans.conftest import LoanKit
from tests.loans.repayment_kit import (
    active_loan,
    balance,
    finished,
    installments,
    key,
    ledger_ok,
    repay,
    repayments_of,
    set_loan,
    set_penalty,
    trail,
)
from tests.workflows.conftest import record_history

TODAY = datetime.now(UTC).date()


def money(minor: int) -> str:
    return to_major(minor, 2)


async def test_an_overdue_installment_pays_its_penalty_first(
    api: AsyncClient, kit: LoanKit, staff: dict[str, Staff]
) -> None:
    loan = await active_loan(
        kit, await kit.staff("loan_officer"), disbursed_on=TODAY - timedelta(days=45)
    )
    first, second = (await installments(kit, loan.loan_id))[:2]
    await set_penalty(kit, loan.loan_id, 1, 5_00)
    penalties = kit.factory.gl(PENALTY_INCOME.number)
    penalties0 = await balance(kit, penalties)
    owed1 = 5_00 + first.interest_minor + first.principal_minor
    r = await repay(api, staff["teller"], loan, money(owed1 + 10_00))
    assert r.status_code == 201, r.text
    paid = r.json()
    assert paid["installments"] == [
        {
            "installment": 1,
            "penalty": "5.00",
            "fee": "0.00",
            "interest": money(first.interest_minor),
            "principal": money(first.principal_minor),
        },
        {
            "installment": 2,
            "penalty": "0.00",
            "fee": "0.00",
            "interest": money(min(10_00, second.interest_minor)),
            "principal": money(max(0, 10_00 - second.interest_minor)),
        },
    ]
    assert await balance(kit, penalties) == penalties0 + 5_00
    rows = await installments(kit, loan.loan_id)
    assert rows[0].penalty_paid_minor == 5_00 and rows[0].completed_on == TODAY
    await ledger_ok(kit)


async def test_a_prepayment_completes_future_installments(
    api: AsyncClient, kit: LoanKit, staff: dict[str, Staff]
) -> None:
    start = TODAY - timedelta(days=3)
    loan = await active_loan(kit, await kit.staff("loan_officer"), disbursed_on=start)
    dues = await installments(kit, loan.loan_id)
    three = sum(d.principal_minor + d.interest_minor for d in dues[:3])
    r = await repay(api, staff["teller"], loan, money(three))
    assert r.status_code == 201, r.text
    assert [p["installment"] for p in r.json()["installments"]] == [1, 2, 3]
    assert r.json()["loan_state"] == "active" and r.json()["interest_waived"] == "0.00"
    rows = await installments(kit, loan.loan_id)
    assert [d.completed_on for d in rows[:4]] == [TODAY, TODAY, TODAY, None]
    assert -(await balance(kit, loan.loan_account_id)) == 1200_00 - sum(
        d.principal_minor for d in dues[:3]
    )
    await ledger_ok(kit)


async def test_an_overpayment_in_cash_goes_to_savings_and_leaves_the_loan_overpaid(
    api: AsyncClient, kit: LoanKit, staff: dict[str, Staff], temporal_client: Client
) -> None:
    loan = await active_loan(
        kit, await kit.staff("loan_officer"), disbursed_on=TODAY - timedelta(days=10)
    )
    teller = staff["teller"]
    quote = (
        await api.get(f"/v1/loans/{loan.loan_number}/payoff-quote", headers=teller.headers)
    ).json()
    cash = kit.factory.gl(CASH.number)
    cash0, savings0 = await balance(kit, cash), await balance(kit, loan.savings_id)
    amount = to_minor(quote["amount"], 2) + 25_00
    r = await repay(api, teller, loan, money(amount), source="cash")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["overpayment"] == "25.00" and body["loan_state"] == "overpaid" and body["closed"]
    assert await balance(kit, cash) == cash0 - amount  # the whole amount came in as cash
    assert await balance(kit, loan.savings_id) == savings0 + 25_00
    assert await balance(kit, loan.loan_account_id) == 0
    state = await kit.loan(loan.loan_id)
    assert (state.state, state.overpaid_minor, state.closed_on) == ("overpaid", 25_00, TODAY)
    assert (await trail(kit, loan.loan_id))[-1] == ("overpaid", "overpaid")
    await finished(temporal_client, body["workflow_id"])
    await ledger_ok(kit)


async def test_more_than_the_payoff_from_savings_takes_the_payoff_and_overpays_nothing(
    api: AsyncClient, kit: LoanKit, staff: dict[str, Staff], temporal_client: Client
) -> None:
    """Issue 12.3: 5,000.00 from savings holding 2,980.00 on a loan whose payoff is 2,000.00
    takes 2,000.00, closes the loan `closed_obligations_met`, and says 3,000.00 was not taken:
    nothing was paid beyond the payoff, so nothing is overpaid."""
    loan = await active_loan(
        kit, await kit.staff("loan_officer"), principal="2000.00", disbursed_on=TODAY,
        savings_minor=980_00,
    )  # fmt: skip
    teller = staff["teller"]
    assert await balance(kit, loan.savings_id) == 2_980_00
    quote = (
        await api.get(f"/v1/loans/{loan.loan_number}/payoff-quote", headers=teller.headers)
    ).json()
    assert quote["amount"] == "2000.00"
    r = await repay(api, teller, loan, "5000.00")
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["loan_state"], body["closed"]) == ("closed_obligations_met", True)
    assert (body["requested"], body["amount"], body["not_taken"], body["overpayment"]) == (
        "5000.00",
        "2000.00",
        "3000.00",
        "0.00",
    )
    assert await balance(kit, loan.savings_id) == 980_00
    assert await balance(kit, loan.loan_account_id) == 0
    state = await kit.loan(loan.loan_id)
    assert (state.state, state.overpaid_minor) == ("closed_obligations_met", 0)
    assert (await trail(kit, loan.loan_id))[-1] == ("closed", "closed_obligations_met")
    statement = (
        await api.get(f"/v1/loans/{loan.loan_number}/statement", headers=teller.headers)
    ).json()
    assert (statement["state"], statement["overpaid"]) == ("closed_obligations_met", "0.00")
    last = statement["transactions"][-1]
    assert (last["amount"], last["overpayment"]) == ("2000.00", "0.00")
    await finished(temporal_client, body["workflow_id"])
    await ledger_ok(kit)


async def test_insufficient_savings_is_refused_and_nothing_changes(
    api: AsyncClient, kit: LoanKit, staff: dict[str, Staff], temporal_client: Client
) -> None:
    # The savings hold only the disbursed 1,200.00; the payoff needs a little more.
    loan = await active_loan(
        kit,
        await kit.staff("loan_officer"),
        disbursed_on=TODAY - 2 * timedelta(days=30),
        savings_minor=0,
    )
    before = [
        (d.principal_paid_minor, d.interest_paid_minor)
        for d in await installments(kit, loan.loan_id)
    ]
    the_key = key()
    r = await repay(api, staff["teller"], loan, "1300.00", headers=the_key)
    assert r.status_code == 422 and r.json()["error"] == "InsufficientFunds", r.text
    assert await balance(kit, loan.savings_id) == 1200_00
    assert -(await balance(kit, loan.loan_account_id)) == 1200_00
    assert await repayments_of(kit, loan.loan_id) == []
    assert [
        (d.principal_paid_minor, d.interest_paid_minor)
        for d in await installments(kit, loan.loan_id)
    ] == before
    assert (await kit.loan(loan.loan_id)).state == "active"
    wid = workflow_id(loan.loan_number, staff["teller"].id, the_key["Idempotency-Key"])
    await finished(temporal_client, wid)
    await record_history(temporal_client.get_workflow_handle(wid), "loan_repayment_declined")
    await ledger_ok(kit)


async def test_the_same_idempotency_key_twice_is_one_repayment(
    api: AsyncClient, kit: LoanKit, staff: dict[str, Staff]
) -> None:
    loan = await active_loan(
        kit, await kit.staff("loan_officer"), disbursed_on=TODAY - timedelta(days=5)
    )
    savings0 = await balance(kit, loan.savings_id)
    same = key()
    first = await repay(api, staff["teller"], loan, "40.00", headers=same)
    again = await repay(api, staff["teller"], loan, "40.00", headers=same)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers.get("Idempotent-Replayed") == "true"
    other = await repay(api, staff["teller"], loan, "41.00", headers=same)
    assert other.status_code == 409 and other.json()["error"] == "IdempotencyKeyConflict"
    assert len(await repayments_of(kit, loan.loan_id)) == 1
    assert await balance(kit, loan.savings_id) == savings0 - 40_00
    await ledger_ok(kit)


async def accrue(kit: LoanKit, loan_id: int, interest: int, penalty: int) -> None:
    """What the daily job books for an accrual product: receivables against income."""
    gl = {
        n: kit.factory.gl(n)
        for n in (
            INTEREST_RECEIVABLE.number,
            INTEREST_INCOME.number,
            PENALTIES_RECEIVABLE.number,
            PENALTY_INCOME.number,
        )
    }
    lines = [
        PostingLine(
            debit_account_id=gl[INTEREST_RECEIVABLE.number],
            credit_account_id=gl[INTEREST_INCOME.number],
            amount_minor=interest,
            currency=CURRENCY,
        ),
        PostingLine(
            debit_account_id=gl[PENALTIES_RECEIVABLE.number],
            credit_account_id=gl[PENALTY_INCOME.number],
            amount_minor=penalty,
            currency=CURRENCY,
        ),
    ]

    async def work(session: AsyncSession) -> None:
        await ledger_engine.post_journal(
            session,
            JournalRequest(
                journal_id=f"test-accrual-{loan_id}",
                kind="loan_accrual",
                value_date=TODAY,
                postings=lines,
            ),
        )

    await in_transaction(kit.sessions, work)
    await set_loan(
        kit,
        loan_id,
        interest_receivable_minor=interest,
        interest_recognized_minor=interest,
        penalty_receivable_minor=penalty,
    )
    await set_penalty(kit, loan_id, 1, penalty)


async def test_an_accrual_product_settles_its_receivables_before_income(
    api: AsyncClient, kit: LoanKit, staff: dict[str, Staff]
) -> None:
    loan = await active_loan(
        kit,
        await kit.staff("loan_officer"),
        disbursed_on=TODAY - timedelta(days=40),
        product={"accounting": "accrual"},
    )
    first = (await installments(kit, loan.loan_id))[0]
    await accrue(kit, loan.loan_id, interest=3_00, penalty=2_00)
    gl = {
        n: kit.factory.gl(n)
        for n in (
            INTEREST_RECEIVABLE.number,
            INTEREST_INCOME.number,
            PENALTIES_RECEIVABLE.number,
            PENALTY_INCOME.number,
        )
    }
    before = {n: await balance(kit, a) for n, a in gl.items()}
    r = await repay(api, staff["teller"], loan, money(2_00 + first.interest_minor))
    assert r.status_code == 201, r.text
    assert r.json()["penalty"] == "2.00" and r.json()["interest"] == money(first.interest_minor)
    after = {n: await balance(kit, a) for n, a in gl.items()}
    # Receivables (assets) are credited what was accrued; income only takes the rest.
    assert after[PENALTIES_RECEIVABLE.number] - before[PENALTIES_RECEIVABLE.number] == 2_00
    assert after[PENALTY_INCOME.number] == before[PENALTY_INCOME.number]
    assert after[INTEREST_RECEIVABLE.number] - before[INTEREST_RECEIVABLE.number] == 3_00
    assert after[INTEREST_INCOME.number] - before[INTEREST_INCOME.number] == (
        first.interest_minor - 3_00
    )
    state = await kit.loan(loan.loan_id)
    assert (state.interest_receivable_minor, state.penalty_receivable_minor) == (0, 0)
    assert state.interest_recognized_minor == first.interest_minor
    await ledger_ok(kit)
