"""The Temporal namespace's retention of closed workflows.

Temporal's histories are working state, never the record: the archive's record is Postgres, the
object store and the ledger. A closed workflow's history is kept only long enough to debug it, so a
message's (encrypted) copy in Temporal does not outlive its purpose.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.api.namespace.v1 import NamespaceConfig
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, UpdateNamespaceRequest
from temporalio.client import Client


async def set_retention(client: Client, days: int) -> timedelta:
    """Set the client's namespace to keep closed workflows `days` days; returns what it now says."""
    config = NamespaceConfig()
    config.workflow_execution_retention_ttl.FromTimedelta(timedelta(days=days))
    # Only the retention is sent: the server leaves every other setting of the namespace as it is.
    await client.workflow_service.update_namespace(UpdateNamespaceRequest(namespace=client.namespace, config=config))
    return await retention(client)


async def retention(client: Client) -> timedelta:
    described = await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=client.namespace))
    return described.config.workflow_execution_retention_ttl.ToTimedelta()
