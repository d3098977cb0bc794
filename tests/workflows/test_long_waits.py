"""Histories of the long waits, recorded while the workflow is still waiting: a loan with its
approver (weeks), a KYC case waiting for the member's documents (up to a month). A deploy meets
these workflows mid-wait, so the replay test must cover exactly this state; the committed
histories are `loan_approval_waiting_for_approver` and `kyc_awaiting_documents`."""

from __future__ import annotations

import json

from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from schemas import temporal
from schemas.kyc import Stage as KycStage
from schemas.loans import Stage as LoanStage
from schemas.settings import Settings
from tests.conftest import Factory, Sessions
from tests.kyc.conftest import kyc_input, new_member, policy, start_case, upload
from tests.loans.conftest import LoanKit, send, start
from tests.workflows.conftest import HISTORIES, record_history
from worker import BATCH_WORKFLOWS, INTERACTIVE_WORKFLOWS
from workflows.kyc_review import KycReviewWorkflow


async def replays_and_is_running(name: str, workflow_type: str) -> None:
    """The committed history is of a workflow still waiting, and replays on this code."""
    recorded = json.loads((HISTORIES / f"{name}.json").read_text())
    events = recorded["events"]
    started = events[0]["workflowExecutionStartedEventAttributes"]
    assert started["workflowType"]["name"] == workflow_type
    closing = {"EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED", "EVENT_TYPE_WORKFLOW_EXECUTION_FAILED"}
    assert not closing & {e["eventType"] for e in events}, "recorded mid-wait, not finished"
    replayer = Replayer(
        workflows=INTERACTIVE_WORKFLOWS + BATCH_WORKFLOWS,
        data_converter=temporal.data_converter(Settings()),
    )
    await replayer.replay_workflow(WorkflowHistory.from_json(name, recorded))


async def test_a_loan_waiting_for_its_approver(
    temporal_client: Client, worker: str, settings: Settings, sessions: Sessions, factory: Factory
) -> None:
    kit = LoanKit(sessions, factory, settings)
    officer = await kit.staff("loan_officer")
    inp = await kit.register(officer, await kit.product(), await kit.member(), "800.00")
    handle = await start(temporal_client, worker, inp)
    state = await send(handle, "initial_outcome")
    assert (state.stage, state.assigned_role) == (LoanStage.AWAITING_APPROVAL, "loan_officer")
    await record_history(handle, "loan_approval_waiting_for_approver")
    await handle.terminate("recorded mid-wait")
    await replays_and_is_running("loan_approval_waiting_for_approver", "LoanApproval")


async def test_a_kyc_case_awaiting_documents(
    temporal_client: Client,
    worker: str,
    settings: Settings,
    sessions: Sessions,
    chart: dict[str, int],
) -> None:
    member = await new_member(sessions)
    await upload(sessions, member, doc_type="photo")  # no ID, no proof of address
    handle = await start_case(temporal_client, worker, kyc_input(member, policy(settings)))
    state = await handle.execute_update(KycReviewWorkflow.initial_outcome)
    assert state.stage == KycStage.AWAITING_MEMBER and state.requested_documents
    await record_history(handle, "kyc_awaiting_documents")
    await handle.terminate("recorded mid-wait")
    await replays_and_is_running("kyc_awaiting_documents", "KycReview")
