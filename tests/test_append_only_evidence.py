"""The consent log and who held each identifier are history: their rows refuse UPDATE and DELETE by
trigger, to the schema owner too (the application role has no such grant to begin with)."""

from __future__ import annotations

from datetime import datetime, timezone

import asyncpg
import pytest

from tests.test_consent_log import _evidence, _phone, _record


@pytest.mark.parametrize("statement", [
    "UPDATE consent_entries SET state = 'opted_in' WHERE id = $1",
    "DELETE FROM consent_entries WHERE id = $1",
    "UPDATE contact_links SET linked_at = linked_at WHERE consent_entry_id = $1",
    "DELETE FROM contact_links WHERE consent_entry_id = $1",
    "UPDATE contacts SET created_at = created_at WHERE id = (SELECT contact_id FROM consent_entries WHERE id = $1)",
    "DELETE FROM contacts WHERE id = (SELECT contact_id FROM consent_entries WHERE id = $1)",
], ids=["update-consent", "delete-consent", "update-link", "delete-link", "update-contact", "delete-contact"])
async def test_consent_entries_contacts_and_their_links_refuse_change_even_to_the_owner(clean_db, owner_pool, statement):
    entry, new = await _record(clean_db, _evidence(_phone(), "opted_out", datetime(2026, 3, 1, tzinfo=timezone.utc)))
    assert new
    table = statement.split()[2] if statement.startswith("DELETE") else statement.split()[1]
    # The row the statement aims at exists, so a refusal is the trigger's and not an empty match.
    target = {"consent_entries": "SELECT count(*) FROM consent_entries WHERE id = $1",
              "contact_links": "SELECT count(*) FROM contact_links WHERE consent_entry_id = $1",
              "contacts": "SELECT count(*) FROM contacts WHERE id ="
                          " (SELECT contact_id FROM consent_entries WHERE id = $1)"}[table]
    assert await clean_db.fetchval(target, entry) >= 1
    with pytest.raises(asyncpg.RaiseError, match=f"{table} is append-only"):
        await owner_pool.execute(statement, entry)
    assert await clean_db.fetchval(target, entry) >= 1
