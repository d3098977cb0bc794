"""The skeleton the batch-queue jobs (DailyLoanJob, MonthEndInterest) share: the business key a
Schedule's nominal fire time implies, local time in the institution's zone, bounded fan-out of
range batches, and continue-as-new once the handlers are done. Deterministic code only: these
helpers issue no commands of their own beyond those the job's steps already did, in the same
order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey

from workflows.common import refuse

with workflow.unsafe.imports_passed_through():
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from schemas import search_attributes as sa
    from schemas.errors import ErrorCode

SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")
# A job's own steps (plan, ranges, finish): one short query each, retried until they succeed.
STEP: dict[str, Any] = {
    "start_to_close_timeout": timedelta(minutes=5),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30)),
}
BATCH_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10))

T = TypeVar("T")
R = TypeVar("R")
P = TypeVar("P", bound=BaseModel)


def carried(progress: type[P], inp: BaseModel, **values: Any) -> P:
    """The progress a run starts from: every progress field the input carries across
    continue-as-new (same name in both models), then `values`."""
    shared = progress.model_fields.keys() & type(inp).model_fields.keys()
    return progress.model_validate({**{f: getattr(inp, f) for f in shared}, **values})


def begin(process: str, business_id: str) -> str:
    """Name the run in the Web UI (process and business key) and return its workflow id."""
    workflow.upsert_search_attributes(
        [sa.PROCESS.value_set(process), sa.BUSINESS_ID.value_set(business_id)]
    )
    return workflow.info().workflow_id


def scheduled_fire_time(missing: str) -> datetime:
    """The schedule's nominal fire time (not the actual start: a catch-up firing later still
    works on the date or period it was meant for); `missing` is the refusal when the job was
    neither given its key nor started by a schedule."""
    fired = workflow.info().typed_search_attributes.get(SCHEDULED_START)
    if fired is None:
        raise refuse(ErrorCode.VALIDATION, missing)
    return fired


def local(moment: datetime, timezone: str) -> datetime:
    """`moment` in the institution's zone. The sandbox proxies zoneinfo; the tz database is
    fixed data, so reading it unrestricted stays deterministic."""
    with workflow.unsafe.sandbox_unrestricted():
        try:
            zone = ZoneInfo(timezone)
            offset = zone.utcoffset(moment)
            return moment.astimezone(dt_timezone(offset)) if offset is not None else moment
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise refuse(ErrorCode.VALIDATION, f"unknown time zone {timezone!r}") from exc


async def fan_out(
    items: Sequence[T],
    concurrency: int,
    run: Callable[[T], Awaitable[R]],
    done: Callable[[R], None],
) -> None:
    """`run` every item, at most `concurrency` in flight, then `done` with each result as it
    arrives (outside the slot). asyncio inside a workflow is deterministic, so the order of
    commands is the same on replay."""
    slots = asyncio.Semaphore(concurrency)

    async def one(item: T) -> None:
        async with slots:
            result = await run(item)
        done(result)

    await asyncio.gather(*(one(item) for item in items))


class BatchOptions(Protocol):
    concurrency: int
    heartbeat_s: int


def add_totals(totals: dict[str, int], more: dict[str, int]) -> None:
    """Add a batch's amounts per currency into the run's."""
    for currency, amount in more.items():
        totals[currency] = totals.get(currency, 0) + amount


async def run_batches(
    batch: Callable[[Any, T], Awaitable[R]],
    requests: Sequence[T],
    options: BatchOptions,
    done: Callable[[R], None],
) -> None:
    """Run the `batch` activity once per request, at most `options.concurrency` in flight, each
    with ten minutes to finish and a heartbeat every `options.heartbeat_s` (a dead worker's batch
    runs again elsewhere: it rolled back, or it is done); `done` with each result as it arrives.
    """
    concurrency, heartbeat_s = options.concurrency, options.heartbeat_s

    async def run(req: T) -> R:
        return await workflow.execute_activity_method(
            batch,
            req,
            start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=timedelta(seconds=heartbeat_s),
            retry_policy=BATCH_RETRY,
        )

    await fan_out(requests, concurrency, run, done)


async def continue_with(inp: BaseModel, update: dict[str, Any]) -> None:
    """Continue as new with `inp` updated (the cursor and counters), once every update and
    query handler has finished. Never returns."""
    await workflow.wait_condition(workflow.all_handlers_finished)
    workflow.continue_as_new(inp.model_copy(update=update))
