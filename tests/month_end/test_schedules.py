"""Temporal Schedules: `sync` twice is one schedule with the spec in the code; a schedule firing
posts the month before its nominal time; `run_period` reports progress and a re-run is a no-op."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

from temporalio.client import (
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleOverlapPolicy,
)

from cli.schedules import run_period, sync_schedules
from schemas.daily_loan_job import SCHEDULE_ID as DAILY_SCHEDULE_ID
from schemas.month_end import SCHEDULE_ID, MonthEndProgress, MonthEndSummary, Stage
from schemas.settings import Settings
from tests.month_end.conftest import Stack, run_cli


def settings_for(stack: Stack) -> Settings:
    return stack.settings.model_copy(
        update={"batch_task_queue": stack.batch_queue, "institution_timezone": "Africa/Nairobi"}
    )


async def test_sync_twice_is_one_schedule(stack: Stack) -> None:
    settings = settings_for(stack)
    both = [stack.tag + SCHEDULE_ID, stack.tag + DAILY_SCHEDULE_ID]
    assert await sync_schedules(stack.client, settings, prefix=stack.tag) == [
        f"created {i}" for i in both
    ]
    assert await sync_schedules(stack.client, settings, prefix=stack.tag) == [
        f"updated {i}" for i in both
    ]
    found = [s.id async for s in await stack.client.list_schedules() if s.id.startswith(stack.tag)]
    assert sorted(found) == sorted(both)
    await stack.client.get_schedule_handle(stack.tag + DAILY_SCHEDULE_ID).delete()
    handle = stack.client.get_schedule_handle(stack.tag + SCHEDULE_ID)
    described = await handle.describe()
    [calendar] = described.schedule.spec.calendars
    assert [(r.start, r.end) for r in calendar.hour] == [(0, 0)]
    assert [(r.start, r.end) for r in calendar.minute] == [(30, 30)]
    assert [(r.start, r.end) for r in calendar.day_of_month] == [(1, 1)]
    assert described.schedule.spec.time_zone_name == "Africa/Nairobi"
    assert described.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
    assert described.schedule.policy.catchup_window == timedelta(days=7)
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == "MonthEndInterest" and action.task_queue == stack.batch_queue

    # Fired now, it posts last month (in Nairobi): a completed run for that period appears.
    await handle.trigger()
    for _ in range(200):
        info = (await handle.describe()).info.recent_actions
        if info:
            break
        await asyncio.sleep(0.1)
    run = info[0].action
    assert isinstance(run, ScheduleActionExecutionStartWorkflow)
    result: MonthEndSummary = await stack.client.get_workflow_handle(
        run.workflow_id, run_id=run.first_execution_run_id, result_type=MonthEndSummary
    ).result()
    assert result.status == "completed" and result.accounts == 0
    await handle.delete()


async def test_run_period_reports_progress_and_reruns_as_a_no_op(stack: Stack) -> None:
    settings = settings_for(stack)
    product = await stack.product(annual_rate="0.0365")

    await stack.account(product, date(2026, 8, 1), [(date(2026, 8, 1), 100000)])
    seen: list[MonthEndProgress] = []
    first = await run_period(
        stack.client, settings, "2026-08", seen.append, poll=timedelta(milliseconds=20)
    )
    assert first.totals[0].interest_minor == 310 and seen
    assert seen[-1].accounts_total in (0, 1)
    again: list[MonthEndProgress] = []
    second = await run_period(stack.client, settings, "2026-08", again.append)
    assert (first.this_run, second.this_run) == (first.totals, [])
    assert second.model_copy(update={"this_run": None}) == first.model_copy(
        update={"this_run": None}
    )
    assert all(p.stage in (Stage.PLANNING, Stage.ALREADY_DONE) for p in again)


async def test_the_cli_prints_what_this_run_posted_apart_from_the_periods_totals(
    stack: Stack,
) -> None:
    """A re-run of a completed period posts nothing and must say so, beside its totals."""
    product = await stack.product(annual_rate="0.0365")
    await stack.account(product, date(2026, 8, 1), [(date(2026, 8, 1), 100000)])
    first = await run_cli(
        stack.client, stack.batch_queue, "month-end", "run", "--period", "2026-08"
    )
    assert first.exit_code == 0, first.output
    totals = "2026-08 totals: USD 1 accounts, interest 3.10"
    assert "2026-08 posted by this run: USD 1 accounts, interest 3.10" in first.output
    assert totals in first.output
    postings = await stack.scalar("SELECT count(*) FROM postings")
    again = await run_cli(
        stack.client, stack.batch_queue, "month-end", "run", "--period", "2026-08"
    )
    assert again.exit_code == 0, again.output
    assert "2026-08 posted by this run: nothing" in again.output and totals in again.output
    assert await stack.scalar("SELECT count(*) FROM postings") == postings
