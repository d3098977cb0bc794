"""The bare workflow `bench/ledger.py` compares a movement with: one local activity and nothing
else, the Temporal cost of a workflow shaped like a movement (which posts as a local activity,
workflows/money_movement.py). A module of its own, passed through the sandbox like the product's
workflow modules (worker.workflow_runner), so the comparison charges neither with a re-import."""

from __future__ import annotations

from temporalio import activity, workflow

from workflows.common import DB_ACTIVITY


@activity.defn(name="BenchNoop")
async def noop(n: int) -> int:
    return n


@workflow.defn(name="BenchBare")
class BareWorkflow:
    @workflow.run
    async def run(self, n: int) -> int:
        return await workflow.execute_local_activity(noop, n, **DB_ACTIVITY)
