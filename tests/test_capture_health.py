"""Capture health: a business number with no webhook at all for too long, in its active hours, is a
silence episode (one row, one CRITICAL line, a red CaptureHealth run), and traffic ends it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from structlog.testing import capture_logs
from temporalio.client import WorkflowFailureError

from tests.conftest import LEDGER_KEY, make_settings
from wa_archive.config import load_settings
from wa_archive.errors import ConfigError
from wa_archive.health.active_hours import parse_active_hours
from wa_archive.health.capture import check_silences
from wa_archive.health.capture_report import CaptureHealthReport
from wa_archive.sources.meta.samples import dumps, envelope, message
from wa_archive.temporal.schedules import apply_capture_health_schedule

NUMBER_A = "109327745812336"  # samples.BUSINESS
NUMBER_B = "200000000000002"
TINY = 0.01  # minutes: 0.6 s, so a test waits for silence instead of faking the clock
UTC = timezone.utc


def _for_number(number: str, display: str = "+44 20 7183 8751") -> bytes:
    env = envelope([message("text", {"body": "hello"})])
    env["entry"][0]["changes"][0]["value"]["metadata"] = {"phone_number_id": number, "display_phone_number": display}
    return dumps(env)


async def _last_heard(pool, number: str, timeout: float = 10) -> datetime:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        at = await pool.fetchval("SELECT last_webhook_at FROM capture_numbers WHERE number = $1", number)
        if at is not None:
            return at
        await asyncio.sleep(0.05)
    raise AssertionError(f"{number} was never noted as heard")


async def _until_past(instant: datetime, minutes: float) -> None:
    """Wait until real time is `minutes` past `instant` (the silence must actually happen)."""
    deadline = time.monotonic() + 30
    while datetime.now(UTC) <= instant + timedelta(minutes=minutes, seconds=0.2):
        if time.monotonic() > deadline:
            raise AssertionError("the clock did not move")
        await asyncio.sleep(0.05)


async def _check(stack) -> CaptureHealthReport:
    """One CaptureHealth run through Temporal, as the Schedule starts it."""
    return await stack.client.execute_workflow(
        "CaptureHealth", id=f"capture-health-{uuid.uuid4().hex[:8]}", task_queue=stack.settings.task_queue,
        result_type=CaptureHealthReport)


async def _silences(pool) -> list[dict]:
    return [dict(r) for r in await pool.fetch("SELECT * FROM capture_silences ORDER BY id")]


def _hours_excluding_now() -> str:
    """A daily window two to three hours from now (UTC): now and the last few seconds are outside it."""
    start = datetime.now(UTC) + timedelta(hours=2)
    end = start + timedelta(hours=1)
    return f"Mon-Sun {start:%H:%M}-{end:%H:%M} UTC"


# Active hours, as a pure unit --------------------------------------------------------------------


def test_active_hours_count_only_the_weekly_windows_in_their_zone():
    hours = parse_active_hours("Mon-Fri 08:00-18:00 Europe/London")
    friday_5pm = datetime(2025, 7, 4, 16, 0, tzinfo=UTC)  # 17:00 in London (BST)
    monday_9am = datetime(2025, 7, 7, 8, 0, tzinfo=UTC)  # 09:00 in London
    assert hours.is_active(friday_5pm) and hours.is_active(monday_9am)
    assert not hours.is_active(datetime(2025, 7, 5, 11, 0, tzinfo=UTC))  # Saturday noon
    # Friday 17:00-18:00 and Monday 08:00-09:00: two hours, the weekend not at all.
    assert hours.active_seconds(friday_5pm, monday_9am, enough=1e9) == 2 * 3600
    assert hours.active_seconds(friday_5pm, monday_9am, enough=60) > 60  # stops early, still over
    overnight = parse_active_hours("Sat 22:00-06:00; Sun 10:00-11:00 UTC")
    assert overnight.is_active(datetime(2025, 7, 6, 3, 0, tzinfo=UTC))  # Sunday 03:00, Saturday's window
    assert not overnight.is_active(datetime(2025, 7, 6, 7, 0, tzinfo=UTC))
    assert overnight.active_seconds(datetime(2025, 7, 5, 0, 0, tzinfo=UTC), datetime(2025, 7, 7, 0, 0, tzinfo=UTC),
                                    enough=1e9) == 9 * 3600
    # The spring change in London: the 08:00-18:00 window of 30 March 2025 still starts at 08:00 local.
    assert hours.is_active(datetime(2025, 3, 31, 7, 0, tzinfo=UTC))
    assert not hours.is_active(datetime(2025, 3, 31, 6, 59, tzinfo=UTC))
    assert parse_active_hours("always").active_seconds(friday_5pm, monday_9am, enough=1) == 3 * 24 * 3600 - 8 * 3600


@pytest.mark.parametrize(("variable", "value", "said"), [
    ("SILENCE_ACTIVE_HOURS", "Mon-Fri 08:00-18:00", "is not a time zone name"),
    ("SILENCE_ACTIVE_HOURS", "Mon-Fri 8-18 Europe/London", "is not a rule"),
    ("SILENCE_ACTIVE_HOURS", "Mon-Fry 08:00-18:00 UTC", "'Fry' is not a day"),
    ("SILENCE_ACTIVE_HOURS", "Mon-Fri 08:00-25:00 UTC", "is not a time of day"),
    ("SILENCE_ACTIVE_HOURS", "Mon-Fri 08:00-18:00 ../../etc/passwd", "is not a time zone name"),
    ("SILENCE_ALERT_MINUTES", "0", "greater than 0"),
    ("SILENCE_ALERT_MINUTES", "soon", "must be a number greater than 0"),
    ("SILENCE_NUMBERS", "109327745812336,+44 20 7183", "neither a Meta phone_number_id"),
])
def test_bad_configuration_is_refused_naming_the_variable(monkeypatch, variable, value, said):
    monkeypatch.setenv(f"WA_ARCHIVE_{variable}", value)
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert str(caught.value).startswith(f"WA_ARCHIVE_{variable}: ") and said in str(caught.value)


def _env(stack, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}
    env.update(WA_ARCHIVE_DATABASE_URL=database_url, WA_ARCHIVE_STORAGE_URL=stack.store.url,
               WA_ARCHIVE_LEDGER_SIGNING_KEY=LEDGER_KEY, **extra)
    return env


async def _cli(env, *args: str) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "wa_archive.cli", *args], env=env,
                                   capture_output=True, text=True, timeout=120)


async def test_the_command_refuses_bad_active_hours_with_the_variable_named(stack, database_url):
    done = await _cli(_env(stack, database_url, WA_ARCHIVE_SILENCE_ACTIVE_HOURS="weekdays 9 to 5"),
                      "capture-health")
    assert done.returncode == 2
    assert "configuration error: WA_ARCHIVE_SILENCE_ACTIVE_HOURS:" in done.stderr


# Through the webhook, Temporal and PostgreSQL ------------------------------------------------------


async def test_a_number_with_traffic_is_fine(stack_factory, database_url):
    stack = await stack_factory(silence_alert_minutes=5)
    status, _ = await stack.post(_for_number(NUMBER_A))
    assert status == 200
    heard = await _last_heard(stack.pool, NUMBER_A)
    assert abs((datetime.now(UTC) - heard).total_seconds()) < 30
    report = await _check(stack)
    [number] = report.numbers
    assert (number.number, number.display_number, number.source) == (NUMBER_A, "+44 20 7183 8751", "meta")
    assert not number.silent and number.silent_since is None and report.silent == []
    assert await _silences(stack.pool) == []
    done = await _cli(_env(stack, database_url, WA_ARCHIVE_SILENCE_ALERT_MINUTES="5"), "capture-health", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["silent"] == [] and doc["numbers"][0]["number"] == NUMBER_A


async def test_a_silent_number_gets_one_row_and_one_critical_line_over_several_checks(stack_factory, database_url):
    # 9 s: B, heard just before the checks, must stay inside it for three checks on a loaded machine.
    alert = 0.15
    stack = await stack_factory(silence_alert_minutes=alert)
    assert (await stack.post(_for_number(NUMBER_A)))[0] == 200
    heard = await _last_heard(stack.pool, NUMBER_A)
    await _until_past(heard, alert)
    assert (await stack.post(_for_number(NUMBER_B)))[0] == 200  # B is heard just before the checks
    with capture_logs() as logs:
        for _ in range(3):
            with pytest.raises(WorkflowFailureError) as red:
                await _check(stack)
            assert NUMBER_A in str(red.value.cause) and NUMBER_B not in str(red.value.cause)
    [episode] = await _silences(stack.pool)
    assert episode["number"] == NUMBER_A and episode["silent_since"] == heard and episode["ended_at"] is None
    assert episode["alert_minutes"] == alert and episode["detected_at"] > heard
    critical = [e for e in logs if e["log_level"] == "critical"]
    assert [(e["event"], e["number"]) for e in critical] == [("capture_silence", NUMBER_A)]
    done = await _cli(_env(stack, database_url, WA_ARCHIVE_SILENCE_ALERT_MINUTES=str(alert)), "capture-health",
                      "--json")
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    assert NUMBER_A in doc["silent"]
    [a] = [n for n in doc["numbers"] if n["number"] == NUMBER_A]
    assert a["silent"] and a["silent_since"] is not None
    assert [s["number"] for s in doc["recent_silences"]] == [NUMBER_A]


async def test_silence_outside_the_active_hours_gets_none(stack_factory):
    hours = _hours_excluding_now()
    stack = await stack_factory(silence_alert_minutes=TINY, silence_active_hours=hours)
    assert (await stack.post(_for_number(NUMBER_A)))[0] == 200
    heard = await _last_heard(stack.pool, NUMBER_A)
    await _until_past(heard, TINY)
    report = await _check(stack)  # green: the quiet time so far was all outside the window
    assert report.silent == [] and not report.active_now
    assert await _silences(stack.pool) == []
    # The same quiet, judged a minute into the window, is a silence: the window is what spared it.
    window_start = parse_active_hours(hours)
    later = datetime.now(UTC) + timedelta(hours=2, minutes=1, seconds=30)
    assert window_start.is_active(later)
    report = await check_silences(stack.pool, alert_minutes=TINY, hours=window_start, hours_text=hours, listed=[],
                                  now=later)
    assert report.silent == [NUMBER_A] and report.started == [NUMBER_A]


async def test_traffic_coming_back_ends_the_episode(stack_factory):
    from tests.test_wasender import SECRET, post, upsert

    stack = await stack_factory(silence_alert_minutes=TINY, wasender_webhook_secret=SECRET)
    assert (await stack.post(_for_number(NUMBER_A)))[0] == 200
    wasender = {"key": {"remoteJid": "447700900123@s.whatsapp.net", "fromMe": False, "id": "3EB0C0FFEE"},
                "messageTimestamp": int(time.time()), "message": {"conversation": "hi"}}
    assert (await post(stack, upsert(wasender)))[0] == 200
    heard = await _last_heard(stack.pool, "wasender")
    await _until_past(max(heard, await _last_heard(stack.pool, NUMBER_A)), TINY)
    with pytest.raises(WorkflowFailureError):
        await _check(stack)
    assert sorted(s["number"] for s in await _silences(stack.pool)) == [NUMBER_A, "wasender"]
    with capture_logs() as logs:
        assert (await stack.post(_for_number(NUMBER_A)))[0] == 200
    back = await stack.pool.fetchval("SELECT last_webhook_at FROM capture_numbers WHERE number = $1", NUMBER_A)
    [ended] = [s for s in await _silences(stack.pool) if s["ended_at"] is not None]
    assert ended["number"] == NUMBER_A and ended["ended_at"] == back
    assert [(e["event"], e["log_level"]) for e in logs if e.get("number") == NUMBER_A] == [
        ("capture_silence_ended", "info")]
    report = await check_silences(stack.pool, alert_minutes=TINY, hours=parse_active_hours("always"),
                                  hours_text="always", listed=[], now=back + timedelta(seconds=0.1))
    assert report.silent == ["wasender"] and report.started == []  # still one open episode, not a second
    assert len(await _silences(stack.pool)) == 2


async def test_a_listed_number_never_heard_is_silent_from_when_watching_began(stack):
    start = datetime.now(UTC)
    hours = parse_active_hours("always")
    first = await check_silences(stack.pool, alert_minutes=1, hours=hours, hours_text="always", listed=[NUMBER_B],
                                 now=start)
    assert [(n.number, n.last_webhook_at, n.silent) for n in first.numbers] == [(NUMBER_B, None, False)]
    later = await check_silences(stack.pool, alert_minutes=1, hours=hours, hours_text="always", listed=[NUMBER_B],
                                 now=start + timedelta(minutes=2))
    assert later.started == [NUMBER_B]
    [episode] = await _silences(stack.pool)
    assert episode["silent_since"] == start


async def test_the_schedule_exists_only_while_the_limit_is_set(client):
    settings = make_settings(silence_alert_minutes=15, silence_check_every=120)
    assert (await apply_capture_health_schedule(client, settings)).startswith("created")
    assert (await apply_capture_health_schedule(client, settings)).startswith("updated")
    described = await client.get_schedule_handle("wa-archive-capture-health").describe()
    assert described.schedule.spec.intervals[0].every == timedelta(seconds=120)
    off = make_settings()
    assert (await apply_capture_health_schedule(client, off)).startswith("deleted")
    assert (await apply_capture_health_schedule(client, off)).startswith("skipped")
