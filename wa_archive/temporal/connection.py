"""How every process of the archive reaches Temporal: address, namespace, TLS and API key.

Two layers, the first overriding the second field by field:

1. `WA_ARCHIVE_TEMPORAL_*` settings (environment or `.env`);
2. a Temporal client profile as `temporalio.envconfig` loads it: the profile named by
   `WA_ARCHIVE_TEMPORAL_PROFILE` or `TEMPORAL_PROFILE` (else `default`) from the TOML file named by
   `WA_ARCHIVE_TEMPORAL_CONFIG_FILE` or `TEMPORAL_CONFIG_FILE` (else Temporal's default path, if it
   exists), with the standard `TEMPORAL_*` variables applied over it.

TLS is on when any TLS setting or an API key is given, unless it is explicitly turned off; an API key
over plaintext is refused, as is a half-configured client certificate. The API key and private key
never appear in a repr, an error or a log line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.envconfig import ClientConfigProfile, DataSource
from temporalio.service import TLSConfig

from wa_archive.config import Settings
from wa_archive.errors import ConfigError, TemporalConnectError

DEFAULT_NAMESPACE = "default"
_ENVCONFIG_ERRORS = (RuntimeError, OSError, TypeError, ValueError)


@dataclass(frozen=True)
class TemporalConnection:
    """Resolved arguments of `Client.connect`, with a description that is safe to log."""

    address: str
    namespace: str
    tls: TLSConfig | None = field(default=None, repr=False)  # None: plaintext
    api_key: str | None = field(default=None, repr=False)
    rpc_metadata: Mapping[str, str] = field(default_factory=dict, repr=False)
    origin: str = "WA_ARCHIVE_TEMPORAL_* settings"
    address_source: str = "WA_ARCHIVE_TEMPORAL_ADDRESS"  # the variable (or profile entry) that named the address

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `temporalio.client.Client.connect` (everything but the converter)."""
        return {"target_host": self.address, "namespace": self.namespace, "api_key": self.api_key,
                "tls": self.tls if self.tls is not None else False, "rpc_metadata": dict(self.rpc_metadata)}

    def describe(self) -> dict[str, Any]:
        """What a log line or an error may say: where, whether TLS, which name; never a secret."""
        return {"address": self.address, "namespace": self.namespace, "tls": self.tls is not None,
                "server_name": self.tls.domain if self.tls else None,
                "client_cert": bool(self.tls and self.tls.client_cert),
                "api_key": self.api_key is not None, "config": self.origin}

    def connect_failure(self, cause: BaseException) -> TemporalConnectError:
        """The error for a failed connection: where and how it was tried, never a secret."""
        d = self.describe()
        how = "plaintext"
        if d["tls"]:
            how = "TLS" + (f", server name {d['server_name']}" if d["server_name"] else "")
            how += ", client certificate" if d["client_cert"] else ", no client certificate"
        if d["api_key"]:
            how += ", API key"
        detail = str(cause)
        if self.api_key:
            detail = detail.replace(self.api_key, "***")
        # In our words when the cause is known; the transport's own text only when it is not.
        said = _hint(detail, d) or f"the client said: {detail}"
        return TemporalConnectError(f"cannot connect to Temporal at {d['address']} (set by {self.address_source};"
                                    f" namespace {d['namespace']}; {how}; from {d['config']}): {said}")


def _hint(detail: str, d: dict[str, Any]) -> str:
    """Core's transport error in words, with the setting most likely to fix it."""
    if "UnknownIssuer" in detail:
        return ("the server's certificate is not from a CA this client trusts: check"
                " WA_ARCHIVE_TEMPORAL_TLS_SERVER_CA_CERT_PATH (or TEMPORAL_TLS_SERVER_CA_CERT_PATH)")
    if "NotValidForName" in detail:
        return (f"the server's certificate is not valid for {d['server_name'] or d['address'].rsplit(':', 1)[0]}:"
                " set WA_ARCHIVE_TEMPORAL_TLS_SERVER_NAME (or TEMPORAL_TLS_SERVER_NAME) to a name it holds")
    if "Expired" in detail or "NotValidYet" in detail:
        return "the server's certificate has expired or is not valid yet"
    if "InvalidContentType" in detail or "InvalidMessage" in detail:
        return "the server did not answer in TLS: is this a plaintext port (WA_ARCHIVE_TEMPORAL_TLS=false)?"
    if "ConnectionRefused" in detail:
        return "nothing accepts connections at this address"
    if "Unauthenticated" in detail or "PermissionDenied" in detail:
        return f"the server refused these credentials for namespace {d['namespace']}"
    closed = any(sign in detail for sign in ("error after connection", "transport error", "connection closed"))
    if closed and d["tls"]:
        if not d["client_cert"]:
            return ("the server closed the TLS connection: it may require a client certificate"
                    " (WA_ARCHIVE_TEMPORAL_TLS_CLIENT_CERT_PATH and WA_ARCHIVE_TEMPORAL_TLS_CLIENT_KEY_PATH)")
        return ("the server closed the TLS connection: it may not accept this client certificate"
                " (issued by a CA it trusts? still valid?)")
    if closed:
        return "the server closed the connection: does it expect TLS (WA_ARCHIVE_TEMPORAL_TLS=true)?"
    return ""


@dataclass(frozen=True)
class _Value:
    """A setting's value and the variable (or profile entry) it came from, for error messages."""

    value: Any
    source: str


class _Profile:
    """The envconfig profile with, for each field, the name of the variable or entry that set it."""

    def __init__(self, settings: Settings, env: Mapping[str, str]) -> None:
        self.env = env
        self.file, self.file_var = _config_file(settings, env)
        self.name = settings.temporal_profile or env.get("TEMPORAL_PROFILE") or None
        profile_var = "WA_ARCHIVE_TEMPORAL_PROFILE" if settings.temporal_profile else "TEMPORAL_PROFILE"
        try:
            self.profile = ClientConfigProfile.load(
                profile=settings.temporal_profile, config_source=self.file, override_env_vars=dict(env))
        except _ENVCONFIG_ERRORS as exc:
            message = _safe_message(exc)
            if message.startswith("Profile '") and self.file is None:
                raise ConfigError(f"{profile_var}: no profile {self.name!r}, as no Temporal config file is set"
                                  " (WA_ARCHIVE_TEMPORAL_CONFIG_FILE or TEMPORAL_CONFIG_FILE)") from None
            if message.startswith("Profile '"):
                raise ConfigError(f"{profile_var}: no profile {self.name!r} in {self.file_var} ({self.file})"
                                  ) from None
            raise ConfigError(f"Temporal client configuration ({self.origin}): {message}") from None

    @property
    def origin(self) -> str:
        if self.file is None:
            return "TEMPORAL_* variables"
        return f"profile {self.name or 'default'!r} in {self.file}"

    def get(self, value: Any, variables: tuple[str, ...], entry: str) -> _Value | None:
        if value is None:
            return None
        source = next((v for v in variables if v in self.env), None)
        return _Value(value, source or f"{entry} of {self.origin}")


def _config_file(settings: Settings, env: Mapping[str, str]) -> tuple[Path | None, str]:
    """The TOML file in use and the variable naming it; a named file must be readable."""
    if settings.temporal_config_file is not None:
        path, var = settings.temporal_config_file, "WA_ARCHIVE_TEMPORAL_CONFIG_FILE"
    elif env.get("TEMPORAL_CONFIG_FILE"):
        path, var = Path(env["TEMPORAL_CONFIG_FILE"]), "TEMPORAL_CONFIG_FILE"
    else:
        # Temporal's default place (on Linux; elsewhere envconfig still finds its own), used when there.
        home = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        default = Path(home) / "temporalio" / "temporal.toml"
        return (default, "the default Temporal config file") if default.is_file() else (None, "")
    try:
        path.read_bytes()
    except OSError as exc:
        # envconfig would silently fall back to an empty configuration.
        raise ConfigError(f"{var}: cannot read {path} ({exc.strerror})") from None
    return path, var


def _safe_message(exc: BaseException) -> str:
    """envconfig's message without the quoted TOML lines, which could hold an api_key."""
    lines = [line for line in str(exc).splitlines() if line.strip() and not re.match(r"^\s*\d*\s*\|", line)]
    return "; ".join(lines)


def _parse_bool(env: Mapping[str, str], name: str) -> None:
    value = env.get(name)
    if value is not None and value.lower() not in ("true", "false", "1", "0"):
        raise ConfigError(f"{name}: must be true or false, not {value!r}")


def _pick(settings_value: Any, variable: str, fallback: _Value | None) -> _Value | None:
    return _Value(settings_value, variable) if settings_value is not None else fallback


def _read_pem(item: _Value | None, marker: bytes, what: str) -> bytes | None:
    """The bytes of a PEM file or inline PEM data; ConfigError naming the variable otherwise."""
    if item is None:
        return None
    source: DataSource = item.value
    if isinstance(source, Path):
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{item.source}: cannot read {source} ({exc.strerror})") from None
        where = f" ({source})"
    else:
        data = source.encode() if isinstance(source, str) else bytes(source)
        where = ""
    if b"-----BEGIN " not in data or marker not in data:
        raise ConfigError(f"{item.source}: no PEM {what} in it{where}")
    return data


def configured_address(settings: Settings, env: Mapping[str, str] | None = None) -> str | None:
    """The Temporal address from the settings or the profile, or None when neither gives one.

    With no address, TLS settings or an API key are an error: an embedded plaintext dev server cannot
    be what they were meant for.
    """
    if settings.temporal_address:
        return settings.temporal_address
    env = os.environ if env is None else env
    profile = _Profile(settings, env)
    if profile.profile.address:
        return profile.profile.address
    secured = [f"WA_ARCHIVE_{name.upper()}" for name in _SECURING_SETTINGS if getattr(settings, name) is not None]
    if settings.temporal_tls:
        secured.append("WA_ARCHIVE_TEMPORAL_TLS")
    if profile.profile.api_key:
        secured.append(profile.get(True, ("TEMPORAL_API_KEY",), "api_key").source)  # type: ignore[union-attr]
    if profile.profile.tls is not None and profile.profile.tls.disabled is not True:
        tls_vars = tuple(name for name in env if name.startswith("TEMPORAL_TLS"))
        secured.append(profile.get(True, tls_vars, "tls").source)  # type: ignore[union-attr]
    if secured:
        raise ConfigError(f"WA_ARCHIVE_TEMPORAL_ADDRESS (or TEMPORAL_ADDRESS) is required when"
                          f" {', '.join(secured)} {'is' if len(secured) == 1 else 'are'} set")
    return None


_SECURING_SETTINGS = ("temporal_api_key", "temporal_tls_server_ca_cert_path",
                      "temporal_tls_server_name", "temporal_tls_client_cert_path", "temporal_tls_client_key_path")


def resolve_connection(settings: Settings, env: Mapping[str, str] | None = None) -> TemporalConnection:
    """Merge the WA_ARCHIVE_TEMPORAL_* settings over the envconfig profile and check the result."""
    env = os.environ if env is None else env
    for name in ("TEMPORAL_TLS", "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION"):
        _parse_bool(env, name)
    if env.get("TEMPORAL_TLS_DISABLE_HOST_VERIFICATION", "").lower() in ("true", "1"):
        raise ConfigError("TEMPORAL_TLS_DISABLE_HOST_VERIFICATION: not supported by the Temporal Python SDK;"
                          " give the server's CA (TEMPORAL_TLS_SERVER_CA_CERT_PATH) and name"
                          " (TEMPORAL_TLS_SERVER_NAME) instead")
    p = _Profile(settings, env)
    prof, tls = p.profile, p.profile.tls

    address = _pick(settings.temporal_address, "WA_ARCHIVE_TEMPORAL_ADDRESS",
                    p.get(prof.address or None, ("TEMPORAL_ADDRESS",), "address"))
    if address is None:
        raise ConfigError("WA_ARCHIVE_TEMPORAL_ADDRESS (or TEMPORAL_ADDRESS, or `address` in a Temporal"
                          " config profile) is required but not set")
    namespace = settings.temporal_namespace or prof.namespace or DEFAULT_NAMESPACE
    # An empty value counts as unset, as for every WA_ARCHIVE_ variable.
    api_key = _pick(settings.temporal_api_key.get_secret_value() or None if settings.temporal_api_key else None,
                    "WA_ARCHIVE_TEMPORAL_API_KEY", p.get(prof.api_key or None, ("TEMPORAL_API_KEY",), "api_key"))

    # TLS settings, each from the WA_ARCHIVE_ variable if set, else from the profile.
    t = tls
    disabled = _pick(None if settings.temporal_tls is None else not settings.temporal_tls,
                     "WA_ARCHIVE_TEMPORAL_TLS", p.get(t.disabled if t else None, ("TEMPORAL_TLS",), "tls.disabled"))
    server_name = _pick(settings.temporal_tls_server_name, "WA_ARCHIVE_TEMPORAL_TLS_SERVER_NAME",
                        p.get(t.server_name or None if t else None, ("TEMPORAL_TLS_SERVER_NAME",), "tls.server_name"))
    ca = _pick(settings.temporal_tls_server_ca_cert_path, "WA_ARCHIVE_TEMPORAL_TLS_SERVER_CA_CERT_PATH",
               p.get(t.server_root_ca_cert if t else None,
                     ("TEMPORAL_TLS_SERVER_CA_CERT_PATH", "TEMPORAL_TLS_SERVER_CA_CERT_DATA"), "tls.server_ca_cert"))
    cert = _pick(settings.temporal_tls_client_cert_path, "WA_ARCHIVE_TEMPORAL_TLS_CLIENT_CERT_PATH",
                 p.get(t.client_cert if t else None,
                       ("TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_CERT_DATA"), "tls.client_cert"))
    key = _pick(settings.temporal_tls_client_key_path, "WA_ARCHIVE_TEMPORAL_TLS_CLIENT_KEY_PATH",
                p.get(t.client_private_key if t else None,
                      ("TEMPORAL_TLS_CLIENT_KEY_PATH", "TEMPORAL_TLS_CLIENT_KEY_DATA"), "tls.client_key"))

    material = [item for item in (server_name, ca, cert, key) if item is not None]
    tls_config: TLSConfig | None = None
    if disabled is not None and disabled.value:
        if api_key is not None:
            raise ConfigError(f"{api_key.source} is set but TLS is turned off by {disabled.source}:"
                              " an API key is only ever sent over TLS")
        if material:
            raise ConfigError(f"{material[0].source} is set but TLS is turned off by {disabled.source}")
    elif disabled is not None or material or api_key is not None or tls is not None:
        if cert is not None and key is None:
            raise ConfigError(f"{cert.source} is set but no client key is"
                              " (WA_ARCHIVE_TEMPORAL_TLS_CLIENT_KEY_PATH or TEMPORAL_TLS_CLIENT_KEY_PATH)")
        if key is not None and cert is None:
            raise ConfigError(f"{key.source} is set but no client certificate is"
                              " (WA_ARCHIVE_TEMPORAL_TLS_CLIENT_CERT_PATH or TEMPORAL_TLS_CLIENT_CERT_PATH)")
        tls_config = TLSConfig(
            server_root_ca_cert=_read_pem(ca, b"CERTIFICATE-----", "certificate"),
            domain=server_name.value if server_name else None,
            client_cert=_read_pem(cert, b"CERTIFICATE-----", "certificate"),
            client_private_key=_read_pem(key, b"PRIVATE KEY-----", "private key"),
        )
    origin = "WA_ARCHIVE_TEMPORAL_* and TEMPORAL_* variables" + (f", {p.origin}" if p.file is not None else "")
    return TemporalConnection(address=address.value, namespace=namespace, tls=tls_config,
                              api_key=api_key.value if api_key else None,
                              rpc_metadata=dict(prof.grpc_meta), origin=origin, address_source=address.source)
