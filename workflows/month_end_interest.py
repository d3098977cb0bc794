"""MonthEndInterest: a month's savings interest for every account, exactly once, on the batch queue.

The period's accounts are split into id ranges; each range is one batch activity (set-based SQL,
idempotent per account and period, heartbeating), at most `concurrency` in flight. After
`batches_per_run` batches the workflow continues as new, carrying its cursor and counters, so
its history stays small at any number of accounts. When every range is done it stores the
summary (from the database, not from counters), e-mails it to finance, and completes; the
result also says what this run posted (its journals carry the run's first execution id). A
period already completed returns its stored summary, posting nothing, and says so. Started by a Temporal Schedule
it takes the month before the scheduled time, in the institution's time zone.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.batch_job import (
    STEP,
    add_totals,
    begin,
    carried,
    continue_with,
    local,
    run_batches,
    scheduled_fire_time,
)
from workflows.common import refuse

with workflow.unsafe.imports_passed_through():
    import email_validator  # noqa: F401  (NotificationRequest's EmailStr, loaded once)

    from activities.month_end import MonthEndActivities
    from domain.money import to_major
    from domain.periods import period_bounds, previous_period
    from schemas import search_attributes as sa
    from schemas.errors import ErrorCode
    from schemas.month_end import (
        AccountRange,
        BatchRequest,
        BatchResult,
        FinishRequest,
        MonthEndInput,
        MonthEndProgress,
        MonthEndSummary,
        PlanRequest,
        PlanResult,
        RangesRequest,
        RangesResult,
        Stage,
    )
    from schemas.notifications import NotificationRequest, NotificationResult

PROCESS = "MonthEndInterest"
TEMPLATE = "month_end_summary"
NOTIFY: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=60),
    "schedule_to_close_timeout": timedelta(days=1),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(minutes=10)),
}


@workflow.defn(name=PROCESS)
class MonthEndInterestWorkflow:
    @workflow.init
    def __init__(self, inp: MonthEndInput) -> None:
        self._progress = carried(MonthEndProgress, inp, stage=Stage.PLANNING)

    @workflow.run
    async def run(self, inp: MonthEndInput) -> MonthEndSummary:
        period = inp.period or self._scheduled_period(inp.timezone)
        self._check_ended(period, inp.timezone)
        self._progress.period = period
        wf_id = begin(PROCESS, period)
        started_at = inp.started_at or workflow.now()
        if inp.started_at is None:
            self._enter(Stage.PLANNING)
            plan: PlanResult = await workflow.execute_activity_method(
                MonthEndActivities.plan,
                PlanRequest(period=period, workflow_id=wf_id, started_at=started_at),
                **STEP,
            )
            if plan.completed is not None:
                done = plan.completed.model_copy(update={"this_run": []})  # posted nothing
                self._progress.summary = done
                self._progress.accounts_total = self._progress.accounts_done = plan.accounts_total
                self._enter(Stage.ALREADY_DONE)
                return done
            self._progress.accounts_total = plan.accounts_total
            self._progress.scales = plan.scales
        self._enter(Stage.POSTING)
        found: RangesResult = await workflow.execute_activity_method(
            MonthEndActivities.ranges,
            RangesRequest(
                period=period,
                after_account_id=inp.after_account_id,
                batch_size=inp.batch_size,
                limit=inp.batches_per_run,
            ),
            **STEP,
        )
        await self._post_all(period, wf_id, found.ranges, inp)
        if found.more:
            await continue_with(
                inp,
                {
                    "period": period,
                    "after_account_id": found.ranges[-1].last_account_id,
                    "accounts_total": self._progress.accounts_total,
                    "accounts_done": self._progress.accounts_done,
                    "interest_minor": self._progress.interest_minor,
                    "scales": self._progress.scales,
                    "started_at": started_at,
                },
            )
        self._enter(Stage.SUMMARISING)
        summary: MonthEndSummary = await workflow.execute_activity_method(
            MonthEndActivities.finish,
            FinishRequest(
                period=period,
                workflow_id=wf_id,
                started_at=started_at,
                run_id=workflow.info().first_execution_run_id,
            ),
            **STEP,
        )
        self._progress.summary = summary
        self._enter(Stage.NOTIFYING)
        for recipient in inp.notify:
            await self._notify(summary, recipient, wf_id)
        self._enter(Stage.COMPLETED)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return summary

    async def _post_all(
        self, period: str, wf_id: str, ranges: list[AccountRange], inp: MonthEndInput
    ) -> None:
        """Every range, at most `concurrency` batches in flight."""
        run_id = workflow.info().first_execution_run_id
        requests = [
            BatchRequest(period=period, workflow_id=wf_id, first_account_id=r.first_account_id,
                         last_account_id=r.last_account_id, run_id=run_id)
            for r in ranges
        ]  # fmt: skip

        def done(result: BatchResult) -> None:
            self._progress.accounts_done += result.accounts
            add_totals(self._progress.interest_minor, result.interest_minor)
            self._enter(Stage.POSTING)

        await run_batches(MonthEndActivities.post_batch, requests, inp, done)

    async def _notify(self, summary: MonthEndSummary, recipient: str, wf_id: str) -> None:
        # By name: the notifications module owns the activity; its contract is the schema.
        await workflow.execute_activity(
            "send_notification",
            NotificationRequest(
                process_id=wf_id,
                template=TEMPLATE,
                recipient=recipient,
                recipient_name="Finance",
                context={
                    "period": summary.period,
                    "accounts": summary.accounts,
                    "value_date": summary.value_date.isoformat(),
                    "duration_s": summary.duration_s,
                    "totals": [t.model_dump() for t in summary.totals],
                },
            ),
            result_type=NotificationResult,
            **NOTIFY,
        )

    def _scheduled_period(self, timezone: str) -> str:
        """The month before the schedule's nominal fire time, in the institution's zone (the
        nominal time, so a catch-up run days later still posts the month it was meant for)."""
        fired = local(
            scheduled_fire_time("no period given and not started by a schedule"), timezone
        )
        return previous_period(f"{fired.year}-{fired.month:02d}")

    def _check_ended(self, period: str, timezone: str) -> None:
        """A month is posted once it is over in the institution's zone, never before."""
        today = local(workflow.now(), timezone).date()
        if period_bounds(period)[1] >= today:
            raise refuse(
                ErrorCode.PERIOD_NOT_ENDED, f"{period} has not ended yet ({timezone} {today})"
            )

    def _enter(self, stage: Stage) -> None:
        p = self._progress
        p.stage = stage
        workflow.upsert_search_attributes([sa.STAGE.value_set(stage.value)])
        amounts = ", ".join(
            f"{to_major(v, p.scales.get(c, 2))} {c}" for c, v in sorted(p.interest_minor.items())
        )
        workflow.set_current_details(
            f"month-end {p.period}: **{stage.value}**, {p.accounts_done:,} / "
            f"{p.accounts_total:,} accounts" + (f", interest posted {amounts}" if amounts else "")
        )

    @workflow.query(name="progress")
    def progress(self) -> MonthEndProgress:
        return self._progress
