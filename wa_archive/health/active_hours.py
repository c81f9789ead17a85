"""The hours a business number is expected to be active, in a named time zone.

Written as `WA_ARCHIVE_SILENCE_ACTIVE_HOURS`: one or more rules separated by `;`, then the zone, e.g.
`Mon-Fri 08:00-18:00 Europe/London` or `Mon-Fri 08:00-18:00; Sat 09:00-13:00 America/New_York`.
Days are `Mon`…`Sun`, ranges (`Mon-Fri`, `Fri-Mon`) and lists (`Mon,Wed,Fri`); a window ending at or
before its start runs past midnight (`Mon-Fri 22:00-06:00`); `24:00` ends a day. `always` (the
default) is every hour of every day. Parsing is strict: anything else is a ValueError saying what.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RULE = re.compile(r"^(?P<days>[A-Za-z,\-]+)\s+(?P<start>\d{2}:\d{2})-(?P<end>\d{2}:\d{2})$")
ALWAYS = "always"


@dataclass(frozen=True)
class Window:
    """Active from `start` for `length` on each of `weekdays` (0 = Monday), in local time."""

    weekdays: frozenset[int]
    start: time
    length: timedelta


@dataclass(frozen=True)
class ActiveHours:
    """A weekly schedule in a time zone; no windows means always active."""

    windows: tuple[Window, ...]
    zone: ZoneInfo | None

    @property
    def always(self) -> bool:
        return not self.windows

    def active_seconds(self, since: datetime, until: datetime, *, enough: float) -> float:
        """Seconds of active time between two instants, counted back from `until` and stopping once
        past `enough` (so a number silent for months costs no more than one silent for an hour)."""
        if until <= since:
            return 0.0
        if self.always or self.zone is None:
            return (until - since).total_seconds()
        total = 0.0
        day = until.astimezone(self.zone).date()
        # Windows are counted on the local day they start. One lasts at most a day, so the windows of
        # a day whose day-after-next begins before `since` are all over by then; a week without active
        # time cannot happen (parse refuses it), so this ends.
        while total <= enough and datetime.combine(day + timedelta(days=2), time(0), self.zone) > since:
            total += self._overlap_on(day, since, until)
            day -= timedelta(days=1)
        return total

    def _overlap_on(self, day: date, since: datetime, until: datetime) -> float:
        """Active seconds within [since, until) of the windows that start on local `day`."""
        total = 0.0
        for start, end in self._intervals(day):
            lo, hi = max(start, since), min(end, until)
            if hi > lo:
                total += (hi - lo).total_seconds()
        return total

    def _intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        """The UTC intervals of the windows starting on local `day` (wall-clock arithmetic, so a DST
        change shortens or lengthens the day's window as a clock on the wall would)."""
        assert self.zone is not None
        out = []
        for window in self.windows:
            if day.weekday() in window.weekdays:
                local_start = datetime.combine(day, window.start, self.zone)
                local_end = datetime.combine(day, window.start, tzinfo=None) + window.length
                start = local_start.astimezone(timezone.utc)
                end = local_end.replace(tzinfo=self.zone).astimezone(timezone.utc)
                out.append((start, end))
        return out

    def is_active(self, at: datetime) -> bool:
        """Whether `at` falls in an active window."""
        if self.always or self.zone is None:
            return True
        day = at.astimezone(self.zone).date()
        return any(start <= at < end for d in (day - timedelta(days=1), day) for start, end in self._intervals(d))


def _clock(text: str, *, end: bool) -> time | None:
    """HH:MM, or 24:00 as the end of a day (None)."""
    hours, minutes = int(text[:2]), int(text[3:])
    if end and hours == 24 and minutes == 0:
        return None
    if hours > 23 or minutes > 59:
        raise ValueError(f"{text!r} is not a time of day (00:00 to 23:59, or 24:00 as an end)")
    return time(hours, minutes)


def _day(name: str) -> int:
    try:
        return DAYS.index(name.lower())
    except ValueError:
        raise ValueError(f"{name!r} is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)") from None


def _weekdays(text: str) -> frozenset[int]:
    days: set[int] = set()
    for part in text.split(","):
        if "-" in part:
            first, _, last = part.partition("-")
            a, b = _day(first), _day(last)
            days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
        else:
            days.add(_day(part))
    return frozenset(days)


def parse_active_hours(value: str) -> ActiveHours:
    """Parse the setting; ValueError naming what is wrong (the caller names the variable)."""
    text = value.strip()
    if text.lower() == ALWAYS:
        return ActiveHours((), None)
    rules, _, zone_name = text.rpartition(" ")
    if not rules.strip():
        raise ValueError(f"expected rules then a time zone, e.g. 'Mon-Fri 08:00-18:00 Europe/London', or "
                         f"'{ALWAYS}'; got {value!r}")
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{zone_name!r} is not a time zone name such as Europe/London or UTC") from None
    windows = []
    for rule in rules.split(";"):
        match = _RULE.match(rule.strip())
        if match is None:
            raise ValueError(f"{rule.strip()!r} is not a rule such as 'Mon-Fri 08:00-18:00'")
        start = _clock(match["start"], end=False)
        assert start is not None
        end = _clock(match["end"], end=True)
        start_delta = timedelta(hours=start.hour, minutes=start.minute)
        end_delta = timedelta(days=1) if end is None else timedelta(hours=end.hour, minutes=end.minute)
        length = end_delta - start_delta if end_delta > start_delta else end_delta + timedelta(days=1) - start_delta
        windows.append(Window(_weekdays(match["days"]), start, length))
    return ActiveHours(tuple(windows), zone)
