"""/readyz: what is up and what is down, told without naming where the dependencies live (issue 11, item 6)."""

from __future__ import annotations

import json

from tests.fuzz_http import fuzz_stack, request


async def test_readyz_names_only_the_dependency_that_is_down(stack_factory, client, tmp_path):
    from aiohttp import web

    from tests.conftest import make_settings
    from wa_archive.db import create_pool
    from wa_archive.devstack.embedded import free_port
    from wa_archive.storage import FilesystemStore
    from webhook.app import WebhookDeps, create_app

    stack = await fuzz_stack(stack_factory)
    status, _, answer = await request(stack, "GET", f"{stack.url}/readyz", where="readyz")
    assert status == 200 and json.loads(answer) == {"status": "ready", "checks": {
        "temporal": "ok", "postgres": "ok", "storage": "ok"}}
    # A database nobody listens on, at an address that must not be told to an anonymous caller.
    dead_port = free_port()
    pool = await create_pool(f"postgresql://secret-user:pw@127.0.0.1:{dead_port}/internal_db", min_size=0)
    runner = web.AppRunner(create_app(WebhookDeps(settings=make_settings(), client=client, pool=pool,
                                                  store=FilesystemStore(tmp_path / "objects"))))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with stack.http.get(f"http://127.0.0.1:{port}/readyz") as resp:
            status, answer = resp.status, await resp.read()
    finally:
        await runner.cleanup()
        await pool.close()
    assert status == 503
    assert json.loads(answer) == {"status": "not ready", "checks": {"temporal": "ok", "postgres": "down",
                                                                    "storage": "ok"}}
    for leak in (str(dead_port).encode(), b"127.0.0.1", b"internal_db", b"secret-user", b"Error", b"error"):
        assert leak not in answer
