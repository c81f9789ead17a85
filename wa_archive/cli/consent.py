"""Consent commands: `consent record` (consent collected outside WhatsApp), `consent show PHONE` (the
contact's profile and consent timeline) and `consent report` (marketing templates sent without consent)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

from wa_archive.cli.support import (
    SINCE_HELP,
    UNTIL_HELP,
    cli_actor,
    log_cli_access,
    open_pool,
    parse_until_arg,
    parse_when_arg,
)
from wa_archive.config import Settings


async def cmd_consent(settings: Settings, args: argparse.Namespace) -> int:
    command: Callable[[Settings, argparse.Namespace], Awaitable[int]] = {
        "record": _record, "show": _show, "report": _report}[args.consent_command]
    return await command(settings, args)


async def _record(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.contacts.consent import record_entry
    from wa_archive.contacts.manual import manual_evidence
    from wa_archive.contacts.views import entry_dict
    from wa_archive.db.contacts import consent_entry
    from wa_archive.errors import ConsentRefused

    given = {"phone": args.phone, "state": args.state, "source": args.source, "evidence": args.evidence,
             "at": args.at, "business_phone_number_id": args.business_phone}
    try:
        ev = manual_evidence({k: v for k, v in given.items() if v is not None}, recorded_by=cli_actor(),
                             recorded_role="cli", idempotency_key=None, now=datetime.now(timezone.utc))
    except ConsentRefused as exc:
        flag = {"business_phone_number_id": "business-phone"}.get(exc.field, exc.field)
        print(f"wa-archive: --{flag} {str(exc).split(': ', 1)[1]}", file=sys.stderr)
        return 2
    pool = await open_pool(settings)
    try:
        async with pool.acquire() as conn, conn.transaction():
            entry_id, _ = await record_entry(conn, ev)
        entry = entry_dict(await consent_entry(pool, entry_id))
    finally:
        await pool.close()
    if args.json:
        print(json.dumps(entry, indent=2, ensure_ascii=False))
    else:
        print(f"consent entry {entry['entry_id']}: {entry['phone']} {entry['state']} at {entry['at']}"
              f" (contact {entry['contact_id']}), recorded by {entry['recorded_by']}")
    return 0


async def _show(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.archive.keys import normalize_phone
    from wa_archive.contacts.views import contact_document

    phone = normalize_phone(args.phone)
    if phone is None:
        print(f"wa-archive: {args.phone!r} is not a phone number", file=sys.stderr)
        return 2
    pool = await open_pool(settings)
    try:
        await log_cli_access(pool, "contact", {"phone": phone})
        document = await contact_document(pool, phone)
    finally:
        await pool.close()
    if document is None:
        print(f"wa-archive: no contact with phone {phone}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        _print_contact(document)
    return 0


def _print_contact(d: dict[str, Any]) -> None:
    consent = d["consent"]
    print(f"{d['phone']}  contact {d['contact_id']}  consent now: {consent['state']}"
          + (f" (entry {consent['entry_id']} at {consent['at']})" if consent.get("entry_id") else ""))
    if len(d["holders"]) > 1:
        print("  held by:")
        for h in d["holders"]:
            print(f"    contact {h['contact_id']} from {h['from']} until {h['until'] or 'now'}")
    print("  identifiers:")
    for i in d["identifiers"]:
        current = "" if i["current"] else "  (no longer)"
        print(f"    {i['kind']:<13} {i['value']}  since {i['linked_at']} ({i['reason']}){current}")
    if d["names"]:
        print("  names:")
        for n in d["names"]:
            print(f"    {n['name']!r} first seen {n['first_seen']}, last seen {n['last_seen']}"
                  f" in {n['message_count']} message(s)")
    print("  consent log:")
    for e in d["consent_log"]:
        via = e["detail"].get("collected_via")
        print(f"    {e['at']}  {e['state']:<9} {e['category']}  source {e['source']}"
              + (f" ({via})" if via else "") + f"  entry {e['entry_id']}, recorded by {e['recorded_by']}")
        if e["evidence"]:
            print(f"      evidence: {e['evidence'][:200]}")
        if e["evidence_message_id"]:
            print(f"      message: {e['evidence_message_id']}")
    if not d["consent_log"]:
        print("    none")
    print(f"  {len(d['messages'])} message(s)")


async def _report(settings: Settings, args: argparse.Namespace) -> int:
    """Findings: marketing templates sent while opted out (or unknown, where consent is required); 1 when any."""
    from wa_archive.contacts.views import findings

    required = settings.consent_required
    pool = await open_pool(settings)
    try:
        await log_cli_access(pool, "consent-report", {
            "since": args.since.isoformat() if args.since else None,
            "until": args.until.isoformat() if args.until else None, "consent_required": required})
        found = await findings(pool, since=args.since, until=args.until, consent_required=required)
    finally:
        await pool.close()
    if args.json:
        print(json.dumps({"consent_required": required, "findings": found}, indent=2, ensure_ascii=False))
    else:
        for f in found:
            entry = f" (entry {f['entry_id']})" if f["entry_id"] else ""
            print(f"{f['sent_at']}  {f['recipient']}  {f['template_name']} [{f['template_category']}]"
                  f"  {f['state']}{entry}  {f['reason']}  {f['message_id']}")
        print(f"{len(found)} finding(s)" + ("" if required else
                                             "; sends with unknown consent are not findings"
                                             " (WA_ARCHIVE_CONSENT_REQUIRED=false)"))
    return 1 if found else 0


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], Awaitable[int]]] = {"consent": cmd_consent}


def add_parsers(sub: Any) -> None:
    consent = sub.add_parser("consent", help="contacts and their consent to marketing messages")
    csub = consent.add_subparsers(dest="consent_command", required=True)
    record = csub.add_parser("record", help="record consent collected outside WhatsApp (form, contract, call)")
    record.add_argument("--phone", required=True)
    record.add_argument("--state", required=True, choices=("opted_in", "opted_out"))
    record.add_argument("--source", required=True,
                        help="where it was collected: web form, paper contract, call...")
    record.add_argument("--evidence", required=True, help="the consent's text or a URL to it")
    record.add_argument("--at", help="when the person agreed or withdrew (date or ISO timestamp; default now)")
    record.add_argument("--business-phone", help="the business phone number id it applies to (default: all)")
    record.add_argument("--json", action="store_true")
    show = csub.add_parser("show", help="a contact's profile, identifiers, names over time and consent timeline")
    show.add_argument("phone", metavar="PHONE")
    show.add_argument("--json", action="store_true")
    report = csub.add_parser("report", help="marketing templates sent without consent; exit 1 when there are any")
    report.add_argument("--since", type=parse_when_arg, help=SINCE_HELP)
    report.add_argument("--until", type=parse_until_arg, help=UNTIL_HELP)
    report.add_argument("--json", action="store_true")
