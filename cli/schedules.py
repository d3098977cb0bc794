"""Temporal Schedules for the recurring jobs, and running month-end periods by hand.

`sync_schedules` creates or updates each schedule to match the code, so running it twice leaves
one schedule with the same spec (the dev launcher runs it at every start). Month-end fires at
00:30 on the 1st in the institution's time zone and posts the month before; a missed firing is
caught up within 7 days, and a firing while the last run is still going is skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowFailureError,
)

from cli.daily_loan_job import daily_loan_job_schedule
from cli.follow import start_or_join
from domain.money import to_major
from domain.periods import check_period, periods_between
from schemas import temporal
from schemas.daily_loan_job import SCHEDULE_ID as DAILY_SCHEDULE_ID
from schemas.month_end import (
    SCHEDULE_ID,
    WORKFLOW_PREFIX,
    CurrencyTotals,
    MonthEndInput,
    MonthEndProgress,
    MonthEndSummary,
)
from schemas.settings import Settings, get_settings
from workflows.month_end_interest import MonthEndInterestWorkflow

CATCHUP_WINDOW = timedelta(days=7)


def month_end_input(settings: Settings, period: str | None = None) -> MonthEndInput:
    return MonthEndInput(
        period=period,
        timezone=settings.institution_timezone,
        notify=[settings.finance_email] if settings.finance_email else [],
    )


def month_end_schedule(settings: Settings, prefix: str = "") -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            MonthEndInterestWorkflow.run,
            month_end_input(settings),
            id=f"{prefix}month-end-scheduled",
            task_queue=settings.batch_task_queue,
        ),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(
                    second=[ScheduleRange(0)],
                    minute=[ScheduleRange(30)],
                    hour=[ScheduleRange(0)],
                    day_of_month=[ScheduleRange(1)],
                )
            ],
            time_zone_name=settings.institution_timezone,
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=CATCHUP_WINDOW),
    )


async def sync_schedules(client: Client, settings: Settings, *, prefix: str = "") -> list[str]:
    """Create or update every schedule (month-end, the daily loan job); returns what it did,
    one line each."""
    done: list[str] = []
    for schedule_id, schedule in (
        (prefix + SCHEDULE_ID, month_end_schedule(settings, prefix)),
        (prefix + DAILY_SCHEDULE_ID, daily_loan_job_schedule(settings, prefix)),
    ):
        try:
            await client.create_schedule(schedule_id, schedule)
            done.append(f"created {schedule_id}")
        except ScheduleAlreadyRunningError:

            def replace(_: ScheduleUpdateInput, new: Schedule = schedule) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=new)

            await client.get_schedule_handle(schedule_id).update(replace)
            done.append(f"updated {schedule_id}")
    return done


async def run_period(
    client: Client,
    settings: Settings,
    period: str,
    on_progress: Callable[[MonthEndProgress], None] = lambda _: None,
    *,
    poll: timedelta = timedelta(milliseconds=500),
) -> MonthEndSummary:
    """Start (or join the running) month-end of one period and wait for it, reporting progress.
    A completed period runs again as a no-op that returns its stored summary."""
    return await start_or_join(
        client,
        MonthEndInterestWorkflow.run,
        month_end_input(settings, period),
        workflow_id=WORKFLOW_PREFIX + period,
        task_queue=settings.batch_task_queue,
        progress=MonthEndInterestWorkflow.progress,
        on_progress=on_progress,
        poll=poll,
    )


# --- `bankflow schedules ...` and `bankflow month-end ...` --------------------------------------

schedules_app = typer.Typer(help="Temporal Schedules of the recurring jobs", no_args_is_help=True)
month_end_app = typer.Typer(help="Month-end savings interest", no_args_is_help=True)
PeriodOption = Annotated[str, typer.Option("--period", help="YYYY-MM")]


def _period(value: str) -> str:
    try:
        return check_period(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


async def _client(settings: Settings) -> Client:
    return await temporal.connect(settings, short_lived=True)


def _run_with_bar(periods: list[str]) -> None:
    settings = get_settings()

    async def run() -> None:
        client = await _client(settings)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[amount]}"),
            TimeElapsedColumn(),
        ) as bar:
            for period in periods:
                task = bar.add_task(f"month-end {period}", total=None, amount="")

                def show(p: MonthEndProgress, task: TaskID = task) -> None:
                    amount = ", ".join(
                        f"{to_major(v, p.scales.get(c, 2))} {c}"
                        for c, v in sorted(p.interest_minor.items())
                    )
                    bar.update(
                        task,
                        total=p.accounts_total or None,
                        completed=p.accounts_done,
                        amount=f"{p.stage.value} {amount}",
                    )

                summary = await run_period(client, settings, period, show)
                bar.update(task, total=summary.accounts, completed=summary.accounts)
                for line in report(summary):
                    bar.console.print(line)

    try:
        asyncio.run(run())
    except WorkflowFailureError as exc:
        typer.echo(f"month-end failed: {exc.cause}", err=True)
        raise typer.Exit(1) from exc


def report(summary: MonthEndSummary) -> list[str]:
    """What this run posted, then the period's totals over every run of it (a re-run of a
    completed period posts nothing, and says so)."""

    def amounts(totals: list[CurrencyTotals]) -> str:
        parts = [
            f"{t.currency} {t.accounts} accounts, interest {t.interest}, tax {t.tax}, net {t.net}"
            for t in totals
        ]
        return "; ".join(parts) or "nothing"

    p = summary.period
    return [
        f"{p} posted by this run: {amounts(summary.this_run or [])}",
        f"{p} totals: {amounts(summary.totals)} ({summary.status} in {summary.duration_s} s)",
    ]


@schedules_app.command("sync")
def schedules_sync() -> None:
    """Create or update the Temporal Schedules (idempotent)."""
    settings = get_settings()

    async def run() -> list[str]:
        return await sync_schedules(await _client(settings), settings)

    for line in asyncio.run(run()):
        typer.echo(line)


@schedules_app.command("backfill")
def schedules_backfill(
    first: Annotated[str, typer.Option("--from", help="first period YYYY-MM")],
    last: Annotated[str, typer.Option("--to", help="last period YYYY-MM")],
) -> None:
    """Run the missed month-end periods from --from to --to, in order, one after the other
    (a period already completed is a no-op)."""
    periods = periods_between(_period(first), _period(last))
    if not periods:
        raise typer.BadParameter("--from is after --to")
    _run_with_bar(periods)


@month_end_app.command("run")
def month_end_run(period: PeriodOption) -> None:
    """Run one period's month-end interest now and wait for it, with a progress bar."""
    _run_with_bar([_period(period)])
