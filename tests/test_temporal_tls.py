"""Temporal over mTLS and with an API key, for real: a TLS-terminating proxy (client certificates
required, a server certificate for `temporal.test`, not for 127.0.0.1) sits in front of the suite's dev
server. The archive's own connect, a worker process and a CLI process reach Temporal through it; a
missing client certificate, a wrong CA or a wrong server name fail with an error saying so; the API key
arrives as `authorization: Bearer` and appears in no output. Configuration errors are checked without
services, and a temporal.toml profile is used as Temporal's own tools would use it."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
import trustme
from pydantic import SecretStr
from temporalio.client import WorkflowExecutionStatus

from tests.conftest import ACCESS_TOKEN, CONTACT_SECRET, LEDGER_KEY, PAYLOAD_KEYS, make_settings
from tests.tls_proxy import TLSProxy
from wa_archive.config import Settings
from wa_archive.devstack.embedded import free_port
from wa_archive.errors import ConfigError, TemporalConnectError
from wa_archive.sources.meta.fake_graph import FakeMedia
from wa_archive.sources.meta.samples import dumps, envelope, media_message, wamid
from wa_archive.temporal.client import connect_temporal
from wa_archive.temporal.connection import configured_address, resolve_connection

SERVER_NAME = "temporal.test"  # the only name in the proxy's certificate
CLIENT_CN = "wa-archive-test-client"
API_KEY = "tmprl-test-key-4f1c9a2e7d"


@dataclass(frozen=True)
class Pki:
    """PEM files: the server's CA, a client certificate the proxy accepts, and impostors."""

    ca: Path
    cert: Path
    key: Path
    other_ca: Path  # a CA that issued nothing the proxy shows
    rogue_cert: Path  # a client certificate from a CA the proxy does not trust
    rogue_key: Path
    server_context: ssl.SSLContext


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    server_ca, client_ca, other_ca, rogue_ca = trustme.CA(), trustme.CA(), trustme.CA(), trustme.CA()
    server = server_ca.issue_cert(SERVER_NAME)
    client = client_ca.issue_cert(CLIENT_CN, common_name=CLIENT_CN)
    rogue = rogue_ca.issue_cert("rogue", common_name="rogue")

    def write(name: str, *blobs: trustme.Blob) -> Path:
        path = root / name
        path.write_bytes(b"".join(blob.bytes() for blob in blobs))
        return path

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.configure_cert(context)
    client_ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED  # mTLS: no certificate, no connection
    return Pki(ca=write("ca.pem", server_ca.cert_pem), cert=write("client.pem", *client.cert_chain_pems),
               key=write("client.key", client.private_key_pem), other_ca=write("other-ca.pem", other_ca.cert_pem),
               rogue_cert=write("rogue.pem", *rogue.cert_chain_pems),
               rogue_key=write("rogue.key", rogue.private_key_pem), server_context=context)


@pytest_asyncio.fixture
async def proxy(pki: Pki, temporal_address: str):
    p = await TLSProxy(temporal_address, pki.server_context).start()
    yield p
    await p.close()


def tls_settings(pki: Pki, proxy: TLSProxy, **overrides) -> Settings:
    base = dict(temporal_address=proxy.address, temporal_tls_server_ca_cert_path=pki.ca,
                temporal_tls_server_name=SERVER_NAME, temporal_tls_client_cert_path=pki.cert,
                temporal_tls_client_key_path=pki.key)
    base.update(overrides)
    return make_settings(**base)


def _clean_env() -> dict[str, str]:
    """This process's environment without any archive or Temporal client setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("WA_ARCHIVE_", "TEMPORAL_"))}


# Through the proxy -------------------------------------------------------------------------------


async def test_archive_connects_over_mtls_and_starts_an_encrypted_workflow(pki, proxy, client):
    tls_client = await connect_temporal(tls_settings(pki, proxy))
    assert await tls_client.service_client.check_health()
    workflow_id = f"tls-{uuid.uuid4().hex[:10]}"
    handle = await tls_client.start_workflow("ArchiveMessage", {"marker": "tls-payload-marker"}, id=workflow_id,
                                             task_queue=f"tq-{uuid.uuid4()}")  # no worker: it waits
    try:
        described = await handle.describe()
        assert described.status == WorkflowExecutionStatus.RUNNING
        # Seen directly on the server: the start arrived through the proxy, its input sealed by the codec.
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        payload = history.events[0].workflow_execution_started_event_attributes.input.payloads[0]
        assert b"encryption-key-id" in payload.metadata and b"tls-payload-marker" not in payload.data
    finally:
        await handle.terminate()
    conn = proxy.connections[0]
    assert (conn.sni, conn.alpn, conn.handshake_error) == (SERVER_NAME, "h2", None)
    assert f"commonName={CLIENT_CN}" in conn.client_subject
    paths = [r[":path"] for r in proxy.requests]
    assert any(p.endswith("/StartWorkflowExecution") for p in paths)
    assert any(p.endswith("/DescribeWorkflowExecution") for p in paths)
    assert all("authorization" not in r for r in proxy.requests), "no API key configured, none sent"


def _archive_env(stack, database_url: str, data_dir: Path) -> dict[str, str]:
    s = stack.settings
    return {**_clean_env(), "WA_ARCHIVE_DATA_DIR": str(data_dir), "WA_ARCHIVE_DATABASE_URL": database_url,
            "WA_ARCHIVE_STORAGE_URL": stack.store.url, "WA_ARCHIVE_META_ACCESS_TOKEN": ACCESS_TOKEN,
            "WA_ARCHIVE_META_GRAPH_URL": s.meta_graph_url, "WA_ARCHIVE_MEDIA_FETCH_ALLOWLIST": "127.0.0.1",
            "WA_ARCHIVE_CONTACT_KEY_SECRET": CONTACT_SECRET, "WA_ARCHIVE_LEDGER_SIGNING_KEY": LEDGER_KEY,
            "WA_ARCHIVE_PAYLOAD_KEYS": PAYLOAD_KEYS, "WA_ARCHIVE_TASK_QUEUE": s.task_queue}


async def test_worker_and_cli_processes_work_through_mtls_and_send_the_api_key_unlogged(
    pki, proxy, stack_factory, database_url, tmp_path
):
    """The worker gets only the standard TEMPORAL_* variables, the CLI only WA_ARCHIVE_TEMPORAL_*."""
    stack = await stack_factory(run_worker=False)  # the webhook starts workflows; the worker below runs them
    env = _archive_env(stack, database_url, tmp_path)
    worker_env = {**env, "TEMPORAL_ADDRESS": proxy.address, "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(pki.ca),
                  "TEMPORAL_TLS_SERVER_NAME": SERVER_NAME, "TEMPORAL_TLS_CLIENT_CERT_PATH": str(pki.cert),
                  "TEMPORAL_TLS_CLIENT_KEY_PATH": str(pki.key), "TEMPORAL_API_KEY": API_KEY}
    log = tmp_path / "worker.log"
    worker = subprocess.Popen([sys.executable, "-m", "wa_archive.cli", "worker"], env=worker_env,
                              stdout=log.open("ab"), stderr=subprocess.STDOUT)
    try:
        media = stack.graph.add(FakeMedia(f"tls{uuid.uuid4().hex[:8]}", content=os.urandom(5000)))
        mid = wamid()
        status, _ = await stack.post(dumps(envelope([media_message("image", media.media_id, media.sha256_b64(),
                                                                   "image/jpeg", mid=mid)])))
        assert status == 200
        try:
            msg = await stack.wait_for_message(mid, timeout=90)
        except AssertionError:
            raise AssertionError(log.read_text()[-3000:]) from None
        assert msg["media"][0]["status"] == "archived" and msg["media"][0]["sha256"] == media.declared_sha256

        cli_env = {**env, "WA_ARCHIVE_TEMPORAL_ADDRESS": proxy.address,
                   "WA_ARCHIVE_TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(pki.ca),
                   "WA_ARCHIVE_TEMPORAL_TLS_SERVER_NAME": SERVER_NAME,
                   "WA_ARCHIVE_TEMPORAL_TLS_CLIENT_CERT_PATH": str(pki.cert),
                   "WA_ARCHIVE_TEMPORAL_TLS_CLIENT_KEY_PATH": str(pki.key), "WA_ARCHIVE_TEMPORAL_API_KEY": API_KEY}
        run = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "wa_archive.cli", "retrieval-test", "run"],
                                      env=cli_env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0 and "PASSED: 1/1" in run.stdout, run.stdout + run.stderr
        assert API_KEY not in run.stdout + run.stderr
        assert '"event": "temporal_connect"' in run.stderr and '"api_key": true' in run.stderr
    finally:
        worker.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(worker.wait, 30) == 0, log.read_text()[-3000:]
    worker_log = log.read_text()
    assert '"tls": true' in worker_log and f'"server_name": "{SERVER_NAME}"' in worker_log
    assert API_KEY not in worker_log

    # Both processes' calls carried the key; every connection showed the client certificate.
    polls = [r for r in proxy.requests if r[":path"].endswith("/PollWorkflowTaskQueue")]
    starts = [r for r in proxy.requests if r[":path"].endswith("/StartWorkflowExecution")]
    assert polls and starts and all(r.get("authorization") == f"Bearer {API_KEY}" for r in proxy.requests)
    assert proxy.handshake_errors == []
    assert all(f"commonName={CLIENT_CN}" in c.client_subject and c.sni == SERVER_NAME for c in proxy.connections)


@pytest.mark.parametrize("case, overrides, says, proxy_saw", [
    ("no client certificate", dict(temporal_tls_client_cert_path=None, temporal_tls_client_key_path=None),
     "it may require a client certificate", "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
    ("client certificate from an untrusted CA", "rogue", "may not accept this client certificate",
     "CERTIFICATE_VERIFY_FAILED"),
    ("wrong CA", "other_ca", "not from a CA this client trusts: check WA_ARCHIVE_TEMPORAL_TLS_SERVER_CA_CERT_PATH",
     None),
    ("wrong server name", dict(temporal_tls_server_name="other.test"),
     "not valid for other.test: set WA_ARCHIVE_TEMPORAL_TLS_SERVER_NAME", None),
    ("no server name: the address is checked", dict(temporal_tls_server_name=None),
     "not valid for 127.0.0.1: set WA_ARCHIVE_TEMPORAL_TLS_SERVER_NAME", None),
    ("plaintext to a TLS port", dict(temporal_tls_server_ca_cert_path=None, temporal_tls_server_name=None,
                                     temporal_tls_client_cert_path=None, temporal_tls_client_key_path=None),
     "does it expect TLS (WA_ARCHIVE_TEMPORAL_TLS=true)", "WRONG_VERSION_NUMBER"),
])
async def test_connecting_wrongly_fails_with_an_error_naming_the_cause(pki, proxy, case, overrides, says, proxy_saw):
    if overrides == "rogue":
        overrides = dict(temporal_tls_client_cert_path=pki.rogue_cert, temporal_tls_client_key_path=pki.rogue_key)
    elif overrides == "other_ca":
        overrides = dict(temporal_tls_server_ca_cert_path=pki.other_ca)
    overrides = dict(overrides)
    if case != "plaintext to a TLS port":  # (an API key would turn TLS on)
        overrides["temporal_api_key"] = SecretStr(API_KEY)
    settings = tls_settings(pki, proxy, **overrides)
    with pytest.raises(TemporalConnectError) as failed:
        await asyncio.wait_for(connect_temporal(settings), 30)
    message = str(failed.value)
    assert message.startswith(f"cannot connect to Temporal at {proxy.address}") and says in message, message
    assert API_KEY not in message
    if proxy_saw is not None:
        for _ in range(50):  # the proxy's side of the handshake may finish just after the client's
            if proxy.handshake_errors:
                break
            await asyncio.sleep(0.05)
        assert any(proxy_saw in e for e in proxy.handshake_errors), proxy.handshake_errors
    assert proxy.requests == [], "no request got past a failed handshake (nor, with it, the key)"


def test_cli_reports_a_refused_connection_in_one_line_without_the_key(pki, tmp_path):
    env = {**_clean_env(), "WA_ARCHIVE_DATA_DIR": str(tmp_path), "WA_ARCHIVE_PAYLOAD_KEYS": PAYLOAD_KEYS,
           "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}", "TEMPORAL_API_KEY": API_KEY,
           "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(pki.ca)}
    run = subprocess.run([sys.executable, "-m", "wa_archive.cli", "schedules", "apply"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1, run.stderr
    assert "wa-archive: cannot connect to Temporal at 127.0.0.1:" in run.stderr
    assert "TLS, no client certificate, API key" in run.stderr and "nothing accepts connections" in run.stderr
    assert API_KEY not in run.stdout + run.stderr

    env.update(TEMPORAL_TLS="false")
    refused = subprocess.run([sys.executable, "-m", "wa_archive.cli", "schedules", "apply"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert ("configuration error: TEMPORAL_API_KEY is set but TLS is turned off by TEMPORAL_TLS"
            in refused.stderr), refused.stderr
    assert API_KEY not in refused.stdout + refused.stderr


# A temporal.toml profile -------------------------------------------------------------------------


def _write_profiles(path: Path, pki: Pki, proxy: TLSProxy) -> None:
    path.write_text(f"""
[profile.default]
address = "127.0.0.1:{free_port()}"

[profile.archive]
address = "{proxy.address}"
namespace = "default"
api_key = "{API_KEY}"

[profile.archive.tls]
server_name = "wrong.test"
server_ca_cert_path = "{pki.ca}"
client_cert_path = "{pki.cert}"
client_key_path = "{pki.key}"
""")


async def test_temporal_toml_profile_reaches_temporal_and_settings_override_it(pki, proxy, tmp_path, monkeypatch):
    config = tmp_path / "temporal.toml"
    _write_profiles(config, pki, proxy)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(config))
    monkeypatch.setenv("TEMPORAL_PROFILE", "archive")
    settings = make_settings()  # no WA_ARCHIVE_TEMPORAL_* at all
    assert configured_address(settings) == proxy.address
    with pytest.raises(TemporalConnectError) as wrong:  # the profile's server name is wrong ...
        await connect_temporal(settings)
    assert "not valid for wrong.test" in str(wrong.value) and f"profile 'archive' in {config}" in str(wrong.value)

    monkeypatch.setenv("TEMPORAL_TLS_SERVER_NAME", SERVER_NAME)  # ... a TEMPORAL_* variable overrides the file
    assert await (await connect_temporal(settings)).service_client.check_health()
    assert proxy.requests[-1]["authorization"] == f"Bearer {API_KEY}"

    monkeypatch.setenv("TEMPORAL_TLS_SERVER_NAME", "wrong.test")  # ... and a WA_ARCHIVE_ setting overrides both
    fixed = make_settings(temporal_tls_server_name=SERVER_NAME, temporal_api_key=SecretStr("wa-key"))
    assert await (await connect_temporal(fixed)).service_client.check_health()
    assert proxy.requests[-1]["authorization"] == "Bearer wa-key"
    assert {c.sni for c in proxy.connections if c.handshake_error is None} == {SERVER_NAME}

    monkeypatch.setenv("TEMPORAL_PROFILE", "staging")
    with pytest.raises(ConfigError, match="TEMPORAL_PROFILE: no profile 'staging' in TEMPORAL_CONFIG_FILE"):
        resolve_connection(settings)


# Configuration, without services -----------------------------------------------------------------


def test_precedence_settings_over_variables_over_the_profile_file(pki, tmp_path):
    config = tmp_path / "temporal.toml"
    config.write_text(f"""
[profile.prod]
address = "file:7233"
namespace = "ns-file"
api_key = "file-key"
[profile.prod.tls]
server_name = "file.test"
server_ca_cert_path = "{pki.ca}"
[profile.prod.grpc_meta]
x-tenant = "archive"
""")
    env = {"TEMPORAL_CONFIG_FILE": str(config), "TEMPORAL_PROFILE": "prod", "TEMPORAL_NAMESPACE": "ns-env"}
    base = Settings(_env_file=None)
    conn = resolve_connection(base, env)
    assert (conn.address, conn.namespace, conn.api_key) == ("file:7233", "ns-env", "file-key")
    assert conn.tls.domain == "file.test"
    assert conn.tls.server_root_ca_cert == pki.ca.read_bytes() and conn.tls.client_cert is None
    assert conn.rpc_metadata == {"x-tenant": "archive"}
    over = Settings(_env_file=None, temporal_address="wa:7233", temporal_namespace="ns-wa",
                    temporal_api_key=SecretStr("wa-key"), temporal_tls_server_name="wa.test",
                    temporal_tls_client_cert_path=pki.cert, temporal_tls_client_key_path=pki.key)
    conn = resolve_connection(over, env)
    assert (conn.address, conn.namespace, conn.api_key, conn.tls.domain) == ("wa:7233", "ns-wa", "wa-key", "wa.test")
    assert conn.tls.client_cert == pki.cert.read_bytes() and conn.tls.server_root_ca_cert == pki.ca.read_bytes()
    # WA_ARCHIVE_TEMPORAL_PROFILE / _CONFIG_FILE choose over TEMPORAL_PROFILE / TEMPORAL_CONFIG_FILE.
    with pytest.raises(ConfigError, match="WA_ARCHIVE_TEMPORAL_PROFILE: no profile 'other'"):
        resolve_connection(Settings(_env_file=None, temporal_profile="other"), env)
    with pytest.raises(ConfigError, match="WA_ARCHIVE_TEMPORAL_CONFIG_FILE: cannot read"):
        resolve_connection(Settings(_env_file=None, temporal_config_file=tmp_path / "none.toml"), env)
    # Plaintext, as before, when nothing asks for TLS; an API key alone turns it on, as Temporal Cloud needs.
    plain = resolve_connection(Settings(_env_file=None, temporal_address="a:1"), {})
    assert (plain.tls, plain.namespace, plain.connect_kwargs()["tls"]) == (None, "default", False)
    cloud = resolve_connection(Settings(_env_file=None, temporal_address="a:1"), {"TEMPORAL_API_KEY": API_KEY})
    assert cloud.tls is not None and cloud.tls.server_root_ca_cert is None  # the system's roots
    assert resolve_connection(Settings(_env_file=None, temporal_address="a:1"), {"TEMPORAL_API_KEY": ""}).tls is None
    assert API_KEY not in repr(cloud) + str(cloud.describe())


@pytest.mark.parametrize("settings, env, error", [
    ({}, {}, "WA_ARCHIVE_TEMPORAL_ADDRESS (or TEMPORAL_ADDRESS, or `address` in a Temporal config profile)"
             " is required"),
    (dict(temporal_tls_client_key_path="KEY"), {},
     "WA_ARCHIVE_TEMPORAL_TLS_CLIENT_KEY_PATH is set but no client certificate is"),
    ({}, {"TEMPORAL_TLS_CLIENT_CERT_PATH": "CERT"},
     "TEMPORAL_TLS_CLIENT_CERT_PATH is set but no client key is (WA_ARCHIVE_TEMPORAL_TLS_CLIENT_KEY_PATH"),
    (dict(temporal_tls_client_cert_path="/nonexistent/client.pem", temporal_tls_client_key_path="KEY"), {},
     "WA_ARCHIVE_TEMPORAL_TLS_CLIENT_CERT_PATH: cannot read /nonexistent/client.pem (No such file or directory)"),
    (dict(temporal_tls_server_ca_cert_path="KEY"), {},
     "WA_ARCHIVE_TEMPORAL_TLS_SERVER_CA_CERT_PATH: no PEM certificate in it"),
    (dict(temporal_tls_client_cert_path="CERT", temporal_tls_client_key_path="CERT"), {},
     "WA_ARCHIVE_TEMPORAL_TLS_CLIENT_KEY_PATH: no PEM private key in it"),
    (dict(temporal_api_key=SecretStr(API_KEY), temporal_tls=False), {},
     "WA_ARCHIVE_TEMPORAL_API_KEY is set but TLS is turned off by WA_ARCHIVE_TEMPORAL_TLS"),
    ({}, {"TEMPORAL_API_KEY": API_KEY, "TEMPORAL_TLS": "0"},
     "TEMPORAL_API_KEY is set but TLS is turned off by TEMPORAL_TLS: an API key is only ever sent over TLS"),
    (dict(temporal_tls=False), {"TEMPORAL_TLS_SERVER_NAME": "x.test"},
     "TEMPORAL_TLS_SERVER_NAME is set but TLS is turned off by WA_ARCHIVE_TEMPORAL_TLS"),
    ({}, {"TEMPORAL_TLS": "yes"}, "TEMPORAL_TLS: must be true or false, not 'yes'"),
    ({}, {"TEMPORAL_TLS_DISABLE_HOST_VERIFICATION": "true"},
     "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION: not supported"),
    ({}, {"TEMPORAL_CONFIG_FILE": "/nonexistent/temporal.toml"},
     "TEMPORAL_CONFIG_FILE: cannot read /nonexistent/temporal.toml"),
    ({}, {"TEMPORAL_PROFILE": "prod"}, "TEMPORAL_PROFILE: no profile 'prod', as no Temporal config file is set"),
])
def test_bad_configuration_is_refused_naming_the_variable(pki, settings, env, error):
    paths = {"KEY": pki.key, "CERT": pki.cert}
    values = {k: paths.get(v, v) if isinstance(v, str) else v for k, v in settings.items()}
    env = {k: str(paths.get(v, v)) for k, v in env.items()}
    if "temporal_address" not in values and "required" not in error:
        env.setdefault("TEMPORAL_ADDRESS", "temporal.example:7233")
    with pytest.raises(ConfigError) as refused:
        resolve_connection(Settings(_env_file=None, **values), env)
    assert error in str(refused.value)
    assert API_KEY not in str(refused.value)


def test_a_broken_toml_file_is_reported_without_its_lines(tmp_path):
    config = tmp_path / "temporal.toml"
    config.write_text(f'[profile.default]\naddress = "a:1"\napi_key = "{API_KEY}" extra\n')
    with pytest.raises(ConfigError) as refused:
        resolve_connection(Settings(_env_file=None, temporal_config_file=config), {})
    assert "TOML parse error at line 3" in str(refused.value) and API_KEY not in str(refused.value)


def test_dev_starts_its_own_server_only_when_no_temporal_is_named(pki):
    bare = Settings(_env_file=None)
    assert configured_address(bare, {}) is None
    assert configured_address(bare, {"TEMPORAL_ADDRESS": "t:7233"}) == "t:7233"
    assert configured_address(bare, {"TEMPORAL_TLS": "false"}) is None  # plaintext asked for: fine
    with pytest.raises(ConfigError, match=r"TEMPORAL_ADDRESS\) is required when TEMPORAL_API_KEY is set"):
        configured_address(bare, {"TEMPORAL_API_KEY": API_KEY})
    with pytest.raises(ConfigError, match="required when WA_ARCHIVE_TEMPORAL_TLS_SERVER_CA_CERT_PATH is set"):
        configured_address(Settings(_env_file=None, temporal_tls_server_ca_cert_path=pki.ca), {})
