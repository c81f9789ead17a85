"""Disposition's own safeguards, each pinned alone: the due list and `dispose_message` each honour
retain-until and legal hold by themselves.

Text-only messages, so that no object in the store (locked or held) refuses in their place, and a
disposal that got past `dispose_message`'s own checks would meet only the database's functions.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from tests.test_retention import DAY, _archive
from wa_archive.errors import RetentionActive
from wa_archive.retention import holds
from wa_archive.retention import policies as retention
from wa_archive.retention.disposition import Disposer


async def _three_text_messages(stack) -> tuple[dict, dict, dict]:
    """One past retention, one within it, one past it but on legal hold; all text, no media."""
    await retention.set_policy(stack.pool, scope="*", days=30, legal_basis="test: 30 days", set_by="test")
    now = int(time.time())
    # The held one first: its minimum lock lapses before the due one's, so once the due one is due,
    # only its hold keeps the held one.
    held = await _archive(stack, phone="447700900012", ts=now - 730 * DAY, media=False)
    recent = await _archive(stack, phone="447700900011", ts=now, media=False)
    due = await _archive(stack, phone="447700900011", ts=now - 730 * DAY, media=False)
    assert not (due["media"] or recent["media"] or held["media"])
    await holds.set_hold(stack.pool, stack.store, case_id=f"CASE-{uuid.uuid4().hex[:6]}", phone="447700900012",
                         since=None, until=None, reason="subpoena", actor="test", role="admin")
    return due, recent, held


async def _wait_until_due(disposer: Disposer, message_id: str, timeout: float = 30) -> list[dict]:
    """The due list once `message_id` is on it (its minimum lock of a second has lapsed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        due = await disposer.due()
        if message_id in [d["id"] for d in due]:
            return due
        await asyncio.sleep(0.2)
    raise AssertionError(f"{message_id} never became due within {timeout}s")


async def _past_retention(stack, message_id: str) -> bool:
    return await stack.pool.fetchval("SELECT retain_until <= now() FROM messages WHERE id = $1", message_id)


async def test_due_list_leaves_out_what_is_within_retention_or_on_hold(stack_factory):
    stack = await stack_factory(min_lock_seconds=1)
    due, recent, held = await _three_text_messages(stack)
    disposer = Disposer(stack.pool, stack.store, None)
    listed = await _wait_until_due(disposer, due["id"])
    # The same query that lists the due message judged the other two: within retention, and on hold
    # although its retention is over.
    assert await _past_retention(stack, held["id"])
    assert [d["id"] for d in listed] == [due["id"]]
    assert [d["id"] for d in await disposer.due(phone="447700900012")] == []
    assert await disposer.held_past_retention() == 1


async def test_dispose_message_refuses_what_is_within_retention_or_on_hold(stack_factory):
    stack = await stack_factory(min_lock_seconds=1)
    due, recent, held = await _three_text_messages(stack)
    disposer = Disposer(stack.pool, stack.store, None)
    await _wait_until_due(disposer, due["id"])
    assert await _past_retention(stack, held["id"])  # only its hold protects it

    with pytest.raises(RetentionActive, match="retained until"):
        await disposer.dispose_message(recent["id"])
    with pytest.raises(RetentionActive, match="legal hold"):
        await disposer.dispose_message(held["id"])
    for kept in (recent, held):
        assert await stack.pool.fetchval("SELECT count(*) FROM messages WHERE id = $1", kept["id"]) == 1
    assert await stack.pool.fetchval("SELECT count(*) FROM dispositions") == 0

    done = await disposer.dispose_message(due["id"])  # the same path removes what is due
    assert done is not None and done["message_id"] == due["id"]
    assert await stack.pool.fetchval("SELECT count(*) FROM messages WHERE id = $1", due["id"]) == 0
