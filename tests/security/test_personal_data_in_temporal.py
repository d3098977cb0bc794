"""A member's whole life through the API on the real stack, then every history it left on the
Temporal server, read raw as the server stores it: no name, e-mail, phone, ID number or date of
birth anywhere; every payload encrypted; decrypted with the codec, still no personal data, and
still the ids, amounts and stages ops need. Memos and search attributes carry none either."""

from __future__ import annotations

import asyncio
import json
import random
import string
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from google.protobuf.message import Message
from httpx import AsyncClient, Response
from sqlalchemy import select
from temporalio.api.common.v1 import Payload, WorkflowExecution
from temporalio.api.history.v1 import History
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest
from temporalio.client import Client, WorkflowExecutionStatus

from activities.tables import Notification
from schemas.payload_codec import ENCODING, EncryptionCodec
from schemas.settings import Settings
from tests.api.conftest import Staff, new_staff
from tests.conftest import Sessions
from tests.kyc.conftest import PDF, PNG, file_bytes
from tests.loans.conftest import product_body

# The member's personal data, as the API received it; some of it must reach the outbox, none of
# it Temporal.
LETTERS = string.ascii_lowercase
PATCH_MARKER = "core_patch"  # workflow.patched's marker
LOCAL_ACTIVITY_MARKER = "core_local_activity"
LOCAL_ACTIVITY_DATA = {
    "seq",
    "attempt",
    "activity_id",
    "activity_type",
    "complete_time",
    "backoff",
    "original_schedule_time",
    "activation_index",
}


def a_name() -> str:
    return "".join(random.choices(LETTERS, k=9)).title()


@dataclass(frozen=True)
class Person:
    first: str
    last: str
    email: str
    phone: str
    born: str
    passport_digits: str

    @property
    def passport(self) -> str:
        return f"BD{self.passport_digits}"

    def needles(self) -> list[str]:
        return [
            self.first,
            self.last,
            f"{self.first} {self.last}",
            self.email,
            self.email.split("@")[0],
            self.phone,
            "".join(ch for ch in self.phone if ch.isdigit()),
            self.born,
            self.passport,
            self.passport_digits,
        ]


def key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


async def post(api: AsyncClient, who: Staff, path: str, body: Any = None) -> Response:
    r = await api.post(path, json=body, headers=who.headers | key())
    assert r.status_code < 300, (path, r.status_code, r.text)
    return r


def payloads_in(message: Message) -> Iterator[tuple[str, Payload]]:
    """Every Payload in a history event, with the field it sits in (search attributes apart)."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            items = [v for v in value.values() if isinstance(v, Message)]
        elif field.is_repeated:
            items = list(value)
        else:
            items = [value]
        for item in items:
            if isinstance(item, Payload):
                yield field.full_name, item
            else:
                yield from payloads_in(item)


def is_search_attribute(where: str) -> bool:
    return where == "temporal.api.common.v1.SearchAttributes.indexed_fields"


async def raw_history(client: Client, workflow_id: str, run_id: str) -> History:
    history = History()
    token = b""
    while True:
        page = await client.workflow_service.get_workflow_execution_history(
            GetWorkflowExecutionHistoryRequest(
                namespace=client.namespace,
                execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
                next_page_token=token,
            )
        )
        history.events.extend(page.history.events)
        token = page.next_page_token
        if not token:
            return history


async def settled(client: Client, queue: str, expected: set[str]) -> list[tuple[str, str]]:
    """(workflow id, run id) of every run on the test's queue, once all expected ones are
    listed and none is still running."""
    for _ in range(100):
        runs = [wf async for wf in client.list_workflows(f'TaskQueue="{queue}"')]
        ids = {wf.id for wf in runs}
        running = [wf.id for wf in runs if wf.status == WorkflowExecutionStatus.RUNNING]
        if expected <= ids and not running:
            return [(wf.id, wf.run_id) for wf in runs]
        await asyncio.sleep(0.2)
    raise AssertionError(f"not settled: expected {expected - ids}, running {running}")


async def test_a_members_whole_life_leaves_no_personal_data_in_temporal(
    api: AsyncClient,
    temporal_client: Client,
    worker: str,
    sessions: Sessions,
    settings: Settings,
) -> None:
    person = Person(
        first=a_name(),
        last=a_name(),
        email=f"{a_name().lower()}.{uuid.uuid4().hex[:6]}@example.org",
        phone=f"+233 24 {random.randint(100, 999)} {random.randint(1000, 9999)}",
        born="1987-04-23",
        passport_digits=f"{random.randint(0, 10**7 - 1):07d}",
    )
    who = {
        role: await new_staff(sessions, settings, role)
        for role in ("teller", "kyc_reviewer", "loan_officer", "branch_manager", "admin")
    }
    teller, manager = who["teller"], who["branch_manager"]

    # 1. The member joins, with savings.
    joined = await post(
        api,
        teller,
        "/v1/members",
        {
            "first_name": person.first,
            "last_name": person.last,
            "date_of_birth": person.born,
            "email": person.email,
            "phone": person.phone,
            "branch_code": "HQ",
        },
    )
    member = joined.json()["member_number"]
    opened = await post(
        api, teller, f"/v1/members/{member}/accounts", {"kind": "savings", "currency": "USD"}
    )
    account = opened.json()["number"]
    deposit = {"kind": "deposit", "amount": "3000.00", "currency": "USD", "to_account": account}
    await post(api, teller, "/v1/movements", deposit)

    # 2. KYC with documents: the passport expires within 90 days, so a reviewer decides.
    documents = [
        (
            "passport",
            PNG,
            {
                "number": person.passport,
                "issuing_country": "bd",
                "issue_date": "2021-02-03",
                "expiry_date": (date.today() + timedelta(days=45)).isoformat(),
            },
        ),
        ("proof_of_address", PDF, {}),
        ("photo", PNG, {}),
    ]
    for doc_type, magic, meta in documents:
        r = await api.post(
            f"/v1/members/{member}/kyc/documents",
            files={"file": ("doc", file_bytes(magic), "application/octet-stream")},
            data={"doc_type": doc_type, **meta},
            headers=teller.headers,
        )
        assert r.status_code == 201, r.text
    case = (await post(api, teller, f"/v1/members/{member}/kyc/submit")).json()
    assert case["stage"] == "awaiting_review", case
    decided = await post(
        api, who["kyc_reviewer"], f"/v1/kyc/{case['case_number']}/decisions", {"action": "approve"}
    )
    assert decided.json()["stage"] == "approved"

    # 3. A loan through two approval levels, disbursed to savings.
    product = (await post(api, who["admin"], "/v1/loan-products", product_body())).json()["code"]
    loan = (
        await post(
            api,
            teller,
            "/v1/loans",
            {
                "member_number": member,
                "product": product,
                "principal": "1500.00",
                "repayments": 6,
                "purpose": "market stall",
            },
        )
    ).json()["loan_number"]
    await post(api, who["loan_officer"], f"/v1/loans/{loan}/decisions", {"action": "approve"})
    final = await post(api, manager, f"/v1/loans/{loan}/decisions", {"action": "approve"})
    assert final.json()["state"] == "approved", final.text
    disbursing = await post(
        api, manager, f"/v1/loans/{loan}/disbursements", {"destination": "savings"}
    )
    await temporal_client.get_workflow_handle(disbursing.json()["workflow_id"]).result()

    # 4. A repayment from savings, then its reversal (maker-checker).
    repaid = await post(
        api, teller, f"/v1/loans/{loan}/repayments", {"amount": "150.00", "source": "savings"}
    )
    journal = repaid.json()["journal_id"]
    await post(
        api,
        teller,
        f"/v1/journals/{journal}/reversals",
        {"reason_code": "wrong_account", "reason": "taken from the wrong account"},
    )
    reversed_ = await post(
        api,
        manager,
        f"/v1/journals/{journal}/reversals/decisions",
        {"approve": True, "reason": "member confirmed"},
    )
    assert reversed_.json()["reversal_journal_id"], reversed_.text

    # Every history on the server, raw.
    expected = {f"kyc-{member}", f"loan-{loan}", disbursing.json()["workflow_id"]}
    runs = await settled(temporal_client, worker, expected)

    # The notifications went out (once every process ended), to the address in Postgres.
    async with sessions() as session:
        sent = set(
            await session.scalars(
                select(Notification.template).where(Notification.recipient == person.email)
            )
        )
    assert {
        "kyc_approved",
        "loan_approved",
        "loan_disbursed",
        "loan_repayment_received",
        "reversal_completed",
    } <= sent, sent

    types = set()
    codec = EncryptionCodec(settings.payload_keys)
    decoded_text: list[str] = []
    needles = [n.lower() for n in person.needles()]
    for workflow_id, run_id in runs:
        history = await raw_history(temporal_client, workflow_id, run_id)
        types.add(history.events[0].workflow_execution_started_event_attributes.workflow_type.name)
        stored = history.SerializeToString().lower()
        for needle in needles:
            assert needle.encode() not in stored, (workflow_id, needle)
        for event in history.events:
            for where, payload in payloads_in(event):
                if is_search_attribute(where):
                    assert payload.metadata["encoding"] in (b"json/plain", b"binary/null")
                    continue
                marker = event.marker_recorded_event_attributes
                if marker.marker_name == PATCH_MARKER:
                    continue  # written by the SDK's core, not the codec: the patch id only
                if marker.marker_name == LOCAL_ACTIVITY_MARKER and any(
                    payload == p for p in marker.details["data"].payloads
                ):
                    # Core's own record of the local activity (its result is the codec's).
                    assert set(json.loads(payload.data)) <= LOCAL_ACTIVITY_DATA, payload.data
                    continue
                assert payload.metadata["encoding"] == ENCODING, (workflow_id, where)
                [plain] = await codec.decode([payload])
                text = plain.data.decode()
                for needle in needles:
                    assert needle not in text.lower(), (workflow_id, where, needle, text)
                decoded_text.append(text)
        described = await temporal_client.get_workflow_handle(workflow_id, run_id=run_id).describe()
        shown = f"{await described.memo()} {described.typed_search_attributes}".lower()
        for needle in needles:
            assert needle not in shown, (workflow_id, needle)

    assert {"KycReview", "LoanApproval", "Disbursement", "LoanRepayment", "Reversal"} <= types
    everything = "\n".join(decoded_text)
    for needed in (member, loan, journal, account, "150000", "approved", "completed"):
        assert needed in everything, needed  # what ops read in the Web UI


@pytest.mark.parametrize("where", ["memo", "search attribute"])
def test_payload_scan_finds_what_it_looks_for(where: str) -> None:
    """The scanner above walks nested messages and maps: a payload it cannot see would pass."""
    from temporalio.api.common.v1 import Memo, SearchAttributes
    from temporalio.api.history.v1 import (
        HistoryEvent,
        WorkflowExecutionStartedEventAttributes,
    )

    payload = Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')
    attrs = WorkflowExecutionStartedEventAttributes(
        memo=Memo(fields={"k": payload}) if where == "memo" else None,
        search_attributes=SearchAttributes(indexed_fields={"k": payload})
        if where == "search attribute"
        else None,
    )
    event = HistoryEvent(workflow_execution_started_event_attributes=attrs)
    [(field, found)] = list(payloads_in(event))
    assert found == payload
    assert is_search_attribute(field) == (where == "search attribute")
