"""Disposition's own safeguards, each pinned alone: the due list and `dispose_message` each honour
retain-until and legal hold by themselves.

Text-only messages, so that no object in the store (locked or held) refuses in their place, and a
disposal that got past `dispose_message`'s own checks would meet only the database's functions.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.conftest import wait_until
from tests.test_retention import DAY, _archive
from wa_archive.errors import RetentionActive
from wa_archive.retention import holds
from wa_archive.retention import policies as retention
from wa_archive.retention.disposition import Disposer


async def _three_text_messages(stack) -> tuple[dict, dict, dict]:
    """One past retention, one within it, one past it but on legal hold; all text, no media."""
    await retention.set_policy(stack.pool, scope="*", days=30, legal_basis="test: 30 days", set_by="test")
    now = int(time.time())
    held = await _archive(stack, phone="447700900012", ts=now - 730 * DAY, media=False)
    recent = await _archive(stack, phone="447700900011", ts=now, media=False)
    due = await _archive(stack, phone="447700900011", ts=now - 730 * DAY, media=False)
    assert not (due["media"] or recent["media"] or held["media"])
    await holds.set_hold(stack.pool, stack.store, case_id=f"CASE-{uuid.uuid4().hex[:6]}", phone="447700900012",
                         since=None, until=None, reason="subpoena", actor="test", role="admin")
    return due, recent, held


async def _wait_past_retention(stack, *message_ids: str) -> None:
    """Until every one of `message_ids` is past its retain-until (their minimum lock of a second lapses),
    judged by the database's clock, which the due list and the disposal functions use."""
    await wait_until(lambda: stack.pool.fetchval(
        "SELECT bool_and(retain_until <= now()) FROM messages WHERE id = ANY($1)", list(message_ids)),
        f"{message_ids} past retention", timeout=30, interval=0.2)


@pytest.mark.slow
async def test_due_list_leaves_out_what_is_within_retention_or_on_hold(stack_factory):
    stack = await stack_factory(min_lock_seconds=1)
    due, recent, held = await _three_text_messages(stack)
    disposer = Disposer(stack.pool, stack.store, None)
    await _wait_past_retention(stack, due["id"], held["id"])
    # The query that lists the due message leaves out the other two: one within retention, one on
    # hold although its retention is over.
    assert [d["id"] for d in await disposer.due()] == [due["id"]]
    assert [d["id"] for d in await disposer.due(phone="447700900012")] == []
    assert await disposer.held_past_retention() == 1


@pytest.mark.slow
async def test_dispose_message_refuses_what_is_within_retention_or_on_hold(stack_factory):
    stack = await stack_factory(min_lock_seconds=1)
    due, recent, held = await _three_text_messages(stack)
    disposer = Disposer(stack.pool, stack.store, None)
    await _wait_past_retention(stack, due["id"], held["id"])  # only its hold protects the held one

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
