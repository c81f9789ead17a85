"""The webhook HTTP server: the application with every route, health and readiness.

The routes live beside what they serve: the webhook sources (meta.py, wasender.py, through the one
intake in intake.py), the send proxy and record API (outbound.py), the JSON API (api.py), the pages
(ui.py) and the codec server (codec.py).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiohttp
import structlog
from aiohttp import web

from wa_archive.credentials import contact_secret
from wa_archive.db import ping
from wa_archive.sources.meta.graph import GraphClient
from webhook import edge
from webhook.deps import DEPS, WebhookDeps, refuse_unstorable_urls

__all__ = ["WebhookDeps", "create_app"]

log = structlog.get_logger("wa_archive.webhook")


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Temporal, Postgres and the object store reachable; 503 naming what is not.

    Anyone may ask, so the answer is only "ok" or "down" per dependency: the reason (hosts,
    addresses, exception text) goes to the server log.
    """
    deps = request.app[DEPS]
    checks = {
        "temporal": deps.client.service_client.check_health(timeout=timedelta(seconds=3)),
        "postgres": ping(deps.pool, timeout=3),
        "storage": deps.store.ping(),
    }
    results = await asyncio.gather(*(asyncio.wait_for(c, 5) for c in checks.values()),
                                   return_exceptions=True)
    report = {}
    for name, result in zip(checks, results, strict=True):
        report[name] = "down" if isinstance(result, BaseException) else "ok"
        if isinstance(result, BaseException):
            log.warning("dependency_down", dependency=name, error=repr(result))
    ok = all(v == "ok" for v in report.values())
    return web.json_response({"status": "ready" if ok else "not ready", "checks": report},
                             status=200 if ok else 503)


def create_app(deps: WebhookDeps) -> web.Application:
    """The aiohttp application; deps are created by the caller so tests can supply their own."""
    deps.settings.require("meta_app_secret", "meta_verify_token")
    if not deps.contact_secret:
        deps.contact_secret = contact_secret(deps.settings)
    # aiohttp's own limit is set above ours so that we answer 413 with our message.
    app = web.Application(client_max_size=deps.settings.max_body_bytes + 1024, middlewares=[refuse_unstorable_urls])
    app[DEPS] = deps
    edge.install(app, deps.settings.trusted_proxy_networks)
    from webhook import api, codec, meta, outbound, ui, ui_contacts, ui_reconciliation, wasender

    meta.add_routes(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    wasender.add_routes(app)
    outbound.add_routes(app)
    api.add_routes(app)
    ui.add_routes(app)
    ui_reconciliation.add_routes(app)
    ui_contacts.add_routes(app)
    codec.add_routes(app)
    from webhook import consent_api

    consent_api.add_routes(app)
    from webhook import openapi

    openapi.add_routes(app)
    if deps.graph is None:
        app.cleanup_ctx.append(_graph_client)
    return app


async def _graph_client(app: web.Application):
    """The Graph API client the send proxy forwards through, for the app's lifetime."""
    deps = app[DEPS]
    token = deps.settings.meta_access_token.get_secret_value() if deps.settings.meta_access_token else ""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        deps.graph = GraphClient(http, deps.settings.meta_graph_url, token)
        yield
        deps.graph = None
