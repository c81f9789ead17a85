"""Search cursors: any value decodes to a position or is refused by name, and a cursor round-trips."""

from __future__ import annotations

from hypothesis import given, settings

from tests.strategies import cursors
from wa_archive.sources.meta.samples import wamid


@settings(max_examples=300, deadline=None)
@given(cursors())
def test_any_cursor_decodes_or_is_refused_by_name(value):
    from datetime import datetime

    from wa_archive.discovery.search import parse_filters
    from wa_archive.errors import FilterError

    try:
        filters = parse_filters({"cursor": value})
    except FilterError as exc:
        assert exc.name == "cursor"
    else:
        ts, message_id = filters.cursor
        assert isinstance(ts, datetime) and ts.tzinfo is not None and isinstance(message_id, str)
        assert "\x00" not in message_id


def test_a_cursor_round_trips():
    from datetime import datetime, timezone

    from wa_archive.discovery.search import encode_cursor, parse_filters

    ts = datetime(2026, 3, 1, 12, 30, tzinfo=timezone.utc)
    mid = wamid()
    assert parse_filters({"cursor": encode_cursor(ts, mid)}).cursor == (ts, mid)
