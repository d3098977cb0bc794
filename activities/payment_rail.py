"""The payment-rail adapter: one payout per disbursement, over HTTP.

POST `<payment_rail_url>/payouts` with `Idempotency-Key: <disbursement workflow id>`: the rail
keeps the key, so a retry after a timeout or a worker crash (the request may have arrived) is the
same payout, never a second one.

Answers: 2xx with a `reference` = accepted; 400/422 = rejected for good (non-retryable
PayoutRejected with the rail's reason); 5xx, other statuses, connection errors and timeouts
propagate, and Temporal retries with backoff until the workflow's payout deadline.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import as_application_error
from domain.money import to_major
from schemas.disbursements import PayoutRequest, PayoutResult
from schemas.errors import BankflowError, ErrorCode
from schemas.settings import Settings

REJECTED_STATUSES = frozenset({400, 422})


def payout_body(req: PayoutRequest) -> dict[str, Any]:
    return {
        "amount": to_major(req.amount_minor, req.scale),
        "currency": req.currency,
        "bank_code": req.account.bank_code,
        "account_number": req.account.account_number,
        "account_name": req.account.account_name,
        "reference": req.reference,
    }


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        return str(body.get("reason") or body.get("detail") or body)[:200]
    return str(body)[:200]


async def send_payout(settings: Settings, req: PayoutRequest, limit: timedelta) -> PayoutResult:
    """One HTTP attempt; the caller's retry policy makes the attempts."""
    async with httpx.AsyncClient(
        base_url=settings.payment_rail_url, timeout=limit.total_seconds()
    ) as client:
        response = await client.post(
            "/payouts", json=payout_body(req), headers={"Idempotency-Key": req.idempotency_key}
        )
    if response.status_code in REJECTED_STATUSES:
        raise as_application_error(
            BankflowError(ErrorCode.PAYOUT_REJECTED, f"the rail rejected it: {_reason(response)}")
        )
    if response.is_success:
        reference = response.json().get("reference")
        if reference:
            return PayoutResult(reference=str(reference))
    # A 5xx, a 2xx without a reference, anything else: retryable (the key keeps it one payout).
    raise ApplicationError(f"payment rail answered {response.status_code}: {_reason(response)}")


class PaymentRailActivities:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @activity.defn(name="send_payout")
    async def send_payout(self, req: PayoutRequest) -> PayoutResult:
        # Give up on the HTTP call a little before Temporal gives up on the attempt, so the
        # attempt ends with the rail's own timeout rather than a lost worker's.
        limit = activity.info().start_to_close_timeout or timedelta(seconds=30)
        return await send_payout(self.settings, req, limit * 0.8)

    def all(self) -> list[Any]:
        return [self.send_payout]
