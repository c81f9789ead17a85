"""The template version in force when an outbound message was sent: fetched from the WABA, kept
content-addressed (an unchanged template shares its snapshot), and rendered as the customer saw it."""

from __future__ import annotations

from typing import Any

import asyncpg
import structlog

from wa_archive.db import queries
from wa_archive.models import TemplateSnapshotResult
from wa_archive.sources.meta.graph import GraphClient
from wa_archive.sources.meta.templates import render, snapshot, template_ref

log = structlog.get_logger("wa_archive.outbound")


async def snapshot_sent_template(pool: asyncpg.Pool, graph: GraphClient, *, message_id: str, waba_id: str,
                                 send_template: dict[str, Any]) -> TemplateSnapshotResult:
    """Fetch the definition now in force, store it content-addressed, render the sent text."""
    name, language = template_ref(send_template)
    definition = await graph.template(waba_id, name, language)
    snap = snapshot(definition)
    created = await queries.insert_template_snapshot(pool, snap, waba_id=waba_id, name=name, language=language)
    log.info("template_snapshot", message_id=message_id, template=name, sha256=snap.sha256, created=created)
    return TemplateSnapshotResult(sha256=snap.sha256, name=name, language=language,
                                  rendered_text=render(snap.definition, send_template))
