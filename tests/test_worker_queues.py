"""Each worker offers on its task queue only the activities its queue's workflows call."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.direct import DirectPool
from schemas.settings import Settings
from worker import activities_for


def _names(fns: Sequence[Callable[..., Any]]) -> set[str]:
    names = set()
    for fn in fns:
        defn = activity._Definition.from_callable(fn)
        assert defn is not None and defn.name is not None
        names.add(defn.name)
    return names


def test_batch_and_interactive_activities_are_apart(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], direct: DirectPool
) -> None:
    queues = activities_for(settings, sessions, direct)
    interactive, batch = _names(queues.interactive), _names(queues.batch)
    # The batch jobs' steps and the ledger check run only where their workflows run.
    jobs = {
        "verify_ledger",
        "plan_month_end",
        "month_end_ranges",
        "post_interest_batch",
        "finish_month_end",
        "plan_daily_loan_job",
        "daily_loan_ranges",
        "service_loan_batch",
        "finish_daily_loan_job",
    }
    assert jobs <= batch
    assert not jobs & interactive
    assert {"post_journal", "place_hold", "post_hold", "void_hold"} <= interactive
    assert not {"post_journal", "place_hold", "post_hold", "void_hold"} & batch
    assert batch - jobs == {"send_notification"}
    # MonthEndInterest e-mails its summary, KYC and loans notify members: both queues send.
    assert "send_notification" in batch & interactive
