"""Refused attempts (401 and 403) in the access log, without letting a caller with no token grow it
without bound.

Every access-log entry is permanent (append-only, with a ledger leaf that is never removed), so one
entry per refused request would let anyone who can reach the server write to the archive's
permanent record as fast as they can send requests. Instead, per source address, caller and reason,
the first refusal of each clock minute is written at once (before the 401 or 403 is sent); the
refusals that follow it in that minute are counted, and one entry saying how many there were is
written when the minute is over. At most MAX_SOURCES keys get entries of their own in a minute;
refusals beyond them are counted together per reason, except that a caller whose token was valid
(refused for its role) always gets its first entry of the minute, under its name. A server process
therefore writes at most about 2 x MAX_SOURCES + 4 refused entries a minute whatever an
unauthenticated client sends (plus two per issued token refused in that minute), and an auditor still
sees who was refused, why, from where, and how often. The counts of the current minute live in memory:
a process that dies loses them (its first refusals are already written), and a clean stop writes them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import asyncpg
import structlog

from wa_archive.access.access_log import record_access

log = structlog.get_logger("wa_archive.access")

WINDOW_SECONDS = 60
MAX_SOURCES = 100
# Paths are the attacker's text: enough to say what was asked for, not a place to store a document.
MAX_PATH_CHARS = 300
REASONS = ("no_token", "invalid_token", "role_not_allowed", "not_signed_in",
           # one-time sign-in links (wa_archive/access/sign_in_links.py)
           "sign_in_link_unknown", "sign_in_link_used", "sign_in_link_expired", "sign_in_link_token_revoked")
ACTION = "refused"
OTHER_SOURCES = "(other sources)"
UNKNOWN_ACTOR, NO_ROLE = "unknown", "none"


@dataclass(frozen=True)
class Refusal:
    """One refused request: why, what it asked for, from where, and who when the token was valid."""

    reason: str
    method: str
    path: str
    remote: str | None
    actor: str = UNKNOWN_ACTOR
    role: str = NO_ROLE

    @property
    def key(self) -> tuple[str | None, str, str, str]:
        return self.remote, self.actor, self.role, self.reason


@dataclass
class _Repeats:
    count: int
    method: str
    path: str


class RefusalLog:
    """Writes refused attempts to the access log, one entry per source, caller and reason a minute plus
    one count of the rest (see the module's docstring)."""

    def __init__(self, pool: asyncpg.Pool, *, clock: Callable[[], float] = time.time,
                 max_sources: int = MAX_SOURCES) -> None:
        self.pool = pool
        self.clock = clock
        self.max_sources = max_sources
        self._window = self._current_window()
        self._seen: set[tuple[str | None, str, str, str]] = set()
        self._repeats: dict[tuple[str | None, str, str, str], _Repeats] = {}

    def _current_window(self) -> int:
        return int(self.clock() // WINDOW_SECONDS)

    async def note(self, refusal: Refusal) -> None:
        """Record one refusal: written now when it is the first of its kind this minute, counted otherwise.
        Never raises: the request is refused either way, and nothing was read."""
        await self.roll()
        key = refusal.key
        if key not in self._seen and len(self._seen) >= self.max_sources:
            # Sources beyond the limit share a key; a caller whose token was valid keeps its own, so that
            # a flood from many addresses cannot take the name off a known caller's refusal. Tokens are
            # issued by an admin: their number bounds these keys.
            key = (OTHER_SOURCES, refusal.actor, refusal.role, refusal.reason)
        if key in self._seen or (key[0] == OTHER_SOURCES and refusal.actor == UNKNOWN_ACTOR):
            repeats = self._repeats.setdefault(key, _Repeats(0, refusal.method, refusal.path))
            repeats.count += 1
            repeats.method, repeats.path = refusal.method, _short(refusal.path)
            return
        self._seen.add(key)  # before the write, so that requests arriving meanwhile are counted
        await self._write(refusal.actor, refusal.role, refusal.remote,
                          {"reason": refusal.reason, "method": refusal.method, "path": _short(refusal.path)})

    async def roll(self) -> None:
        """Once a minute is over, write how many refusals of each kind it counted beyond the first."""
        if self._current_window() != self._window:
            await self.flush()

    async def flush(self) -> None:
        """Write the counts of the minute so far and start a new one (also on a clean stop)."""
        window, repeats = self._window, self._repeats
        self._window, self._seen, self._repeats = self._current_window(), set(), {}
        minute = datetime.fromtimestamp(window * WINDOW_SECONDS, timezone.utc).isoformat()
        for (remote, actor, role, reason), counted in repeats.items():
            await self._write(actor, role, remote, {"reason": reason, "repeated": counted.count, "minute": minute,
                                                    "method": counted.method, "path": counted.path})

    async def run(self, every: float = 5.0) -> None:
        """Roll the minute over on a timer, so a count is written soon after its minute even when no
        later refusal comes to trigger it."""
        while True:
            await asyncio.sleep(every)
            await self.roll()

    async def _write(self, actor: str, role: str, remote: str | None, target: dict[str, object]) -> None:
        try:
            await record_access(self.pool, actor=actor, role=role, action=ACTION, target=target,
                                remote_addr=remote, outcome="refused")
        except Exception as exc:  # noqa: BLE001 - a refusal that cannot be logged is still a refusal
            log.error("refusal_not_logged", reason=target.get("reason"), error=repr(exc))


def _short(path: str) -> str:
    return path if len(path) <= MAX_PATH_CHARS else path[:MAX_PATH_CHARS] + "…"
