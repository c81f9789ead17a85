"""Temporal holds no readable message: the payload codec, its keys and rotation, encoded failures, and
the raw histories of archived messages read without the codec."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid

import pytest
from cryptography.exceptions import InvalidTag
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import WorkflowSerializationContext
from temporalio.exceptions import ApplicationError

from tests.conftest import DATA_CONVERTER, make_settings
from tests.test_wasender import SECRET as WASENDER_SECRET
from tests.test_wasender import (
    encrypt,
    host,  # noqa: F401 - a fixture, used by name below
    key_id,
    post,
    upsert,
)
from tests.test_wasender import media_message as wasender_media
from wa_archive.errors import ConfigError, UnknownPayloadKey
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import dumps, envelope, media_message, message, wamid
from wa_archive.temporal.client import data_converter, payload_keys
from wa_archive.temporal.codec import (
    AesGcmPayloadCodec,
    generate_key_line,
    parse_payload_keys,
    workflow_of,
)

KEY_A = "ka:" + base64.b64encode(b"A" * 32).decode()
KEY_B = "kb:" + base64.b64encode(b"B" * 32).decode()


def codec(keys: str) -> AesGcmPayloadCodec:
    return AesGcmPayloadCodec(parse_payload_keys(keys, "WA_ARCHIVE_PAYLOAD_KEYS"))


def plain(value: object) -> Payload:
    """A payload as the archive's converter makes it before the codec: JSON with its encoding in metadata."""
    return pydantic_data_converter.payload_converter.to_payloads([value])[0]


# Units ------------------------------------------------------------------------------------------


async def test_round_trip_seals_data_and_metadata_under_a_fresh_nonce():
    original = plain({"text": "secret-text-marker", "phone": "447700900999"})
    sealed = await codec(KEY_A).encode([original, original])
    for payload in sealed:
        assert dict(payload.metadata) == {"encoding": b"binary/encrypted", "encryption-key-id": b"ka"}
        assert b"secret-text-marker" not in payload.SerializeToString()
        assert b"json/plain" not in payload.SerializeToString()  # the original encoding is sealed too
    assert sealed[0].data[:12] != sealed[1].data[:12] and sealed[0].data != sealed[1].data
    assert await codec(KEY_A).decode(sealed) == [original, original]
    tampered = Payload(metadata=sealed[0].metadata, data=sealed[0].data[:-1] + bytes([sealed[0].data[-1] ^ 1]))
    with pytest.raises(InvalidTag):
        await codec(KEY_A).decode([tampered])
    relabelled = Payload(metadata={"encoding": b"binary/encrypted", "encryption-key-id": b"kb"}, data=sealed[0].data)
    with pytest.raises(InvalidTag):  # the key id is authenticated: a payload cannot be moved to another key
        await codec(f"{KEY_A},{KEY_B}").decode([relabelled])


async def test_payloads_are_labelled_with_their_workflow_and_the_label_cannot_be_changed():
    context = WorkflowSerializationContext(namespace="default", workflow_id="wa-msg-one")
    sealed = await codec(KEY_A).with_context(context).encode([plain("labelled")])
    assert sealed[0].metadata["wa-archive-workflow-id"] == b"wa-msg-one" and workflow_of(sealed[0]) == "wa-msg-one"
    assert await codec(KEY_A).decode(sealed) == [plain("labelled")]  # decoding needs no context: the label says
    for forged in (b"wa-msg-other", None):  # moved to another workflow, or the label stripped
        metadata = {k: v for k, v in sealed[0].metadata.items() if k != "wa-archive-workflow-id"}
        if forged is not None:
            metadata["wa-archive-workflow-id"] = forged
        with pytest.raises(InvalidTag):
            await codec(KEY_A).decode([Payload(metadata=metadata, data=sealed[0].data)])
    with pytest.raises(ConfigError, match="key id 'bad id' must be"):
        parse_payload_keys("bad id:" + KEY_A.split(":")[1], "V")


async def test_payloads_from_before_the_codec_pass_through_unchanged():
    old = [plain({"text": "written before encryption"}), Payload(data=b"no metadata at all")]
    assert await codec(KEY_A).decode(old) == old
    assert await DATA_CONVERTER.decode(old[:1], [dict]) == [{"text": "written before encryption"}]


async def test_key_rotation_old_payloads_still_decode_and_new_ones_use_the_front_key():
    before = await codec(KEY_A).encode([plain("sealed under A")])
    rotated = codec(f"{KEY_B},{KEY_A}")
    assert await rotated.decode(before) == [plain("sealed under A")]
    after = await rotated.encode([plain("sealed under B")])
    assert after[0].metadata["encryption-key-id"] == b"kb"
    assert await codec(f"{KEY_B},{KEY_A}").decode(after) == [plain("sealed under B")]
    with pytest.raises(UnknownPayloadKey, match="'kb'"):  # a process still on the old key list
        await codec(KEY_A).decode(after)


async def test_an_unknown_key_id_is_an_error_naming_it():
    sealed = await codec(KEY_B).encode([plain("x")])
    with pytest.raises(UnknownPayloadKey, match=r"key id 'kb'.*WA_ARCHIVE_PAYLOAD_KEYS"):
        await codec(KEY_A).decode(sealed)


async def test_failure_messages_and_stack_traces_are_encrypted():
    try:
        raise ApplicationError("media https://x/failure-marker gone")
    except ApplicationError as exc:
        failure = Failure()
        await DATA_CONVERTER.encode_failure(exc, failure)
    raw = failure.SerializeToString()
    assert b"failure-marker" not in raw and b"test_payload_codec" not in raw  # message and stack trace
    assert failure.message == "Encoded failure" and not failure.stack_trace
    assert failure.encoded_attributes.metadata["encoding"] == b"binary/encrypted"
    assert "failure-marker" in str(await DATA_CONVERTER.decode_failure(failure))


def test_keys_parse_from_the_variable_or_a_file_and_bad_values_name_the_variable(tmp_path):
    parsed = parse_payload_keys(f" {KEY_B} ,\n{KEY_A}\n", "V")
    assert parsed.current_id == "kb" and parsed.by_id() == {"kb": b"B" * 32, "ka": b"A" * 32}
    line = generate_key_line()
    assert len(parse_payload_keys(line, "V").keys[0][1]) == 32 and line != generate_key_line()
    for bad, why in (("", "no key"), ("nokey", "id:base64key"), ("k:!!", "not valid base64"),
                     ("k:" + base64.b64encode(b"short").decode(), "32 bytes, not 5"),
                     (f"{KEY_A},{KEY_A}", "appears twice")):
        with pytest.raises(ConfigError, match=f"^WA_ARCHIVE_PAYLOAD_KEYS: .*{why}"):
            parse_payload_keys(bad, "WA_ARCHIVE_PAYLOAD_KEYS")
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"{KEY_B}\n{KEY_A}\n")
    settings = make_settings(payload_keys=None, payload_keys_file=keys_file, data_dir=tmp_path)
    assert payload_keys(settings).current_id == "kb"
    keys_file.write_text("kb:short")
    with pytest.raises(ConfigError, match="^WA_ARCHIVE_PAYLOAD_KEYS_FILE: "):
        payload_keys(settings)
    with pytest.raises(ConfigError, match="WA_ARCHIVE_PAYLOAD_KEYS or WA_ARCHIVE_PAYLOAD_KEYS_FILE is required"):
        payload_keys(make_settings(payload_keys=None, data_dir=tmp_path))
    assert payload_keys(make_settings(payload_keys=SecretStr(KEY_A), payload_keys_file=keys_file)).current_id == "ka"


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wa_archive.cli", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_keys_generate_and_worker_and_serve_refuse_to_start_without_keys(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_ARCHIVE_")}
    generated = _cli("keys", "generate", env=env)
    assert generated.returncode == 0, generated.stderr
    assert parse_payload_keys(generated.stdout.strip(), "stdout").current_id.startswith("k")
    env.update(WA_ARCHIVE_DATA_DIR=str(tmp_path), WA_ARCHIVE_TEMPORAL_ADDRESS="127.0.0.1:1",
               WA_ARCHIVE_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none", WA_ARCHIVE_META_ACCESS_TOKEN="t",
               WA_ARCHIVE_META_APP_SECRET="s", WA_ARCHIVE_META_VERIFY_TOKEN="v")
    for command in ("worker", "serve"):
        refused = _cli(command, env=env)
        assert refused.returncode == 2, (command, refused.stdout, refused.stderr)
        # A long-running process's stderr is a log stream: the refusal is its one JSON line, which
        # names the missing keys among every other problem of the configuration.
        lines = [json.loads(line) for line in refused.stderr.strip().splitlines()]
        assert [e["event"] for e in lines] == ["configuration_error"], command
        assert ("WA_ARCHIVE_PAYLOAD_KEYS or WA_ARCHIVE_PAYLOAD_KEYS_FILE is required but not set"
                " (`wa-archive keys generate` prints a key)") in lines[0]["problems"], command
    refused = _cli("worker", env={**env, "WA_ARCHIVE_PAYLOAD_KEYS": "k1:not-a-key"})
    assert refused.returncode == 2 and "WA_ARCHIVE_PAYLOAD_KEYS: key 'k1' is not valid base64" in refused.stderr



def test_the_bench_plaintext_baseline_is_not_a_switch_and_refuses_any_temporal_but_loopback():
    """`make bench` measures the codec's cost against plaintext payloads from bench/plaintext.py; the
    image ships bench/, so that module must change nothing on import and refuse a real Temporal."""
    import wa_archive.temporal.client
    from bench import plaintext

    assert wa_archive.temporal.client.data_converter is data_converter  # importing it replaced nothing
    assert plaintext.plaintext_converter(make_settings(temporal_address="127.0.0.1:7233")) is pydantic_data_converter
    for address in ("temporal.example.com:7233", "10.0.0.5:7233", None):
        with pytest.raises(ConfigError, match="loopback"):
            plaintext.plaintext_converter(make_settings(temporal_address=address))

# The "done when" check: raw histories of archived messages ---------------------------------------


async def _closed_histories(client: Client, task_queue: str, expected: int) -> list[WorkflowHistory]:
    """Every workflow of this test's task queue, once `expected` of them have closed."""
    for _ in range(300):
        found = [wf async for wf in client.list_workflows(f"TaskQueue = '{task_queue}'")]
        if len(found) >= expected and all(wf.status != WorkflowExecutionStatus.RUNNING for wf in found):
            return [await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history() for wf in found]
        await asyncio.sleep(0.2)
    raise AssertionError(f"fewer than {expected} closed workflows on {task_queue}: {[(w.id, w.status) for w in found]}")


async def test_temporal_history_holds_no_marker_of_an_archived_message(stack_factory, host):  # noqa: F811 - the fixture imported above
    stack = await stack_factory(wasender_webhook_secret=WASENDER_SECRET, inline_fanout_max=0)
    tag = uuid.uuid4().hex[:10]
    text, name = f"text-marker-{tag}", f"Name Marker {tag}"
    phone = "4477" + str(int(tag, 16) % 10**8).zfill(8)
    failing_media = f"failmarker{tag}"
    media_key, blob = encrypt(b"statement bytes")
    markers = {"text": text, "profile name": name, "phone": phone, "failing media id": failing_media,
               "mediaKey": base64.b64encode(media_key).decode()}

    # Meta: a text message and an image whose media the source refuses, so failures are recorded.
    stack.graph.add(FakeMedia(failing_media, content=b"x", status=403))
    text_id, failed_id = wamid(), wamid()
    contacts = [{"profile": {"name": name}, "wa_id": phone}]
    status, _ = await stack.post(dumps(envelope([
        message("text", {"body": text}, mid=text_id, phone=phone),
        media_message("image", failing_media, None, "image/jpeg", mid=failed_id, phone=phone)],
        phone=phone, contacts=contacts)))
    assert status == 200
    # WASender: encrypted media with its mediaKey, from the same number, with the text as its caption.
    ws = wasender_media(key_id(), host.put(blob), b"statement bytes", media_key, blob, caption=text)
    for field in ("senderPn", "remoteJid"):
        ws["key"][field] = f"{phone}@s.whatsapp.net"
    ws["key"]["cleanedSenderPn"] = phone
    ws["pushName"] = name
    status, _ = await post(stack, upsert(ws))
    assert status == 200
    archived = await stack.wait_for_message(ws["key"]["id"])
    assert archived["media"][0]["status"] == "archived" and archived["contact"]["phone"] == phone
    assert (await stack.wait_for_message(text_id))["text"] == text
    await stack.wait_for_failure(failed_id)

    raw_client = Client(**{**stack.client.config(), "data_converter": pydantic_data_converter})
    histories = await _closed_histories(raw_client, stack.settings.task_queue, expected=4)
    kinds = {h.events[0].workflow_execution_started_event_attributes.workflow_type.name for h in histories}
    assert kinds == {"IngestDelivery", "ArchiveMessage"}
    failures = [e for h in histories for e in h.events if e.HasField("activity_task_failed_event_attributes")]
    assert failures, "the refused media left a failure event"
    for history in histories:
        raw = b"".join(e.SerializeToString() for e in history.events) + history.to_json().encode()
        for what, marker in markers.items():
            assert marker.encode() not in raw, f"{what} readable in the history of {history.workflow_id}"

    # With the codec the same histories decode to the original values.
    decoded = []
    for history in histories:
        for event in history.events:
            attrs = event.workflow_execution_started_event_attributes
            if event.HasField("workflow_execution_started_event_attributes"):
                decoded += await DATA_CONVERTER.decode(attrs.input.payloads, [dict])
    inputs = json.dumps(decoded, ensure_ascii=False)
    for what in ("text", "profile name", "phone", "mediaKey", "failing media id"):
        assert markers[what] in inputs, what
    failure = failures[0].activity_task_failed_event_attributes.failure
    assert failing_media in str(await DATA_CONVERTER.decode_failure(failure))
