"""The daily loan job's Temporal Schedule, and running a business date by hand.

The schedule fires at 01:00 every day in the institution's time zone and services yesterday. A
firing while the previous day's run is still going waits for it (BUFFER_ONE) rather than being
skipped, so every date gets its own portfolio-at-risk snapshot; a missed firing is caught up
within 7 days (and a day nobody ran is caught up by the next run anyway: loans are serviced
from their `serviced_through`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    WorkflowFailureError,
)

from cli.follow import start_or_join
from domain.money import to_major
from schemas import temporal
from schemas.daily_loan_job import (
    WORKFLOW_PREFIX,
    DailyJobInput,
    DailyJobProgress,
    DailyJobSummary,
)
from schemas.settings import Settings, get_settings
from workflows.daily_loan_job import DailyLoanJobWorkflow

CATCHUP_WINDOW = timedelta(days=7)


def daily_loan_job_schedule(settings: Settings, prefix: str = "") -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            DailyLoanJobWorkflow.run,
            DailyJobInput(timezone=settings.institution_timezone),
            id=f"{prefix}daily-loan-job-scheduled",
            task_queue=settings.batch_task_queue,
        ),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(
                    second=[ScheduleRange(0)], minute=[ScheduleRange(0)], hour=[ScheduleRange(1)]
                )
            ],
            time_zone_name=settings.institution_timezone,
        ),
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.BUFFER_ONE, catchup_window=CATCHUP_WINDOW
        ),
    )


async def run_day(
    client: Client,
    settings: Settings,
    day: date,
    on_progress: Callable[[DailyJobProgress], None] = lambda _: None,
    *,
    poll: timedelta = timedelta(milliseconds=500),
    **options: int,
) -> DailyJobSummary:
    """Start (or join the running) job of one business date and wait for it. A date already
    serviced runs again and posts nothing; it rewrites the date's PAR snapshot."""
    return await start_or_join(
        client,
        DailyLoanJobWorkflow.run,
        DailyJobInput(business_date=day, timezone=settings.institution_timezone, **options),
        workflow_id=WORKFLOW_PREFIX + day.isoformat(),
        task_queue=settings.batch_task_queue,
        progress=DailyLoanJobWorkflow.progress,
        on_progress=on_progress,
        poll=poll,
    )


def daily_job(
    business_date: Annotated[
        str | None, typer.Option("--date", help="YYYY-MM-DD; default yesterday")
    ] = None,
) -> None:
    """Run the daily loan job (arrears, penalties, accrual, PAR) for one business date and wait."""
    settings = get_settings()
    try:
        day = date.fromisoformat(business_date) if business_date else None
    except ValueError as exc:
        raise typer.BadParameter(f"{business_date!r} is not a date YYYY-MM-DD") from exc
    console = Console()

    async def run() -> DailyJobSummary:
        if day is None:
            zone = ZoneInfo(settings.institution_timezone)
            when = datetime.now(UTC).astimezone(zone).date() - timedelta(days=1)
        else:
            when = day
        client = await temporal.connect(settings, short_lived=True)
        seen: set[str] = set()

        def show(p: DailyJobProgress) -> None:
            line = f"{p.stage.value}: {p.loans_done}/{p.loans_total} loans"
            if line not in seen:
                seen.add(line)
                console.print(line)

        return await run_day(client, settings, when, show)

    try:
        summary = asyncio.run(run())
    except WorkflowFailureError as exc:
        typer.echo(f"daily loan job failed: {exc.cause}", err=True)
        raise typer.Exit(1) from exc
    for line in report(summary):
        console.print(line)


def report(summary: DailyJobSummary) -> list[str]:
    """What this run posted, then the date's totals over every run of it (a re-run posts
    nothing, and says so)."""

    def amounts(penalty: dict[str, int], accrual: dict[str, int]) -> str:
        parts = [
            f"{kind} {to_major(amount, summary.scales.get(currency, 2))} {currency}"
            for kind, totals in (("penalties", penalty), ("accrued", accrual))
            for currency, amount in sorted(totals.items())
        ]
        return ", ".join(parts) or "nothing"

    day = summary.business_date
    return [
        f"{day}: {summary.loans} active loans",
        f"posted by this run: {amounts(summary.run_penalty_minor, summary.run_accrual_minor)}",
        f"{day} totals: {amounts(summary.penalty_minor, summary.accrual_minor)}",
    ]
