"""Dates mean one thing everywhere: a date without a time is its whole UTC day (an until date includes
it), a timestamp is that instant (an until timestamp is exclusive), and an empty or inverted period is
refused — by the API (400), the pages (the message, 400) and the CLI (exit 2) alike."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from html import unescape
from urllib.parse import quote, urlencode

import pytest

from tests.test_cli import _cli
from tests.test_ui_security import fetch, sign_in
from wa_archive.dates import parse_period, parse_until, parse_when
from wa_archive.errors import FilterError
from wa_archive.sources.meta.samples import dumps, envelope, message, wamid

UTC = timezone.utc
PHONE = "447700900456"


def _ts(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


# The rule itself, as a pure function ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["2026-11-26", "20261126", "2026-W48-4"])
def test_a_date_alone_is_its_whole_utc_day(value):
    assert parse_when(value) == datetime(2026, 11, 26, tzinfo=UTC)
    assert parse_until(value) == datetime(2026, 11, 27, tzinfo=UTC)


def test_a_timestamp_is_that_instant_and_utc_without_an_offset():
    assert parse_until("2026-11-26T10:00:00") == datetime(2026, 11, 26, 10, tzinfo=UTC)
    assert parse_until("2026-11-26T12:00:00+02:00") == datetime(2026, 11, 26, 10, tzinfo=UTC)
    assert parse_when("2026-11-26 10:00") == datetime(2026, 11, 26, 10, tzinfo=UTC)


def test_the_same_date_on_both_sides_is_that_day_and_an_inverted_period_is_refused():
    assert parse_period("2026-11-26", "2026-11-26") == (datetime(2026, 11, 26, tzinfo=UTC),
                                                       datetime(2026, 11, 27, tzinfo=UTC))
    assert parse_period(None, "2026-11-26") == (None, datetime(2026, 11, 27, tzinfo=UTC))
    for since, until in (("2026-11-27", "2026-11-26"), ("2026-11-26T10:00", "2026-11-26T10:00"),
                         ("2026-11-27", "2026-11-26T23:59:59")):
        with pytest.raises(FilterError, match="the period is empty") as caught:
            parse_period(since, until)
        assert caught.value.name == "until"


@pytest.mark.parametrize("value", ["9999-12-31", "yesterday", "2026-13-01", "2026-11-26T25:00"])
def test_what_is_not_a_date_or_has_no_next_day_is_refused_by_name(value):
    with pytest.raises(FilterError) as caught:
        parse_until(value)
    assert caught.value.name == "until" and value in str(caught.value)


# The same rule through the API, the pages and the CLI -------------------------------------------------


async def _seed(stack) -> dict[str, str]:
    """Four messages around 2026-11-26: one before its first instant, one at it, one at noon, one at the
    next day's first instant."""
    ids = {"before": wamid(), "start": wamid(), "noon": wamid(), "next": wamid()}
    times = {"before": "2026-11-25T23:59:59", "start": "2026-11-26T00:00:00", "noon": "2026-11-26T12:00:00",
             "next": "2026-11-27T00:00:00"}
    status, _ = await stack.post(dumps(envelope([
        message("text", {"body": f"sent {name}"}, mid=mid, phone=PHONE, ts=_ts(times[name]))
        for name, mid in ids.items()])))
    assert status == 200
    for mid in ids.values():
        await stack.wait_for_message(mid)
    return ids


async def _api(stack, token: str, params: dict[str, str]) -> tuple[int, dict]:
    async with stack.http.get(f"{stack.url}/api/v1/messages", params=params,
                              headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json()


def _linked(html: str) -> set[str]:
    """The message ids a search page links to."""
    return {unescape(m) for m in re.findall(r'href="/ui/messages/([^"]+)"', html)}


@pytest.mark.slow
async def test_one_day_means_that_day_through_the_api_the_page_and_the_cli(stack, database_url):
    ids = await _seed(stack)
    the_day = {ids["start"], ids["noon"]}
    token = await stack.token("auditor")
    cookie = await sign_in(stack, token)
    same_day = {"phone": PHONE, "since": "2026-11-26", "until": "2026-11-26"}
    to_noon = {"phone": PHONE, "since": "2026-11-26", "until": "2026-11-26T12:00:00Z"}

    status, body = await _api(stack, token, same_day)
    assert status == 200, body
    assert {m["id"] for m in body["items"]} == the_day
    status, body = await _api(stack, token, to_noon)
    assert status == 200 and [m["id"] for m in body["items"]] == [ids["start"]]  # a timestamp is exclusive

    status, _, page = await fetch(stack, f"/ui/?{urlencode(same_day)}", cookie)
    assert status == 200
    assert _linked(page.decode()) == {quote(mid, safe="") for mid in the_day}
    status, _, page = await fetch(stack, f"/ui/?{urlencode(to_noon)}", cookie)
    assert status == 200 and _linked(page.decode()) == {quote(ids["start"], safe="")}

    run = await _cli(database_url, "search", "--phone", PHONE, "--since", "2026-11-26", "--until", "2026-11-26",
                     "--json")
    assert run.returncode == 0, run.stderr
    assert {m["id"] for m in json.loads(run.stdout)} == the_day
    run = await _cli(database_url, "search", "--phone", PHONE, "--since", "2026-11-26", "--until",
                     "2026-11-26T12:00:00Z", "--json")
    assert run.returncode == 0 and [m["id"] for m in json.loads(run.stdout)] == [ids["start"]]
    run = await _cli(database_url, "search", "--phone", PHONE, "--until", "2026-11-26")
    assert run.returncode == 0 and run.stdout.strip().endswith("3 message(s)"), run.stdout  # before, start, noon


@pytest.mark.slow
async def test_an_inverted_period_is_refused_with_its_reason_everywhere(stack, database_url):
    token = await stack.token("auditor")
    cookie = await sign_in(stack, token)
    inverted = {"since": "2026-11-27", "until": "2026-11-26"}

    status, body = await _api(stack, token, inverted)
    assert status == 400 and body["filter"] == "until" and "the period is empty" in body["error"], body

    status, _, page = await fetch(stack, f"/ui/?{urlencode(inverted)}", cookie)
    assert status == 400 and "the period is empty" in unescape(page.decode())
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.decode()).group(1)
    status, _, page = await fetch(stack, f"/ui/conversations/{PHONE}?{urlencode(inverted)}", cookie)
    assert status == 400 and "the period is empty" in unescape(page.decode())
    async with stack.http.post(f"{stack.url}/ui/exports", data={"csrf": csrf, "phone": PHONE, **inverted},
                               headers={"Cookie": f"wa_archive_session={cookie.value}"},
                               allow_redirects=False) as resp:
        assert resp.status == 400 and "the period is empty" in unescape(await resp.text())
    async with stack.http.get(f"{stack.url}/api/v1/consent/report", params=inverted,
                              headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 400 and "the period is empty" in await resp.text()

    # Every command that takes a period refuses it before it opens anything (no database is named here).
    for command in (["search"], ["export", "--phone", PHONE, "--out", "/nonexistent/x.zip", "--local"],
                    ["consent", "report"], ["hold", "set", "--phone", PHONE, "--case", "c1", "--reason", "r"]):
        run = await _cli("postgresql://nobody@127.0.0.1:1/none", *command, "--since", "2026-11-27",
                         "--until", "2026-11-26")
        assert run.returncode == 2, (command, run.stdout, run.stderr)
        assert "--until: the period is empty" in run.stderr and run.stdout == "", (command, run.stderr)
