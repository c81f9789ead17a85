"""The consent commands as scripts and people run them: `consent record`, `consent show`, `consent report`,
and the consent filter and block of `search` and `show`."""

from __future__ import annotations

import getpass
import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.test_cli import _cli
from tests.test_consent_api import new_phone, record, send_promo


async def test_record_then_show(stack, database_url):
    phone = new_phone()
    at = "2026-03-02T10:15:00+00:00"
    recorded = await _cli(database_url, "consent", "record", "--phone", f"+{phone}", "--state", "opted_in",
                          "--source", "paper contract", "--evidence", "Contract 2026/118, clause 9, signed",
                          "--at", at, "--business-phone", "109327745812336", "--json")
    assert recorded.returncode == 0, recorded.stderr
    entry = json.loads(recorded.stdout)
    assert entry["phone"] == phone and entry["state"] == "opted_in" and entry["source"] == "manual"
    assert entry["recorded_by"] == f"cli:{getpass.getuser()}" and entry["recorded_role"] == "cli"
    assert entry["detail"] == {"collected_via": "paper contract"}
    assert entry["business_phone_number_id"] == "109327745812336"
    assert datetime.fromisoformat(entry["at"]) == datetime.fromisoformat(at)

    shown = await _cli(database_url, "consent", "show", phone, "--json")
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["phone"] == phone and document["contact_id"] == entry["contact_id"]
    assert document["consent"]["state"] == "opted_in" and document["consent"]["entry_id"] == entry["entry_id"]
    assert [e["entry_id"] for e in document["consent_log"]] == [entry["entry_id"]]
    assert any(i["kind"] == "phone" and i["value"] == phone and i["current"] for i in document["identifiers"])
    human = await _cli(database_url, "consent", "show", phone)
    assert human.returncode == 0 and "paper contract" in human.stdout and "opted_in" in human.stdout
    logged = await stack.pool.fetch("SELECT actor, role, target FROM access_log WHERE action = 'contact'")
    assert sum(r["target"]["phone"] == phone and r["role"] == "cli" for r in logged) == 2

    unknown = await _cli(database_url, "consent", "show", new_phone())
    assert unknown.returncode == 1 and "no contact" in unknown.stderr


async def test_bad_records_are_refused_and_write_nothing(stack, database_url):
    phone = new_phone()
    base = ["consent", "record", "--phone", phone, "--state", "opted_out", "--source", "call"]
    for extra, says in ((["--evidence", "call 9", "--at", "next week"], "--at"),
                        (["--evidence", "call 9", "--at", "2999-01-01"], "future"),
                        (["--evidence", "   "], "--evidence"),
                        (["--evidence", "x" * 4097], "4096")):
        refused = await _cli(database_url, *base, *extra)
        assert refused.returncode == 2 and says in refused.stderr, (extra, refused.stderr)
    bad_phone = await _cli(database_url, "consent", "record", "--phone", "alice", "--state", "opted_in",
                           "--source", "call", "--evidence", "e")
    assert bad_phone.returncode == 2 and "--phone" in bad_phone.stderr
    bad_state = await _cli(database_url, *base[:4], "--state", "maybe", "--source", "call", "--evidence", "e")
    assert bad_state.returncode == 2 and "invalid choice" in bad_state.stderr
    assert await stack.pool.fetchval("SELECT count(*) FROM consent_entries WHERE phone = $1", phone) == 0


@pytest.mark.slow
async def test_report_exits_1_on_a_marketing_send_after_an_opt_out(stack, database_url):
    phone = new_phone()
    now = datetime.now(timezone.utc)
    status, entry = await record(stack, await stack.token("sender"), phone=phone, state="opted_out",
                                 source="web form", evidence="unsubscribe form 4410",
                                 at=(now - timedelta(minutes=10)).isoformat())
    assert status == 201
    message = await send_promo(stack, phone, int(now.timestamp()))

    since = (now - timedelta(seconds=5)).isoformat()
    report = await _cli(database_url, "consent", "report", "--since", since, "--json")
    assert report.returncode == 1, report.stderr
    found = json.loads(report.stdout)
    [finding] = [f for f in found["findings"] if f["message_id"] == message["id"]]
    assert finding["state"] == "opted_out" and finding["entry_id"] == entry["entry_id"]
    human = await _cli(database_url, "consent", "report", "--since", since)
    assert human.returncode == 1 and message["id"] in human.stdout and "finding(s)" in human.stdout
    quiet = await _cli(database_url, "consent", "report", "--since", (now + timedelta(minutes=1)).isoformat())
    assert quiet.returncode == 0 and "0 finding(s)" in quiet.stdout

    shown = json.loads((await _cli(database_url, "show", message["id"], "--json")).stdout)
    assert shown["consent"]["state"] == "opted_out" and shown["consent"]["entry_id"] == entry["entry_id"]
    searched = await _cli(database_url, "search", "--consent", "opted_out", "--phone", phone, "--json")
    assert searched.returncode == 0 and [m["id"] for m in json.loads(searched.stdout)] == [message["id"]]
    for other in ("opted_in", "unknown"):
        searched = await _cli(database_url, "search", "--consent", other, "--phone", phone, "--json")
        assert json.loads(searched.stdout) == [], other
    bad = await _cli(database_url, "search", "--consent", "maybe")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
