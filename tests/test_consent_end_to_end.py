"""The issue's first promise end to end, as a firm would meet it: the person stops marketing messages
in WhatsApp (Meta's signed user_preferences webhook), the business then sends a marketing template,
and the archive shows that send as made while opted out, names it in `consent report` and proves the
entry that decided it in the ledger."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

from tests.test_cli import _cli
from tests.test_consent_api import new_phone, send_promo
from tests.test_consent_feeds import preferences, wait_for_entries
from tests.test_ledger import _cli as _ledger_cli
from tests.test_ledger import _env


async def test_a_user_preferences_stop_then_a_marketing_send_is_opted_out_and_a_finding(stack, database_url):
    phone = new_phone()
    stopped_at = int(time.time()) - 60
    assert (await stack.post(preferences(phone, "stop", stopped_at)))[0] == 200
    [entry] = await wait_for_entries(stack.pool, phone, 1)
    assert (entry["state"], entry["source"]) == ("opted_out", "user_preferences")

    message = await send_promo(stack, phone, int(time.time()))

    shown = await _cli(database_url, "show", message["id"], "--json")
    assert shown.returncode == 0, shown.stderr
    consent = json.loads(shown.stdout)["consent"]
    assert (consent["state"], consent["entry_id"]) == ("opted_out", entry["id"])

    since = (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat()
    report = await _cli(database_url, "consent", "report", "--since", since, "--json")
    assert report.returncode == 1, report.stdout + report.stderr
    [finding] = [f for f in json.loads(report.stdout)["findings"] if f["message_id"] == message["id"]]
    assert (finding["state"], finding["entry_id"], finding["recipient"]) == ("opted_out", entry["id"], phone)

    # The entry and the send-time judgement are both ledger leaves, and the whole ledger verifies.
    kinds = {r["kind"] for r in await stack.pool.fetch(
        "SELECT kind FROM ledger_leaves WHERE (kind = 'consent' AND record_id = $1)"
        " OR (kind = 'message_consent' AND record_id = $2)", str(entry["id"]), message["id"])}
    assert kinds == {"consent", "message_consent"}
    verified = await _ledger_cli(_env(stack, database_url), "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
