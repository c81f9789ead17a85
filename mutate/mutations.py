"""The curated mutations: one per promise of the README's "How it works" and Security sections.

Each breaks one promise with the smallest change that does, and names the tests that must catch it
(pytest node ids). A snippet must occur exactly once in its file; when the code moves on, the check
in tests/test_mutation_list.py names the stale mutation so that it is updated with the code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str  # relative to the repository root
    original: str  # exact text, found exactly once in the file
    replacement: str
    promise: str  # what the README promises that this breaks
    tests: tuple[str, ...]  # node ids of which at least one must fail


# Starting a workflow without awaiting it: the hand-over returns before Temporal holds anything.
_FIRE_AND_FORGET = "__import__('asyncio').get_running_loop().create_task("

_SIGNAL_SEND = """    await signal_outbound(
        client, OutboundStart(message_id=send.message_id, options=options), SIGNAL_SEND, stored,
        task_queue=task_queue, contact_secret=contact_secret,
        contact=str(stored.request.get("to") or "") or None, rpc_timeout=rpc_timeout)"""

MUTATIONS: list[Mutation] = [
    # --- Nothing acknowledged is lost ------------------------------------------------------------
    Mutation(
        name="large-delivery-start-fire-and-forget",
        file="wa_archive/archive/handover.py",
        original="        await start_ingest_delivery(client, delivery.sha256, task_queue=task_queue, rpc_timeout=rpc_timeout)",
        replacement=f"        {_FIRE_AND_FORGET}start_ingest_delivery(client, delivery.sha256, task_queue=task_queue,"
                    " rpc_timeout=rpc_timeout))",
        promise="200 only once Temporal holds the large delivery's IngestDelivery workflow",
        tests=("tests/test_handover_outage.py::test_large_delivery_during_outage_answers_503_then_the_redelivery_is_archived",),
    ),
    Mutation(
        name="outbound-signal-fire-and-forget",
        file="wa_archive/archive/handover.py",
        original=_SIGNAL_SEND,
        replacement=_SIGNAL_SEND.replace("await signal_outbound(", _FIRE_AND_FORGET + "signal_outbound(") + ")",
        promise="the record API and the send proxy answer 200 only once the OutboundMessage workflow holds the send",
        tests=("tests/test_handover_outage.py::test_record_api_during_outage_answers_503_then_the_retry_is_archived",
               "tests/test_handover_outage.py::test_send_proxy_during_outage_answers_503_with_the_wamid_and_it_is_recorded_later"),
    ),
]
