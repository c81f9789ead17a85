"""The keyed hashes Temporal holds instead of phone numbers and message ids (`contact-key`,
`message-key`): what an operator types into the Temporal UI's search to find a contact's or a
message's workflows."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable

from wa_archive.config import Settings


async def cmd_contact_key(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.archive.keys import contact_key
    from wa_archive.credentials import contact_secret
    from wa_archive.names import CONTACT_KEY

    key = contact_key(contact_secret(settings), args.contact)
    if args.json:
        print(json.dumps({"contact_key": key, "search_attribute": CONTACT_KEY.name}))
        return 0
    print(key)
    print(f"Temporal UI query: {CONTACT_KEY.name} = '{key}'", file=sys.stderr)
    return 0


async def cmd_message_key(settings: Settings, args: argparse.Namespace) -> int:
    from wa_archive.archive.keys import message_key, message_workflow_id, outbound_workflow_id
    from wa_archive.credentials import contact_secret
    from wa_archive.names import MESSAGE_ID

    secret = contact_secret(settings)
    key = message_key(secret, args.message_id)
    if args.json:
        print(json.dumps({"message_key": key, "inbound_workflow_id": message_workflow_id(secret, args.message_id),
                          "outbound_workflow_id": outbound_workflow_id(secret, args.message_id)}))
        return 0
    print(key)
    print(f"Temporal UI query: {MESSAGE_ID.name} = '{key}'\n"
          f"workflow id: {message_workflow_id(secret, args.message_id)} (received or WASender message), "
          f"{outbound_workflow_id(secret, args.message_id)} (outbound message)", file=sys.stderr)
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ck = sub.add_parser("contact-key", help="the keyed contact hash used in Temporal search attributes")
    ck.add_argument("contact", help="phone number or other contact id")
    mk = sub.add_parser("message-key", help="the keyed message hash Temporal holds: search attribute and workflow ids")
    mk.add_argument("message_id", metavar="MESSAGE-ID", help="a wamid or a WASender message id")
    mk.add_argument("--json", action="store_true")


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], Awaitable[int]]] = {
    "contact-key": cmd_contact_key, "message-key": cmd_message_key}
