"""Exports as Temporal jobs: one ExportBundle workflow per export, found again by the export's id."""

from __future__ import annotations

import uuid
from typing import Any

from temporalio.client import Client, WorkflowHandle

from wa_archive.models import ExportInput, ExportOutput


def new_export_id() -> str:
    return uuid.uuid4().hex


def export_workflow_id(export_id: str) -> str:
    """Workflow id of an export's ExportBundle run."""
    return f"export-{export_id}"


async def start_export(client: Client, inp: ExportInput, *, task_queue: str) -> WorkflowHandle[Any, ExportOutput]:
    """Start the export's ExportBundle workflow; its result says where the bundle is stored."""
    return await client.start_workflow("ExportBundle", inp, id=export_workflow_id(inp.export_id),
                                       task_queue=task_queue, result_type=ExportOutput)


async def export_status(client: Client, export_id: str) -> str:
    """The export's workflow status ("RUNNING", "COMPLETED", "FAILED", ...); raises when there is no such export."""
    desc = await client.get_workflow_handle(export_workflow_id(export_id)).describe()
    return desc.status.name if desc.status else "RUNNING"


async def export_result(client: Client, export_id: str) -> ExportOutput:
    """The finished export's bundle (waits while it runs)."""
    output: ExportOutput = await client.get_workflow_handle(export_workflow_id(export_id),
                                                            result_type=ExportOutput).result()
    return output
