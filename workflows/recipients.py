"""How a workflow names whom it notifies: a member's or staff user's id, never a name or address.

`send_notification` looks the person up in Postgres; nothing personal enters the history.

Before this, workflows first ran a contact lookup activity (kyc_member_contact,
kyc_staff_contacts, loan_member_recipient, loan_staff_recipients) whose result carried the
address and name, then sent to the address. A workflow that was running then replays those
lookups from its history, so the change is behind `workflow.patched`: one patch for member
notices, one for staff reminders. A run that already took the old path for one of them keeps it
for that kind (patched() is memoized per run), so the old lookups stay registered on the worker
until no such run is open: KYC cases expire after 30 days of waiting, loan approvals end with
their guarantor, approval and return timeouts. Then the `else` branches, these helpers' legacy
half and the lookups can go (deprecate_patch first).
"""

from __future__ import annotations

from typing import Any

MEMBER_PATCH = "recipient-ids-member"
STAFF_PATCH = "recipient-ids-staff"


def member(member_id: int) -> dict[str, Any]:
    """NotificationRequest fields naming a member."""
    return {"recipient_kind": "member", "recipient_id": member_id}


def staff(user_id: int) -> dict[str, Any]:
    """NotificationRequest fields naming a staff user."""
    return {"recipient_kind": "staff", "recipient_id": user_id}


def legacy(email: str, name: str) -> dict[str, Any]:
    """NotificationRequest fields of a run from before recipient ids (its lookup's result)."""
    return {"recipient": email, "recipient_name": name}
