"""The webhook HTTP server: the application with every route, health and readiness.

The routes live beside what they serve: the webhook sources (meta.py, wasender.py, through the one
intake in intake.py), the send proxy and record API (outbound.py), the JSON API (api.py), the pages
(ui.py) and the codec server (codec.py).
"""

from __future__ import annotations

import aiohttp
import structlog
from aiohttp import web

from wa_archive.credentials import contact_secret
from wa_archive.observability.gauges import run_refresher
from wa_archive.observability.readiness import dependency_report, readiness_body
from wa_archive.observability.server import metrics_handler
from wa_archive.sources.meta.graph import GraphClient
from webhook import edge
from webhook.deps import DEPS, WebhookDeps, refuse_unstorable_urls, run_while_serving

__all__ = ["WebhookDeps", "create_app"]

log = structlog.get_logger("wa_archive.webhook")


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Temporal, Postgres and the object store reachable; 503 naming what is not (only "ok" or
    "down" per dependency: anyone may ask)."""
    deps = request.app[DEPS]
    body, status = readiness_body(await dependency_report(deps.client, deps.pool, deps.store))
    return web.json_response(body, status=status)


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
    # Counts and ages only, never a number, text or id: open like /healthz (README, "Operating it").
    app.router.add_get("/metrics", metrics_handler)
    run_while_serving(app, lambda: run_refresher(deps.pool, deps.client, deps.settings))  # the database-derived gauges
    wasender.add_routes(app)
    outbound.add_routes(app)
    from webhook import audit_api, ui_audit
    from webhook.auth import install_refusal_log, install_token_cache

    install_refusal_log(app, deps.pool)
    install_token_cache(app, deps.pool, deps.settings.database_url, deps.settings.api_token_cache_seconds)
    # Before api's routes: /api/v1/messages/{id}/receipt must be tried before the id that takes the rest of the path.
    audit_api.add_routes(app)
    ui_audit.add_routes(app)
    api.add_routes(app)
    ui.add_routes(app)
    from webhook import ui_sign_in_link

    ui_sign_in_link.add_routes(app)
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

