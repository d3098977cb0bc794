"""`bankflow` command line: schema migrations, institution set-up, staff users, ledger checks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.db import in_transaction, make_engine, make_sessionmaker
from activities.ledger.chart import ensure_chart, ensure_currency
from activities.ledger.verify import verify_ledger
from activities.migrate import upgrade
from activities.seed.demo import BRANCH_CODE as DEMO_BRANCH
from activities.seed.demo import demo_user, seed_demo, seed_kyc_applicant
from activities.staff import create_staff_user
from activities.watchlist import parse_csv, replace_watchlist
from api import access_matrix
from api.auth import issue_token
from api.kyc_start import policy as kyc_policy
from api.kyc_start import start_options as kyc_start_options
from cli.daily_loan_job import daily_job
from cli.loans import loans_app
from cli.schedules import month_end_app, schedules_app
from schemas import temporal
from schemas.errors import BankflowError
from schemas.kyc import KycInput
from schemas.settings import InsecureSettingsError, get_settings
from workflows.kyc_review import KycReviewWorkflow

T = TypeVar("T")

app = typer.Typer(help="bankflow: core-banking process engine", no_args_is_help=True)
db_app = typer.Typer(help="Database schema", no_args_is_help=True)
seed_app = typer.Typer(help="Demo data", no_args_is_help=True)
users_app = typer.Typer(help="Staff users", no_args_is_help=True)
ledger_app = typer.Typer(help="The double-entry ledger", no_args_is_help=True)
chart_app = typer.Typer(help="Chart of accounts", no_args_is_help=True)
for sub, name in (
    (db_app, "db"),
    (seed_app, "seed"),
    (users_app, "users"),
    (ledger_app, "ledger"),
    (chart_app, "chart"),
):
    app.add_typer(sub, name=name)
loans_app.command("daily-job")(daily_job)
app.add_typer(loans_app, name="loans")
app.add_typer(schedules_app, name="schedules")
app.add_typer(month_end_app, name="month-end")

console = Console()
err_console = Console(stderr=True)


def _in_transaction(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """One transaction against the configured database, with business errors as exit code 1."""

    async def run() -> T:
        engine = make_engine(get_settings(), pool_size=2)
        try:
            return await in_transaction(make_sessionmaker(engine), work)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except BankflowError as exc:
        err_console.print(f"[red]{exc.code.value}[/red]: {exc.detail}")
        raise typer.Exit(1) from exc


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration as the owning role (BANKFLOW_MIGRATION_DATABASE_URL), then
    grant the runtime role (the user of BANKFLOW_DATABASE_URL) what API and worker need."""
    settings = get_settings()
    upgrade(settings.migration_sqlalchemy_url, runtime_role=settings.runtime_role)
    console.print("database schema is up to date")


@chart_app.command("init")
def chart_init(
    currency: Annotated[str, typer.Option(help="ISO 4217 code, e.g. KES")],
    scale: Annotated[int | None, typer.Option(help="decimal places; default ISO 4217")] = None,
) -> None:
    """Create the default chart of accounts in a currency; existing accounts are left alone."""

    async def work(session: AsyncSession) -> dict[str, int]:
        await ensure_currency(session, currency.upper(), scale)
        return await ensure_chart(session, currency.upper())

    accounts = _in_transaction(work)
    console.print(f"chart of accounts in {currency.upper()}: {len(accounts)} GL accounts")


@seed_app.command("demo")
def seed_demo_command(
    tokens_file: Annotated[
        Path | None, typer.Option(help="also write {username: token} here")
    ] = None,
) -> None:
    """Seed the demo institution and print each demo staff user with a bearer token."""
    settings = get_settings()
    try:
        settings.refuse_insecure()  # the tokens printed must be signed with a real key
    except InsecureSettingsError as exc:
        err_console.print(f"[red]refusing to sign demo tokens[/red]: {exc}")
        raise typer.Exit(2) from exc
    users = _in_transaction(seed_demo)
    tokens = {u.username: issue_token(settings, user_id=u.user_id) for u in users}
    table = Table("username", "roles", "password", title="demo staff users")
    for u in users:
        table.add_row(u.username, ",".join(sorted(u.roles)), u.password)
    console.print(table)
    for username, token in tokens.items():
        print(f"{username}: {token}")  # whole, unwrapped: made to be copied
    if tokens_file:
        tokens_file.parent.mkdir(parents=True, exist_ok=True)
        tokens_file.write_text(json.dumps(tokens, indent=2))
        tokens_file.chmod(0o600)


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Option()],
    full_name: Annotated[str, typer.Option()],
    role: Annotated[list[str], typer.Option(help="repeat for several roles")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="BANKFLOW_NEW_USER_PASSWORD",
        ),
    ],
    email: Annotated[str | None, typer.Option()] = None,
    branch: Annotated[str | None, typer.Option(help="branch code")] = None,
) -> None:
    """Create a staff user with an argon2-hashed password and the given roles."""

    async def work(session: AsyncSession) -> int:
        user = await create_staff_user(
            session,
            username=username,
            full_name=full_name,
            password=password,
            roles=role,
            email=email,
            branch_code=branch,
        )
        return user.id

    user_id = _in_transaction(work)
    console.print(f"created staff user {username} (id {user_id}) with roles {', '.join(role)}")


@ledger_app.command("verify")
def ledger_verify(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable report")] = False,
) -> None:
    """Prove the ledger's invariants; exit status 1 on any breach."""

    report = _in_transaction(verify_ledger)
    if as_json:
        print(report.model_dump_json(indent=2))
    else:
        for check in report.checks:
            mark = "[green]ok[/green]    " if check.ok else "[red]BREACH[/red]"
            console.print(f"{mark} {check.name}" + ("" if check.ok else f": {check.detail}"))
        console.print("ledger verified" if report.ok else "[red]ledger invariants breached[/red]")
    if not report.ok:
        raise typer.Exit(1)


# KYC: the screening watch list, and the demo case waiting for a reviewer ---------------------
watchlist_app = typer.Typer(help="Watch list for KYC screening", no_args_is_help=True)
app.add_typer(watchlist_app, name="watchlist")


@watchlist_app.command("import")
def watchlist_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
) -> None:
    """Replace the watch list with FILE.csv (header: full_name[,date_of_birth,source,reference])."""
    text = file.read_text(encoding="utf-8-sig")

    async def work(session: AsyncSession) -> int:
        return await replace_watchlist(session, parse_csv(text))

    count = _in_transaction(work)
    console.print(f"watch list replaced: {count} entries")


@seed_app.command("kyc-case")
def seed_kyc_case() -> None:
    """Start the demo applicant's KYC case (after `seed demo`; Temporal must be up). It waits for
    a kyc_reviewer: kyc1 can decide it. Idempotent: a member who had a case is left alone."""
    settings = get_settings()
    number, member_id, needed = _in_transaction(seed_kyc_applicant)
    if not needed:
        console.print(f"demo KYC applicant {number} already has a case")
        return
    submitter = _in_transaction(lambda s: demo_user(s, "teller1"))
    inp = KycInput(
        case_number=f"{number}-1",
        member_id=member_id,
        member_number=number,
        branch=DEMO_BRANCH,
        submitted_by_id=submitter.user_id,
        submitted_by=submitter.username,
        policy=kyc_policy(settings),
    )

    async def start() -> None:
        client = await temporal.connect(settings, short_lived=True)
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await client.start_workflow(
                KycReviewWorkflow.run, inp, **kyc_start_options(inp, settings)
            )

    asyncio.run(start())
    console.print(f"demo KYC case {inp.case_number} started: it waits for a kyc_reviewer")


@app.command("access-matrix")
def print_access_matrix() -> None:
    """Print the access matrix (roles x route groups) as README's Security section shows it."""
    typer.echo(access_matrix.markdown(), nl=False)


def main() -> None:
    """The `bankflow` entry point. It leaves without interpreter finalization: a Temporal client's
    native threads can still be releasing the GIL while the interpreter tears down, which kills
    the process with "Fatal Python error: PyGILState_Release" after its work succeeded."""
    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
