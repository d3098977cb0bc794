"""The daily loan job's Temporal Schedule (synced with month-end's: twice is still one each), a
firing servicing yesterday in the institution's zone, `run_day` reporting progress, and the
`bankflow loans daily-job` command refusing a bad date."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from temporalio.client import (
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleOverlapPolicy,
)
from typer.testing import CliRunner

from cli.daily_loan_job import run_day
from cli.main import app
from cli.schedules import sync_schedules
from schemas.daily_loan_job import SCHEDULE_ID, DailyJobProgress, DailyJobSummary
from schemas.month_end import SCHEDULE_ID as MONTH_END_SCHEDULE_ID
from schemas.settings import Settings
from tests.daily_loan_job.conftest import Stack
from tests.month_end.conftest import run_cli
from tests.workflows.conftest import record_history

ZONE = "Pacific/Kiritimati"  # UTC+14: "yesterday" there is often today in UTC


def settings_for(stack: Stack) -> Settings:
    return stack.settings.model_copy(
        update={"batch_task_queue": stack.batch_queue, "institution_timezone": ZONE}
    )


async def test_sync_twice_is_one_daily_schedule_that_services_yesterday(stack: Stack) -> None:
    settings = settings_for(stack)
    await sync_schedules(stack.client, settings, prefix=stack.tag)
    assert await sync_schedules(stack.client, settings, prefix=stack.tag) == [
        f"updated {stack.tag}{MONTH_END_SCHEDULE_ID}",
        f"updated {stack.tag}{SCHEDULE_ID}",
    ]
    found = [s.id async for s in await stack.client.list_schedules() if s.id.startswith(stack.tag)]
    assert sorted(found) == sorted([stack.tag + MONTH_END_SCHEDULE_ID, stack.tag + SCHEDULE_ID])
    await stack.client.get_schedule_handle(stack.tag + MONTH_END_SCHEDULE_ID).delete()
    handle = stack.client.get_schedule_handle(stack.tag + SCHEDULE_ID)
    described = await handle.describe()
    [calendar] = described.schedule.spec.calendars
    assert [(r.start, r.end) for r in calendar.hour] == [(1, 1)]
    assert [(r.start, r.end) for r in calendar.minute] == [(0, 0)]
    assert described.schedule.spec.time_zone_name == ZONE
    assert described.schedule.policy.overlap == ScheduleOverlapPolicy.BUFFER_ONE
    assert described.schedule.policy.catchup_window == timedelta(days=7)
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == "DailyLoanJob" and action.task_queue == stack.batch_queue

    product = await stack.product(penalty_rate="10", accounting="accrual")
    await stack.active_loan(product, date(2026, 1, 1))
    await handle.trigger()
    for _ in range(200):
        info = (await handle.describe()).info.recent_actions
        if info:
            break
        await asyncio.sleep(0.1)
    run = info[0].action
    assert isinstance(run, ScheduleActionExecutionStartWorkflow)
    fired = stack.client.get_workflow_handle(
        run.workflow_id, run_id=run.first_execution_run_id, result_type=DailyJobSummary
    )
    result = await fired.result()
    await record_history(fired, "daily_loan_job_scheduled")
    await handle.delete()
    # Fired at time T it services the day before T in Kiritimati (T is a moment before now).
    kiritimati = datetime.now(UTC).astimezone(ZoneInfo(ZONE)).date()
    assert result.business_date in (kiritimati - timedelta(days=1), kiritimati - timedelta(days=2))
    assert result.loans == 1 and result.accrual_minor["USD"] > 0
    assert await stack.scalar("SELECT serviced_through FROM loans") == result.business_date
    await stack.verify()


async def test_run_day_reports_progress_and_reruns_as_a_no_op(stack: Stack) -> None:
    settings = settings_for(stack)
    product = await stack.product(penalty_rate="36.5", accounting="accrual")
    await stack.active_loan(product, date(2026, 1, 1))
    seen: list[DailyJobProgress] = []
    day = date(2026, 2, 3)
    first = await run_day(stack.client, settings, day, seen.append, poll=timedelta(milliseconds=5))
    assert first.accrual_minor == {"USD": 1279} and first.penalty_minor == {"USD": 21}
    assert seen and all(p.business_date in (None, day) for p in seen)
    assert first.run_accrual_minor == first.accrual_minor
    journals = await stack.journals()
    again = await run_day(stack.client, settings, day)
    assert again == first.model_copy(update={"run_accrual_minor": {}, "run_penalty_minor": {}})
    assert await stack.journals() == journals == 1
    await stack.verify()


async def test_the_cli_prints_what_this_run_posted_apart_from_the_dates_totals(
    stack: Stack,
) -> None:
    """Issue 12.5: a re-run posts nothing and must say so, beside the date's totals."""
    product = await stack.product(penalty_rate="36.5", accounting="accrual")
    await stack.active_loan(product, date(2026, 1, 1))
    args = ("loans", "daily-job", "--date", "2026-02-03")
    first = await run_cli(stack.client, stack.batch_queue, *args)
    assert first.exit_code == 0, first.output
    totals = "2026-02-03 totals: penalties 0.21 USD, accrued 12.79 USD"
    assert "posted by this run: penalties 0.21 USD, accrued 12.79 USD" in first.output
    assert totals in first.output
    journals = await stack.journals()
    again = await run_cli(stack.client, stack.batch_queue, *args)
    assert again.exit_code == 0, again.output
    assert "posted by this run: nothing" in again.output and totals in again.output
    assert "posted by this run: penalties" not in again.output
    assert await stack.journals() == journals == 1


def test_cli_refuses_a_bad_date() -> None:
    result = CliRunner().invoke(app, ["loans", "daily-job", "--date", "2026-02-30"])
    assert result.exit_code == 2
    assert "not a date" in result.output
