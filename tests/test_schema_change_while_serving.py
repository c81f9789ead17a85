"""A migration that changes a table's row type while servers run (issue 16's one-statement pages).

A page selects each message's media as an array of the media table's row type, whose layout asyncpg
caches per connection. A column added to `media` by a migration applied beside running servers made the
next page on every pooled connection fail once (asyncpg drops its stale layout and raises
OutdatedSchemaCacheError): an auditor's search answered 500 once per connection after each deploy.
"""

from __future__ import annotations

from datetime import datetime, timezone

from tests.conftest import DatabaseUrls, scratch_database
from wa_archive.db import create_pool, migrate, queries
from wa_archive.devstack.embedded import APP_ROLE
from wa_archive.discovery.search import Filters, search


async def test_a_page_is_read_whole_after_a_column_is_added_to_media_while_serving(database_urls: DatabaseUrls):
    async with scratch_database(database_urls, "wa_schema") as (owner_url, app_url):
        await migrate(owner_url, app_role=APP_ROLE)
        owner = await create_pool(owner_url, max_size=1)
        pool = await create_pool(app_url, max_size=1)  # one connection: the one whose cache goes stale
        try:
            await owner.execute(
                "INSERT INTO messages (id, source, direction, type, ts, contact_phone, archive_status, payload)"
                " VALUES ('wamid.SCHEMA1', 'meta', 'in', 'image', $1, '447700900123', 'archived', '{}')",
                datetime(2026, 1, 5, tzinfo=timezone.utc))
            await owner.execute("INSERT INTO media (message_id, position, media_id, kind, status)"
                                " VALUES ('wamid.SCHEMA1', 0, 'm1', 'image', 'failed')")
            filters = Filters(phone="447700900123", limit=10)
            before, _ = await search(pool, filters, columns=queries.LISTED_WITH_MEDIA)
            assert [m["media_id"] for m in before[0]["media_rows"]] == ["m1"]

            await owner.execute("ALTER TABLE media ADD COLUMN added_by_a_later_migration text")
            after, _ = await search(pool, filters, columns=queries.LISTED_WITH_MEDIA)
            assert queries.listed(after) == queries.listed(before)
            assert after[0]["media_rows"][0]["added_by_a_later_migration"] is None
        finally:
            await pool.close()
            await owner.close()
