"""The codec server: operators read encrypted workflow histories (Temporal UI or CLI), every decode is
access-logged naming who read which workflow, and nobody else decodes anything."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import uuid

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from tests.conftest import CONTACT_SECRET
from tests.test_ui_security import SESSION, sign_in
from wa_archive.archive.keys import message_workflow_id
from wa_archive.devstack.embedded import temporal_binary
from wa_archive.sources.meta.samples import dumps, envelope, message, wamid
from wa_archive.temporal.codec import AesGcmPayloadCodec, parse_payload_keys

UI_ORIGIN = "http://ui.example.test:8233"
OTHER_KEY = "kother:" + base64.b64encode(b"O" * 32).decode()


@pytest.fixture
async def archived(stack_factory):
    """A stack whose UI origin is configured, and one archived message whose text is a marker."""
    stack = await stack_factory(temporal_ui_origin=UI_ORIGIN)
    marker = f"codec-marker-{uuid.uuid4().hex[:10]}"
    message_id = wamid()
    status, _ = await stack.post(dumps(envelope([message("text", {"body": marker}, mid=message_id)])))
    assert status == 200
    await stack.wait_for_message(message_id)
    raw_client = Client(**{**stack.client.config(), "data_converter": pydantic_data_converter})
    workflow_id = message_workflow_id(CONTACT_SECRET, message_id)
    history = await raw_client.get_workflow_handle(workflow_id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    stack.codec_log_since = await stack.pool.fetchval("SELECT coalesce(max(id), 0) FROM access_log")
    return stack, marker, workflow_id, list(started.input.payloads)


def body(payloads: list[Payload]) -> dict:
    return json_format.MessageToDict(Payloads(payloads=payloads))


async def call(stack, path: str, document: dict | str, headers: dict | None = None):
    data = document if isinstance(document, str) else json.dumps(document)
    async with stack.http.post(f"{stack.url}{path}", data=data,
                               headers={"Content-Type": "application/json", **(headers or {})}) as resp:
        return resp.status, resp.headers, await resp.text()


async def codec_log(stack) -> list[dict]:
    """This test's codec entries (the access log is append-only, so earlier tests' stay)."""
    rows = await stack.pool.fetch("SELECT actor, role, action, target FROM access_log"
                                  " WHERE action LIKE 'codec_%' AND id > $1 ORDER BY id", stack.codec_log_since)
    return [dict(r) for r in rows]


async def test_an_operator_token_decodes_and_the_access_log_names_who_read_which_workflow(archived):
    stack, marker, workflow_id, sealed = archived
    assert sealed[0].metadata["encoding"] == b"binary/encrypted"
    assert sealed[0].metadata["wa-archive-workflow-id"] == workflow_id.encode()
    token = await stack.token("operator", name="ops-alice")
    status, headers, text = await call(stack, "/codec/decode", body(sealed),
                                       {"Authorization": f"Bearer {token}", "X-Namespace": "default"})
    assert status == 200, text
    assert headers["Cache-Control"] == "no-store"
    decoded = json_format.Parse(text, Payloads())
    assert marker in json.dumps(pydantic_data_converter.payload_converter.from_payloads(decoded.payloads))
    [entry] = await codec_log(stack)
    assert entry["actor"] == "ops-alice" and entry["role"] == "operator" and entry["action"] == "codec_decode"
    assert entry["target"]["workflows"] == [workflow_id]
    assert entry["target"]["namespace"] == "default" and entry["target"]["payloads"] == len(sealed)
    assert marker not in json.dumps(entry["target"])  # the log says who read what, never the content


async def test_without_an_operator_identity_nothing_is_decoded(archived):
    stack, marker, _, sealed = archived
    document = body(sealed)
    attempts = {"no token": ({}, 401), "unknown token": ({"Authorization": "Bearer not-a-token"}, 401),
                "not bearer": ({"Authorization": "Basic b3BzOm9wcw=="}, 401)}
    for role in ("sender", "auditor"):
        attempts[role] = ({"Authorization": f"Bearer {await stack.token(role)}"}, 403)
    revoked = await stack.token("operator", name=f"gone-{uuid.uuid4().hex[:6]}")
    await stack.pool.execute("UPDATE api_tokens SET revoked_at = now() WHERE name LIKE 'gone-%'")
    attempts["revoked operator"] = ({"Authorization": f"Bearer {revoked}"}, 401)
    for what, (headers, expected) in attempts.items():
        for path in ("/codec/decode", "/codec/encode", "/ui/codec/decode"):
            status, _, text = await call(stack, path, document, headers)
            assert status == expected, (what, path, text)
            assert marker not in text and "payloads" not in json.loads(text), (what, path)
    assert await codec_log(stack) == []


async def test_the_temporal_ui_reads_through_the_signed_in_session_from_its_own_origin_only(archived):
    stack, marker, workflow_id, sealed = archived
    operator = await sign_in(stack, await stack.token("operator", name="ops-ui"))
    cookie = {"Cookie": f"{SESSION}={operator.value}"}

    # The browser's preflight: allowed for the configured UI origin, with credentials; refused otherwise.
    async with stack.http.options(f"{stack.url}/ui/codec/decode", headers={
            "Origin": UI_ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace"}) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == UI_ORIGIN
        assert resp.headers["Access-Control-Allow-Credentials"] == "true"
        assert "X-Namespace" in resp.headers["Access-Control-Allow-Headers"]
    async with stack.http.options(f"{stack.url}/ui/codec/decode", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}) as resp:
        assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers

    status, headers, text = await call(stack, "/ui/codec/decode", body(sealed),
                                       {**cookie, "Origin": UI_ORIGIN, "X-Namespace": "default"})
    assert status == 200, text
    assert headers["Access-Control-Allow-Origin"] == UI_ORIGIN and marker in _decoded_text(text)
    # The same cookie from any other page is refused: CORS alone would not stop the request.
    status, headers, text = await call(stack, "/ui/codec/decode", body(sealed),
                                       {**cookie, "Origin": "https://evil.example"})
    assert status == 403 and marker not in text and "Access-Control-Allow-Origin" not in headers
    # A form post (no preflight) cannot carry the JSON the codec needs.
    async with stack.http.post(f"{stack.url}/ui/codec/decode", data="payloads=x",
                               headers={**cookie, "Content-Type": "text/plain", "Origin": UI_ORIGIN}) as resp:
        assert resp.status == 415
    # An auditor's session may read the archive's pages, not Temporal's payloads.
    auditor = await sign_in(stack, await stack.token("auditor"))
    status, _, text = await call(stack, "/ui/codec/decode", body(sealed),
                                 {"Cookie": f"{SESSION}={auditor.value}", "Origin": UI_ORIGIN})
    assert status == 403 and marker not in text
    entries = await codec_log(stack)
    assert [(e["actor"], e["target"]["workflows"]) for e in entries] == [("ops-ui", [workflow_id])]


def _decoded_text(text: str) -> str:
    decoded = json_format.Parse(text, Payloads())
    return json.dumps(pydantic_data_converter.payload_converter.from_payloads(decoded.payloads))


async def test_encode_seals_as_the_archive_does_and_bad_bodies_are_named(archived):
    stack, _, _, sealed = archived
    token = {"Authorization": f"Bearer {await stack.token('admin')}"}
    plain = pydantic_data_converter.payload_converter.to_payloads([{"note": "typed in the UI"}])
    status, _, text = await call(stack, "/codec/encode", body(plain), token)
    assert status == 200, text
    encoded = json_format.Parse(text, Payloads())
    assert encoded.payloads[0].metadata["encoding"] == b"binary/encrypted"
    assert b"typed in the UI" not in encoded.SerializeToString()
    status, _, text = await call(stack, "/codec/decode", text, token)
    assert json.loads(_decoded_text(text)) == [{"note": "typed in the UI"}]

    # A payload sealed under a key this archive does not hold comes back as it was; the rest decode.
    foreign = await AesGcmPayloadCodec(parse_payload_keys(OTHER_KEY, "t")).encode(plain)
    status, _, text = await call(stack, "/codec/decode", body([foreign[0], sealed[0]]), token)
    assert status == 200
    out = json_format.Parse(text, Payloads()).payloads
    assert out[0] == foreign[0] and out[1].metadata["encoding"] == b"json/plain"

    for bad, why in (("{", "not a Payloads JSON document"), ('{"payloads": [{"metadata": "x"}]}', "not a Payloads"),
                     ('{"payloads": 3}', "not a Payloads")):
        status, _, text = await call(stack, "/codec/decode", bad, token)
        assert status == 400 and why in json.loads(text)["error"], (bad, text)
    actions = [e["action"] for e in await codec_log(stack)]
    assert actions == ["codec_encode", "codec_decode", "codec_decode"]


async def test_the_temporal_cli_shows_a_decoded_history_with_an_operator_token(archived):
    stack, marker, workflow_id, _ = archived
    token = await stack.token("operator", name="ops-cli")
    command = [temporal_binary(), "workflow", "show", "--workflow-id", workflow_id, "--output", "json",
               "--address", stack.client.service_client.config.target_host, "--namespace", stack.client.namespace,
               "--codec-endpoint", f"{stack.url}/codec", "--codec-auth", f"Bearer {token}"]
    shown = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert marker in _payload_texts(json.loads(shown.stdout))
    plain = await asyncio.to_thread(subprocess.run, command[:-4], capture_output=True, text=True, timeout=60)
    assert plain.returncode == 0 and marker not in _payload_texts(json.loads(plain.stdout))
    assert any(e["actor"] == "ops-cli" and workflow_id in e["target"]["workflows"] for e in await codec_log(stack))


def _payload_texts(history: dict) -> str:
    """Every payload's data in a JSON history, base64-decoded, as one string."""
    found: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if "data" in node and "metadata" in node and isinstance(node["data"], str):
                found.append(base64.b64decode(node["data"]).decode("utf-8", "replace"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(history)
    return "\n".join(found)


# Attacks on the codec server -----------------------------------------------------------------------


def _forged(label: str) -> Payload:
    """A payload claiming to be sealed for `label`: any bytes, so it cannot authenticate."""
    return Payload(metadata={"encoding": b"binary/encrypted", "encryption-key-id": b"ktest",
                             "wa-archive-workflow-id": label.encode()}, data=os.urandom(40))


async def test_only_labels_that_authenticate_are_logged_so_decoys_cannot_hide_a_read(archived):
    stack, marker, workflow_id, sealed = archived
    token = {"Authorization": f"Bearer {await stack.token('operator', name='ops-mallory')}"}
    decoys = [_forged(f"0-decoy-{i:03}") for i in range(100)] + [_forged("wa-msg-" + "X" * (1024 * 1024))]
    status, _, text = await call(stack, "/codec/decode", body(decoys + sealed), token)
    assert status == 200, text
    decoded = json_format.Parse(text, Payloads()).payloads
    assert decoded[:101] == decoys  # forged payloads come back as they were sent
    assert marker in _decoded_text(json_format.MessageToJson(Payloads(payloads=decoded[101:])))
    [entry] = await codec_log(stack)
    assert entry["target"]["workflows"] == [workflow_id]  # the read is named; no invented label is
    assert entry["target"]["undecodable"] == 101 and entry["target"]["payloads"] == 101 + len(sealed)


async def test_a_request_of_too_many_payloads_is_refused_before_anything_is_logged(archived):
    stack, _, _, _ = archived
    token = {"Authorization": f"Bearer {await stack.token('operator')}"}
    status, _, text = await call(stack, "/codec/decode", '{"payloads":[' + ",".join(["{}"] * 300_000) + "]}", token)
    assert status == 400 and "at most 1000 payloads per request, not 300000" in json.loads(text)["error"]
    status, _, text = await call(stack, "/codec/decode", '{"payloads":[' + "[" * 100_000 + "]}", token)
    assert status == 400 and "not a Payloads JSON document" in json.loads(text)["error"]
    assert await codec_log(stack) == []


async def test_only_an_admin_may_seal_payloads(archived):
    """Sealing is how a Temporal client makes input the worker will open: not an operator's task."""
    stack, _, _, _ = archived
    plain = pydantic_data_converter.payload_converter.to_payloads(["x"])
    status, _, text = await call(stack, "/codec/encode", body(plain),
                                 {"Authorization": f"Bearer {await stack.token('operator')}"})
    assert status == 403 and "needs admin" in json.loads(text)["error"]
    assert await codec_log(stack) == []


async def test_origin_and_content_type_tricks_with_an_operator_cookie_are_refused(archived):
    stack, marker, _, sealed = archived
    name = f"ops-held-{uuid.uuid4().hex[:6]}"
    token = await stack.token("operator", name=name)
    cookie = {"Cookie": f"{SESSION}={(await sign_in(stack, token)).value}"}
    for origin in ("null", UI_ORIGIN + ".evil.example", UI_ORIGIN[:-1], UI_ORIGIN.upper(),
                   UI_ORIGIN.replace("http:", "https:"), stack.url.replace("127.0.0.1", "localhost")):
        status, headers, text = await call(stack, "/ui/codec/decode", body(sealed), {**cookie, "Origin": origin})
        assert status == 403 and marker not in text and "Access-Control-Allow-Origin" not in headers, origin
        async with stack.http.options(f"{stack.url}/ui/codec/decode", headers={
                "Origin": origin, "Access-Control-Request-Method": "POST"}) as resp:
            assert resp.status == 403, origin
    # Content-Type values a browser sends without a preflight, even when they mention application/json.
    for content_type in ("text/plain; a=1, application/json", "text/plain;application/json",
                         "application/x-www-form-urlencoded;x=application/json", "multipart/form-data; boundary=x"):
        async with stack.http.post(f"{stack.url}/ui/codec/decode", data=json.dumps(body(sealed)), headers={
                **cookie, "Origin": UI_ORIGIN, "Content-Type": content_type}) as resp:
            assert resp.status == 415 and marker not in await resp.text(), content_type
    # The token behind the session revoked: the session is dead too.
    await stack.pool.execute("UPDATE api_tokens SET revoked_at = now() WHERE name = $1", name)
    status, _, text = await call(stack, "/ui/codec/decode", body(sealed), {**cookie, "Origin": UI_ORIGIN})
    assert status == 401 and marker not in text
    assert await codec_log(stack) == []
