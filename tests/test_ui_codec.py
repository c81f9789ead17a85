"""An operator reads an encrypted workflow in the real Temporal UI that `wa-archive dev` starts, in a
headless Chromium: signed in to the archive's pages, the UI decodes through the codec server with the
session cookie; signed out, the same page shows only ciphertext. Screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import urllib.parse

import pytest
from playwright.async_api import async_playwright

from tests.test_browser import ARGS, ARTIFACTS, CHROMIUM
from tests.test_dev import _cli, _env, _start_dev, _stop, workflow_of

CAPTION = "Signed mandate (demo)"  # in the demo message's workflow input, nowhere else the UI can read


async def _open_workflow(context, ui_url: str, codec_endpoint: str, workflow_id: str):
    """The workflow's page in the Temporal UI, with the browser's codec setting including credentials
    (the dev server cannot set that for its UI; an operator ticks it once in "Data Encoder")."""
    page = await context.new_page()
    await page.goto(ui_url + "/namespaces/default/workflows")
    await page.evaluate("""(endpoint) => {
        localStorage.setItem('overrideRemoteCodecConfiguration', 'true');
        localStorage.setItem('endpoint', JSON.stringify(endpoint));
        localStorage.setItem('includeCredentials', 'true');
    }""", codec_endpoint)
    await page.goto(f"{ui_url}/namespaces/default/workflows/{urllib.parse.quote(workflow_id, safe='')}")
    return page


async def _shows(page, text: str, timeout_ms: int) -> bool:
    try:
        await page.wait_for_function("(text) => document.body.innerText.includes(text)", arg=text,
                                     timeout=timeout_ms)
        return True
    except Exception:  # noqa: BLE001 - playwright's timeout: not shown
        return False


@pytest.mark.slow
async def test_an_operator_reads_a_decoded_workflow_in_the_temporal_ui_and_nobody_else_does(tmp_path):
    env = _env(tmp_path / "data")
    log = tmp_path / "dev.log"
    proc = _start_dev(env, tmp_path, log)
    try:
        demo = _cli("demo", env=env, cwd=tmp_path)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        message_id = demo.stdout.split("wa-archive show '")[1].split("'")[0]
        _cli("show", message_id, env=env, cwd=tmp_path)
        created = _cli("tokens", "create", "--role", "operator", "--name", "ops-browser", "--json", env=env, cwd=tmp_path)
        operator = json.loads(created.stdout)["token"]
        state = json.loads((tmp_path / "data" / "dev.json").read_text())
        ui, archive = state["temporal_ui_url"], state["http_url"]
        workflow_id = workflow_of(message_id, env, tmp_path)

        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                # Not signed in: the UI gets 401 from the codec server and shows no message content.
                anonymous = await browser.new_context()
                page = await _open_workflow(anonymous, ui, archive + "/ui/codec", workflow_id)
                shown = await _shows(page, "Codec Server could not", 30_000)
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "temporal-ui-encrypted.png"), full_page=True)
                assert shown, (page.url, (await page.inner_text("body"))[:3000])
                assert not await _shows(page, CAPTION, 3_000)
                await anonymous.close()

                # Signed in to the archive as an operator: the same page decodes.
                context = await browser.new_context()
                login = await context.new_page()
                await login.goto(archive + "/ui/login")
                await login.fill("#token", operator)
                await login.click("main button")
                await login.wait_for_url("**/ui/")
                page = await _open_workflow(context, ui, archive + "/ui/codec", workflow_id)
                shown = await _shows(page, CAPTION, 30_000)
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "temporal-ui-decoded.png"), full_page=True)
                assert shown, "the Temporal UI did not show the decoded input"
                await context.close()
            finally:
                await browser.close()

        log_lines = _cli("access-log", "--json", env=env, cwd=tmp_path)
        entries = [e for e in json.loads(log_lines.stdout) if e["action"] == "codec_decode"]
        assert entries and all(e["actor"] == "ops-browser" for e in entries), entries
        assert any(workflow_id in e["target"]["workflows"] for e in entries)
    finally:
        assert _stop(proc) == 0, log.read_text()[-3000:]
