"""What a `since`/`until` given by a person means: one rule for the CLI, the API and the pages.

A date without a time (2026-11-26) means that whole UTC day: as `since` it starts at that day's
00:00 UTC, as `until` it ends at the next day's 00:00 UTC, so "from 2026-11-26 until 2026-11-26"
is the whole of the 26th. A timestamp means that instant (UTC when it names no offset); as `until`
it is exclusive. A period whose until is not later than its since, after that reading, selects
nothing and is refused, so that a swapped pair is never answered with "0 messages".
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from wa_archive.errors import FilterError


def _as_date(value: str) -> date | None:
    """The date when `value` is a date alone (2026-11-26, 20261126, 2026-W48-4), else None."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _at(day: date, name: str, value: str) -> datetime:
    try:
        return datetime.combine(day, time(), tzinfo=timezone.utc)
    except OverflowError:
        raise FilterError(name, f"{value[:40]!r} is out of range") from None


def parse_when(value: str, name: str = "date") -> datetime:
    """The first instant `value` names: a date's 00:00 UTC, or the timestamp itself (in UTC)."""
    day = _as_date(value)
    if day is not None:
        return _at(day, name, value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise FilterError(name, f"{value[:40]!r} is not a date (YYYY-MM-DD) or ISO timestamp") from None
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    try:  # the database compares in UTC: 0001-01-01T00:00+14:00 has no UTC instant in Python's range
        return parsed.astimezone(timezone.utc)
    except OverflowError:
        raise FilterError(name, f"{value[:40]!r} is out of range") from None


def parse_until(value: str, name: str = "until") -> datetime:
    """The exclusive end `value` names: after a date's whole day (the next day's 00:00 UTC), or the
    timestamp itself."""
    day = _as_date(value)
    if day is None:
        return parse_when(value, name)
    if day == date.max:
        raise FilterError(name, f"{value[:40]!r} is out of range")
    return _at(day + timedelta(days=1), name, value)


def _utc_text(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f").removesuffix(".000000") + " UTC"


def check_period(since: datetime | None, until: datetime | None) -> None:
    """Refuse a period that selects nothing: its until (exclusive) not later than its since."""
    if since is not None and until is not None and until <= since:
        raise FilterError("until", f"the period is empty: it starts {_utc_text(since)} (since) and ends"
                                   f" {_utc_text(until)} (until, exclusive; an until date ends after its whole day)")


def parse_period(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    """Both ends of a period as given (None: open on that side), read by the rule above and checked."""
    start = parse_when(since, "since") if since is not None else None
    end = parse_until(until, "until") if until is not None else None
    check_period(start, end)
    return start, end
