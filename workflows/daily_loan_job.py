"""DailyLoanJob: every active loan serviced through a business date, on the batch queue.

For a business date D (the schedule passes yesterday in the institution's zone; a manual run any
date that has ended) it ages arrears, charges overdue penalties and accrues interest for accrual
products. Active loans are split into id ranges; each range is one batch activity (set-based SQL,
idempotent per loan through `serviced_through`, heartbeating), at most `concurrency` in flight.
After `batches_per_run` batches the workflow continues as new with its cursor, so its history
stays small at any number of loans. Then it writes the date's portfolio-at-risk snapshot and
returns the day's totals and, apart, what this run posted (its journals carry the run's first
execution id), both read from the database. A re-run of D posts nothing; a run for a later date
catches up the days a missed run left.
"""

from __future__ import annotations

from datetime import date, timedelta

from temporalio import workflow

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
    from activities.daily_loan_job import DailyLoanJobActivities
    from domain.money import to_major
    from schemas import search_attributes as sa
    from schemas.daily_loan_job import (
        BatchRequest,
        BatchResult,
        DailyJobInput,
        DailyJobProgress,
        DailyJobSummary,
        LoanRange,
        PlanRequest,
        PlanResult,
        RangesRequest,
        RangesResult,
        SnapshotRequest,
        Stage,
    )
    from schemas.errors import ErrorCode

PROCESS = "DailyLoanJob"


@workflow.defn(name=PROCESS)
class DailyLoanJobWorkflow:
    """Arrears ageing, penalties, interest accrual and portfolio at risk for one business date."""

    @workflow.init
    def __init__(self, inp: DailyJobInput) -> None:
        self._progress = carried(DailyJobProgress, inp, stage=Stage.PLANNING)

    @workflow.run
    async def run(self, inp: DailyJobInput) -> DailyJobSummary:
        day = inp.business_date or self._scheduled_date(inp.timezone)
        self._check_ended(day, inp.timezone)
        self._progress.business_date = day
        wf_id = begin(PROCESS, day.isoformat())
        if inp.after_loan_id == 0:
            self._enter(Stage.PLANNING)
            plan: PlanResult = await workflow.execute_activity_method(
                DailyLoanJobActivities.plan, PlanRequest(business_date=day), **STEP
            )
            self._progress.loans_total = plan.loans_total
            self._progress.scales = plan.scales
        self._enter(Stage.SERVICING)
        found: RangesResult = await workflow.execute_activity_method(
            DailyLoanJobActivities.ranges,
            RangesRequest(
                after_loan_id=inp.after_loan_id,
                batch_size=inp.batch_size,
                limit=inp.batches_per_run,
            ),
            **STEP,
        )
        await self._service_all(day, wf_id, found.ranges, inp)
        if found.more:
            await continue_with(
                inp,
                {
                    "business_date": day,
                    "after_loan_id": found.ranges[-1].last_loan_id,
                    "loans_total": self._progress.loans_total,
                    "loans_done": self._progress.loans_done,
                    "penalty_minor": self._progress.penalty_minor,
                    "accrual_minor": self._progress.accrual_minor,
                    "scales": self._progress.scales,
                },
            )
        self._enter(Stage.SNAPSHOT)
        summary: DailyJobSummary = await workflow.execute_activity_method(
            DailyLoanJobActivities.finish,
            SnapshotRequest(
                business_date=day,
                workflow_id=wf_id,
                run_id=workflow.info().first_execution_run_id,
            ),
            **STEP,
        )
        self._progress.summary = summary
        self._enter(Stage.COMPLETED)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return summary

    async def _service_all(
        self, day: date, wf_id: str, ranges: list[LoanRange], inp: DailyJobInput
    ) -> None:
        """Every range, at most `concurrency` batches in flight."""
        run_id = workflow.info().first_execution_run_id
        requests = [
            BatchRequest(business_date=day, workflow_id=wf_id, first_loan_id=r.first_loan_id,
                         last_loan_id=r.last_loan_id, run_id=run_id)
            for r in ranges
        ]  # fmt: skip

        def done(result: BatchResult) -> None:
            p = self._progress
            p.loans_done += result.loans
            add_totals(p.penalty_minor, result.penalty_minor)
            add_totals(p.accrual_minor, result.accrual_minor)
            self._enter(Stage.SERVICING)

        await run_batches(DailyLoanJobActivities.service_batch, requests, inp, done)

    def _scheduled_date(self, timezone: str) -> date:
        """The day before the schedule's nominal fire time, in the institution's zone (the
        nominal time, so a catch-up firing hours later still services the day it was meant for)."""
        fired = scheduled_fire_time("no business date given and not started by a schedule")
        return local(fired, timezone).date() - timedelta(days=1)

    def _check_ended(self, day: date, timezone: str) -> None:
        """A day is serviced once it is over in the institution's zone, never before: its
        penalties and accrual are for the whole day."""
        today = local(workflow.now(), timezone).date()
        if day >= today:
            raise refuse(ErrorCode.VALIDATION, f"{day} has not ended yet ({timezone} {today})")

    def _enter(self, stage: Stage) -> None:
        p = self._progress
        p.stage = stage
        workflow.upsert_search_attributes([sa.STAGE.value_set(stage.value)])
        amounts = ", ".join(
            f"{kind} {to_major(v, p.scales.get(c, 2))} {c}"
            for kind, totals in (("penalties", p.penalty_minor), ("accrued", p.accrual_minor))
            for c, v in sorted(totals.items())
        )
        workflow.set_current_details(
            f"daily loan job {p.business_date}: **{stage.value}**, {p.loans_done:,} / "
            f"{p.loans_total:,} loans" + (f", {amounts}" if amounts else "")
        )

    @workflow.query(name="progress")
    def progress(self) -> DailyJobProgress:
        return self._progress
