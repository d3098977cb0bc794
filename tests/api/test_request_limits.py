"""The request guard: a body limit per route enforced while streaming, and the caller's token
checked before a single body byte of a command is read."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

from httpx import AsyncClient
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.tables import IdempotencyRecord, KycDocument, Member, StaffUser
from schemas.settings import Settings
from tests.api.conftest import Staff, new_staff
from tests.api.test_members_accounts import member_body

Idem = Callable[[], dict[str, str]]
CHUNK = 64 * 1024
BOUNDARY = "bankflow-test-boundary"


class Body:
    """A request body streamed in chunks (no Content-Length), counting what the app pulled."""

    def __init__(self, head: bytes, filler: int, tail: bytes = b"") -> None:
        self.head, self.filler, self.tail = head, filler, tail
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks():
            self.pulled += len(chunk)
            yield chunk

    def _chunks(self) -> list[bytes]:
        chunks = [self.head]
        chunks += [b" " * CHUNK] * (self.filler // CHUNK)
        return [*chunks, self.tail]

    @property
    def size(self) -> int:
        return len(self.head) + self.filler // CHUNK * CHUNK + len(self.tail)


def upload_body(size: int) -> Body:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="doc_type"\r\n\r\nphoto\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode() + b"\x89PNG\r\n\x1a\n"
    return Body(head, size, f"\r\n--{BOUNDARY}--\r\n".encode())


UPLOAD_TYPE = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


async def count(sessions: async_sessionmaker[AsyncSession], model: type, *where: object) -> int:
    async with sessions() as session:
        query = select(func.count()).select_from(model).where(*where)  # type: ignore[arg-type]
        return int(await session.scalar(query) or 0)


async def new_member(client: AsyncClient, teller: Staff, idem: Idem) -> str:
    r = await client.post("/v1/members", json=member_body(), headers=teller.headers | idem())
    assert r.status_code == 201, r.text
    return str(r.json()["member_number"])


async def test_a_disabled_users_upload_is_refused_before_its_body_is_read(
    client: AsyncClient,
    staff: dict[str, Staff],
    idem: Idem,
    sessions: async_sessionmaker[AsyncSession],
    api_settings: Settings,
) -> None:
    member = await new_member(client, staff["teller"], idem)
    dismissed = await new_staff(sessions, api_settings, "teller")
    async with sessions() as session, session.begin():
        await session.execute(
            update(StaffUser).where(StaffUser.id == dismissed.id).values(is_active=False)
        )
    for headers in (dismissed.headers | idem(), {"Authorization": "Bearer not-a-token"}, {}):
        body = upload_body(8 * 1024 * 1024)
        r = await client.post(
            f"/v1/members/{member}/kyc/documents",
            content=body,
            headers=headers | UPLOAD_TYPE,
        )
        assert r.status_code == 401 and r.json()["error"] == "Unauthenticated", r.text
        assert body.pulled == 0  # not one byte held for a caller who is nobody
    assert await count(sessions, KycDocument, KycDocument.uploaded_by == dismissed.username) == 0


async def test_json_over_the_limit_is_413_and_leaves_the_key_free(
    client: AsyncClient,
    staff: dict[str, Staff],
    idem: Idem,
    sessions: async_sessionmaker[AsyncSession],
    api_settings: Settings,
) -> None:
    limit = api_settings.request_max_bytes
    headers = staff["teller"].headers | idem() | {"Content-Type": "application/json"}
    body = member_body()
    padded = json.dumps(body | {"phone": "+1" + " " * limit}).encode()
    declared = await client.post("/v1/members", content=padded, headers=headers)
    streamed_body = Body(json.dumps(body)[:-1].encode() + b', "x": "', limit + 4 * CHUNK, b'"}')
    streamed = await client.post("/v1/members", content=streamed_body, headers=headers)
    for r in (declared, streamed):
        assert r.status_code == 413, r.text
        assert r.json() == {
            "error": "RequestTooLarge",
            "detail": f"the request body is larger than the {limit}-byte limit",
        }
    assert streamed_body.pulled <= limit + 2 * CHUNK < streamed_body.size
    assert await count(sessions, Member, Member.last_name == body["last_name"]) == 0
    assert (
        await count(
            sessions, IdempotencyRecord, IdempotencyRecord.key == headers["Idempotency-Key"]
        )
        == 0
    )
    fixed = await client.post("/v1/members", json=body, headers=headers)
    assert fixed.status_code == 201, fixed.text


async def test_an_upload_over_the_kyc_limit_is_413_while_streaming(
    client: AsyncClient,
    staff: dict[str, Staff],
    idem: Idem,
    sessions: async_sessionmaker[AsyncSession],
    api_settings: Settings,
) -> None:
    teller = staff["teller"]
    member = await new_member(client, teller, idem)
    limit = api_settings.kyc_upload_max_bytes
    body = upload_body(limit + 4 * CHUNK)
    r = await client.post(
        f"/v1/members/{member}/kyc/documents",
        content=body,
        headers=teller.headers | UPLOAD_TYPE | idem(),
    )
    assert r.status_code == 413, r.text
    assert r.json() == {
        "error": "DocumentTooLarge",
        "detail": f"the upload is larger than the {limit}-byte limit",
    }
    assert body.pulled < body.size
    async with sessions() as session:
        member_id = await session.scalar(select(Member.id).where(Member.member_number == member))
    assert await count(sessions, KycDocument, KycDocument.member_id == member_id) == 0


async def test_one_key_on_two_routes_is_two_requests(
    client: AsyncClient, staff: dict[str, Staff], idem: Idem
) -> None:
    headers = staff["teller"].headers | idem()
    member = await client.post("/v1/members", json=member_body(), headers=headers)
    assert member.status_code == 201, member.text
    number = member.json()["member_number"]
    account = await client.post(
        f"/v1/members/{number}/accounts", json={"currency": "USD"}, headers=headers
    )
    assert account.status_code == 201, account.text
    assert account.json()["member_number"] == number
    again = await client.post(
        f"/v1/members/{number}/accounts", json={"currency": "USD"}, headers=headers
    )
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == account.json()
