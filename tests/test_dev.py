"""`wa-archive dev` as a user runs it: start, archive a signed image webhook, restart, still there."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from wa_archive.devstack.embedded import free_port


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}
    # Every port dev would otherwise take by default (7233, 8233, 8080, 9464) is a free one, so several
    # dev tests can run at once (the suite runs in parallel processes).
    env.update(WA_ARCHIVE_DATA_DIR=str(data_dir), WA_ARCHIVE_HTTP_PORT=str(free_port()),
               WA_ARCHIVE_TEMPORAL_PORT=str(free_port()), WA_ARCHIVE_TEMPORAL_UI_PORT=str(free_port()),
               WA_ARCHIVE_METRICS_PORT=str(free_port()))
    return env


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wa_archive.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def _start_dev(env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "wa_archive.cli", "dev"], env=env, cwd=cwd,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)
    state = Path(env["WA_ARCHIVE_DATA_DIR"]) / "dev.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        if state.exists():
            url = json.loads(state.read_text())["http_url"] + "/readyz"
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    # Ready, and the banner printed: it comes after readiness, a moment later on a busy machine.
                    if resp.status == 200 and "webhook URL" in log.read_text():
                        return proc
            except OSError:
                pass
        time.sleep(0.3)
    raise AssertionError("dev did not become ready: " + log.read_text()[-3000:])


def _stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGINT)
    return proc.wait(60)


def workflow_of(message_id: str, env: dict[str, str], cwd: Path) -> str:
    """The message's ArchiveMessage workflow id, as an operator holding the key finds it."""
    found = _cli("message-key", message_id, "--json", env=env, cwd=cwd)
    assert found.returncode == 0, found.stderr
    return json.loads(found.stdout)["inbound_workflow_id"]


async def _started_payload(state: dict, workflow_id: str):
    """The archive workflow's input as Temporal stores it, read without the codec."""
    from temporalio.client import Client

    client = await Client.connect(state["temporal_address"])
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return history.events[0].workflow_execution_started_event_attributes.input.payloads[0]


async def _retention(state: dict):
    from temporalio.client import Client

    from wa_archive.temporal.namespace import retention

    return await retention(await Client.connect(state["temporal_address"]))


def _check_ui_decodes_through_the_codec_server(state: dict) -> None:
    """The UI that dev starts is pointed at the codec server, which lets that UI's origin call it."""
    with urllib.request.urlopen(state["temporal_ui_url"] + "/api/v1/settings", timeout=10) as resp:
        ui_settings = json.loads(resp.read())
    assert ui_settings["Codec"]["Endpoint"] == state["http_url"] + "/ui/codec", ui_settings["Codec"]
    preflight = urllib.request.Request(state["http_url"] + "/ui/codec/decode", method="OPTIONS", headers={
        "Origin": state["temporal_ui_url"], "Access-Control-Request-Method": "POST"})
    with urllib.request.urlopen(preflight, timeout=10) as resp:
        assert resp.status == 204 and resp.headers["Access-Control-Allow-Origin"] == state["temporal_ui_url"]


@pytest.mark.slow
def test_dev_archives_a_signed_image_and_keeps_it_across_restarts(tmp_path):
    data_dir = tmp_path / "data"
    env = _env(data_dir)
    log = tmp_path / "dev.log"
    proc = _start_dev(env, tmp_path, log)
    try:
        banner = log.read_text()
        assert "webhook URL" in banner and "Temporal UI" in banner
        demo = _cli("demo", env=env, cwd=tmp_path)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        message_id = re.search(r"wa-archive show '([^']+)'", demo.stdout).group(1)
        shown = json.loads(_cli("show", message_id, "--json", env=env, cwd=tmp_path).stdout)
        media = shown["media"][0]
        assert media["status"] == "archived" and len(media["sha256"]) == 64
        stored = data_dir / "objects" / media["storage_key"]
        import hashlib
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == media["sha256"]
        assert not os.access(stored, os.W_OK) or os.geteuid() == 0
        assert stored.stat().st_mode & 0o222 == 0, "stored objects are read-only"
        key_file = data_dir / "payload-keys.secret"
        assert key_file.stat().st_mode & 0o777 == 0o600
        key_line = key_file.read_text()
        state = json.loads((data_dir / "dev.json").read_text())
        started = asyncio.run(_started_payload(state, workflow_of(message_id, env, tmp_path)))
        assert started.metadata["encryption-key-id"] == key_line.split(":", 1)[0].encode()
        _check_ui_decodes_through_the_codec_server(state)
        assert asyncio.run(_retention(state)).days == 30
    finally:
        assert _stop(proc) == 0, log.read_text()[-3000:]
    assert not (data_dir / "dev.json").exists()

    proc = _start_dev(env, tmp_path, log)
    try:
        found = json.loads(_cli("search", "--json", env=env, cwd=tmp_path).stdout)
        assert [m["id"] for m in found] == [message_id]
        assert (data_dir / "payload-keys.secret").read_text() == key_line  # kept, not replaced
        again = json.loads(_cli("show", message_id, "--json", env=env, cwd=tmp_path).stdout)
        assert again["media"][0]["sha256"] == media["sha256"]
        assert again["deliveries"] and again["deliveries"][0]["signature"].startswith("sha256=")
        missing = _cli("show", "wamid.unknown", env=env, cwd=tmp_path)
        assert missing.returncode == 1 and "no archived message" in missing.stderr
    finally:
        assert _stop(proc) == 0, log.read_text()[-3000:]
