"""`bankflow loans schedule`: the repayment-schedule calculator on the command line, offline.

A contract other tools rely on: the flags, their defaults, the `--json` shape (the same as
`POST /v1/loans/schedule-preview`), and exit status 2 with one line on stderr for terms that
make no schedule. The currency's scale is its ISO 4217 exponent unless `--scale` says otherwise.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from activities.ledger.chart import ISO_CURRENCIES
from domain.schedule import ScheduleError, generate_schedule
from schemas.schedule import SchedulePreviewRequest, ScheduleView

BAD_TERMS = 2

loans_app = typer.Typer(help="Loans", no_args_is_help=True)


def _fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(BAD_TERMS)


def _one_line(exc: ValidationError) -> str:
    def where(error: Any) -> str:
        return "--" + "-".join(str(p) for p in error["loc"]).replace("_", "-")

    return "; ".join(f"{where(e)}: {e['msg']}" for e in exc.errors())


def _date(value: str | None, flag: str) -> date | None:
    try:
        return None if value is None else date.fromisoformat(value)
    except ValueError:
        _fail(f"{flag}: {value!r} is not a date (YYYY-MM-DD)")


@loans_app.command("schedule")
def schedule(
    principal: Annotated[str, typer.Option(help="major units")] = "1000",
    annual_rate: Annotated[str, typer.Option(help="nominal, percent per year")] = "12",
    repayments: Annotated[int, typer.Option()] = 12,
    every: Annotated[int, typer.Option(help="repay every N frequency units")] = 1,
    frequency: Annotated[str, typer.Option(help="days, weeks or months")] = "months",
    interest_method: Annotated[str, typer.Option(help="declining_balance or flat")] = (
        "declining_balance"
    ),
    amortization: Annotated[str, typer.Option(help="equal_installments or equal_principal")] = (
        "equal_installments"
    ),
    interest_period: Annotated[str, typer.Option(help="same_as_repayment or daily")] = (
        "same_as_repayment"
    ),
    days_in_year: Annotated[str, typer.Option(help="actual, 360, 364 or 365")] = "actual",
    days_in_month: Annotated[str, typer.Option(help="actual or 30")] = "actual",
    disbursed_on: Annotated[str | None, typer.Option(help="YYYY-MM-DD; default today")] = None,
    first_repayment_on: Annotated[
        str | None, typer.Option(help="YYYY-MM-DD; default one period after disbursement")
    ] = None,
    currency: Annotated[str, typer.Option(help="ISO 4217 code")] = "USD",
    scale: Annotated[int | None, typer.Option(help="currency decimals; default ISO 4217")] = None,
    installment_multiple: Annotated[str, typer.Option(help="major units; 0 = none")] = "0",
    rounding: Annotated[
        str, typer.Option(help="HALF_EVEN, HALF_UP, HALF_DOWN, UP, DOWN, CEILING or FLOOR")
    ] = "HALF_EVEN",
    grace_principal: Annotated[int, typer.Option(help="interest-only periods")] = 0,
    grace_interest_payment: Annotated[int, typer.Option(help="periods interest is deferred")] = 0,
    grace_interest_charged: Annotated[int, typer.Option(help="interest-free periods")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable schedule")] = False,
) -> None:
    """Print the repayment schedule of a loan, as Apache Fineract's classic generator computes it."""
    raw = {
        "principal": principal,
        "annual_rate": annual_rate,
        "repayments": repayments,
        "every": every,
        "frequency": frequency,
        "interest_method": interest_method,
        "amortization": amortization,
        "interest_period": interest_period,
        "days_in_year": days_in_year,
        "days_in_month": days_in_month,
        "disbursed_on": _date(disbursed_on, "--disbursed-on"),
        "first_repayment_on": _date(first_repayment_on, "--first-repayment-on"),
        "currency": currency.upper(),
        "installment_multiple": installment_multiple,
        "rounding": rounding.upper().removeprefix("ROUND_"),
        "grace_principal": grace_principal,
        "grace_interest_payment": grace_interest_payment,
        "grace_interest_charged": grace_interest_charged,
    }
    try:
        request = SchedulePreviewRequest.model_validate(raw)
    except ValidationError as exc:
        _fail(_one_line(exc))
    if scale is None:
        if request.currency not in ISO_CURRENCIES:
            _fail(f"--currency: no ISO 4217 scale known for {request.currency}; give --scale")
        scale = ISO_CURRENCIES[request.currency][1]
    if not 0 <= scale <= 9:
        _fail("--scale must be between 0 and 9")
    try:
        result = generate_schedule(request.terms(scale, datetime.now(UTC).date()))
    except ScheduleError as exc:
        _fail(str(exc))
    view = ScheduleView.of(result, request.currency)
    if as_json:
        print(json.dumps(view.model_dump(mode="json")))
    else:
        _print_table(view)


def _print_table(view: ScheduleView) -> None:
    table = Table("#", "due date", "principal", "interest", "total", "balance")
    table.title = f"repayment schedule ({view.currency})"
    for i in view.installments:
        table.add_row(
            str(i.number), i.due_date.isoformat(), i.principal, i.interest, i.total, i.balance
        )
    table.add_row(
        "", "total", view.total_principal, view.total_interest, view.total_due, "", end_section=True
    )
    for column in table.columns[2:]:
        column.justify = "right"
    Console().print(table)
