"""The chaos suite's books catch what they exist to catch, on a real stack without faults: a
journal no answer named (duplicated), a journal an answer named that never posted (lost), and
the balance that follows from either (mismatched)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest

from bench.chaos.books import Books, Verdict, compare_accounts, major, snapshot
from bench.chaos.client import Api
from bench.chaos.setup import CURRENCY, fund, login_staff, verified_member
from bench.chaos.stack import Stack


@pytest.mark.slow
async def test_the_books_find_an_unanswered_and_a_missing_journal() -> None:
    stack = Stack(Path(tempfile.mkdtemp(prefix="bankflow-chaos-books-")))
    await asyncio.to_thread(stack.start)
    api = Api(stack.api_url, request_bound=120)
    try:
        await login_staff(api)
        member = await verified_member(api, "books", 0)
        books = Books()
        await snapshot(api, books, list(member.accounts))
        await fund(api, books, member, 0)
        clean = Verdict()
        assert await compare_accounts(api, books, clean, "month-end:", set()) == 0
        assert (clean.lost, clean.duplicated, clean.mismatched) == (0, 0, 0), clean.findings

        first, second = member.accounts
        body = {"kind": "deposit", "amount": major(1234), "currency": CURRENCY}
        unbooked = await api.command(
            "deposit", "teller1", "/v1/movements", {**body, "to_account": first}
        )
        assert unbooked.status == 201
        books.post("movement-never-posted:post", {second: 5000})
        verdict = Verdict()
        await compare_accounts(api, books, verdict, "month-end:", set())
        assert (verdict.lost, verdict.duplicated, verdict.mismatched) == (1, 1, 2), verdict.findings
        assert any(unbooked.body["journal_id"] in f for f in verdict.findings)
    finally:
        await api.close()
        await asyncio.to_thread(stack.stop)
