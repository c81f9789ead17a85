"""Every error the archive raises, in one tree, and which of them retrying cannot fix.

    ArchiveError                   the root; carries the HTTP status where there was one   retryable
    ├── InputRefused               a body, header, filter or argument refused as given     NOT retryable
    │   ├── JsonRefused            a request body is not JSON this archive accepts         NOT retryable
    │   ├── EnvelopeError          a body is not a Cloud API or WASender webhook           NOT retryable
    │   ├── BadPayloads            a codec-server body is not a Payloads document          NOT retryable
    │   ├── FilterError            a search or export filter is not acceptable             NOT retryable
    │   ├── ConsentRefused         a consent record given by hand is not acceptable        NOT retryable
    │   ├── RangeNotSatisfiable    a Range header cannot be served from the object         NOT retryable
    │   ├── TokenError             an access-token command cannot be carried out           NOT retryable
    │   ├── HoldError              a legal hold cannot be set or released as asked         NOT retryable
    │   └── ErasureError           an erasure request cannot be taken as given             NOT retryable
    ├── ConfigError                configuration missing or invalid; names the variable    NOT retryable
    │   ├── NoTrustAnchor          no ledger public key from outside what is checked       NOT retryable
    │   └── ConfigProblems         every problem of a configuration at once, each named    NOT retryable
    ├── PlatformError              a service the archive runs on (Temporal, PostgreSQL)    retryable
    │   ├── TemporalConnectError   Temporal could not be reached or refused us             retryable
    │   ├── DatabaseConnectError   PostgreSQL could not be reached or refused us           retryable
    │   ├── UnknownPayloadKey      a payload under a key id this process lacks             retryable
    │   ├── MigrateAsAppRole       `migrate` connected as the application role             NOT retryable
    │   └── TokenChangesUnheard    the token memory cannot show it hears token changes     retryable
    ├── SourceError                a message source (Graph API, WASender, a link) failed   retryable
    │   ├── MediaSourceError       the provider answered badly (5xx, timeouts, bad JSON)   retryable
    │   │   ├── MediaNotFound      404: URL or media id expired                            retryable
    │   │   ├── MediaAccessDenied  401/403: our token is rejected                          NOT retryable
    │   │   └── LinkRefused        a media link is not an allowed public http(s) URL       NOT retryable
    │   ├── TemplateNotFound       the template is not (or no longer) in the WABA          NOT retryable
    │   └── GraphRequestRefused    a Graph id is not digits, or a download host is not     NOT retryable
    │                              Meta's: refused before anything (or the token) is sent
    ├── StorageError               the object store failed; nothing was committed          retryable
    │   ├── StorageConflict        different bytes already stored under the key            NOT retryable
    │   └── RetentionActive        an object still under retention or legal hold           NOT retryable
    ├── LedgerPending              a record's ledger leaf awaits its number: ask again     retryable
    ├── ReceiptRefused             a receipt cannot be given (yet), with the HTTP status   NOT retryable
    ├── DataDirInUse               a data dir is held by another live process              NOT retryable
    │   └── DevAlreadyRunning      a second `wa-archive dev` on the same data dir          NOT retryable
    └── IntegrityError             bytes do not match the hash recorded for them           retryable
        ├── MediaHashMismatch      a download differs from its declared SHA-256 or MAC     retryable
        ├── UnverifiedMessage      a message to record is not what the archive stored      NOT retryable
        ├── DeliveryNotStored      a delivery to fan out is not (or no longer) stored       NOT retryable
        ├── ExportError            an archived object no longer matches its hash           NOT retryable
        └── LedgerLeafMissing      a leaf below the log's size is gone: no root is made    NOT retryable

Refused input is also a ValueError (argparse type functions and pydantic validators expect one);
TemporalConnectError, DatabaseConnectError, MigrateAsAppRole and DataDirInUse are also RuntimeErrors,
which the CLI reports in one line.

Temporal matches a retry policy's non-retryable types against the exception's class name only, never
its bases, so each class says `retryable` itself (inherited from its branch unless it overrides it)
and NON_RETRYABLE, built from that attribute, is the one list every retry policy uses.
This module imports nothing outside the standard library: workflows load it inside Temporal's sandbox.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar


class ArchiveError(Exception):
    """Base of every archive failure; carries the HTTP status where there was one."""

    retryable: ClassVar[bool] = True  # Temporal's default: retried unless we know a retry cannot help

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


# Refused input: the same request fails the same way every time.

class InputRefused(ArchiveError, ValueError):
    """A body, header, filter or command argument was refused as given; the message says why."""

    retryable = False


class JsonRefused(InputRefused):
    """The body is not JSON this archive accepts; the message says why."""


class EnvelopeError(InputRefused):
    """The body is not a Cloud API webhook envelope; the message says why."""


class BadPayloads(InputRefused):
    """The body is not a Payloads document the codec server will work on; the message says why."""


class FilterError(InputRefused):
    """A filter value is not acceptable; `name` says which."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


class ConsentRefused(InputRefused):
    """A consent record given by hand (API or CLI) is not acceptable; `field` says which part."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class RangeNotSatisfiable(InputRefused):
    """The Range cannot be served: unsupported syntax, or no byte of it lies within the object."""


class TokenError(InputRefused):
    """A token command could not be carried out; the message says why."""


class HoldError(InputRefused):
    """The hold request cannot be carried out as asked; the message says why."""


class ErasureError(InputRefused):
    """The erasure request cannot be taken as given; the message says why."""


# Configuration: fixed by an operator, not by time.

class ConfigError(ArchiveError):
    """Configuration is missing or invalid; the message names the variable."""

    retryable = False


class NoTrustAnchor(ConfigError):
    """No ledger public key was given from outside what is being verified."""


class ConfigProblems(ConfigError):
    """Every problem found in a configuration, so that one run names them all; `problems` holds one
    sentence each, naming its variable and never a secret's value."""

    def __init__(self, problems: list[str]) -> None:
        message = problems[0] if len(problems) == 1 else (
            f"{len(problems)} problems in the configuration: "
            + "; ".join(f"({n}) {p}" for n, p in enumerate(problems, 1)))
        super().__init__(message)
        self.problems = list(problems)


# The platform: Temporal and PostgreSQL, which the archive runs on rather than archives from.

class PlatformError(ArchiveError):
    """A service the archive runs on failed or refused it."""


class TemporalConnectError(PlatformError, RuntimeError):
    """Temporal could not be reached or refused us; says where and how it was tried, never a secret
    (TemporalConnection.connect_failure words the message)."""


class DatabaseConnectError(PlatformError, RuntimeError):
    """PostgreSQL could not be reached or refused us; names the host, port and variable, never the
    password (devstack.runtime.connect_db words the message)."""


class UnknownPayloadKey(PlatformError):
    """A payload was encrypted with a key id this process does not hold.

    Retryable: during a key rotation another worker may already hold the key."""


class MigrateAsAppRole(PlatformError, RuntimeError):
    """`migrate` was pointed at the application role, which may not change the schema."""

    retryable = False


class TokenChangesUnheard(PlatformError):
    """The API token memory cannot show that it hears every change to the tokens (the trigger that
    announces them is missing, switched off or altered, or a notification did not come back): it
    remembers nothing until it can (wa_archive/access/token_cache.py)."""


# Sources: the Graph API, WASender and media links.

class SourceError(ArchiveError):
    """A message source failed or was refused; the subclass says which way."""


class MediaSourceError(SourceError):
    """The media source (Graph API or its download URL) failed in a way a retry may fix."""


class MediaNotFound(MediaSourceError):
    """404 from the source: the URL expired or the media id is unknown; a fresh URL may work."""


class MediaAccessDenied(MediaSourceError):
    """401/403 from the source: the access token is invalid or lacks a permission."""

    retryable = False
    SCOPE_HINT = (
        "check WA_ARCHIVE_META_ACCESS_TOKEN: it must be valid and carry the "
        "whatsapp_business_messaging permission (and whatsapp_business_management for templates)"
    )


class LinkRefused(MediaSourceError):
    """A media link was refused: not http(s), an internal address, too large, or too many redirects."""

    retryable = False


class TemplateNotFound(SourceError):
    """The Graph API has no template with this name and language in the WABA."""

    retryable = False


class GraphRequestRefused(SourceError):
    """A Graph call was refused before it was made: an id that is not 1-20 digits, or a download URL
    on a host the bearer token must not reach. Retrying cannot change either."""

    retryable = False


# Storage: the object store.

class StorageError(ArchiveError):
    """The object store failed; nothing was committed under the key."""


class StorageConflict(StorageError):
    """Different bytes are already stored under this key; objects are never overwritten."""

    retryable = False


class RetentionActive(StorageError):
    """Removal refused: the object is within its retention period or on legal hold."""

    retryable = False


# The ledger: a record's leaf is numbered by the integrator, a moment after the record is written.

class LedgerPending(ArchiveError):
    """The record's ledger leaf is written (durable with the record) but not yet numbered, so no
    receipt can prove it yet; the integrator numbers it within `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ReceiptRefused(ArchiveError):
    """Why a message's receipt cannot be given, with the HTTP status that says so (and, when it will
    be given shortly, the seconds after which to ask again)."""

    retryable = False

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message, http_status=status)
        self.status = status
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


# The embedded stack's data directories: one owner at a time.

class DataDirInUse(ArchiveError, RuntimeError):
    """A data dir's lock is held by a live process: its pid and the note it left (as the lock file says)."""

    retryable = False

    def __init__(self, message: str, holder: int | None, note: str) -> None:
        super().__init__(message)
        self.holder = holder
        self.note = note


class DevAlreadyRunning(DataDirInUse):
    """A second `dev` on a data dir whose first one is alive."""


# Integrity: bytes checked against the hash recorded for them.

class IntegrityError(ArchiveError):
    """Bytes do not match the hash (or MAC) recorded for them."""


class MediaHashMismatch(IntegrityError):
    """The bytes we downloaded do not match the provider's declared SHA-256.

    Retryable: the next attempt downloads them again."""


class UnverifiedMessage(IntegrityError):
    """A message handed over to be recorded is not what the archive itself stored: not in a delivery
    the webhook stored after checking its signature, or not as that delivery has it (inbound); no send
    record the API stored, or not as it has it (outbound). Temporal inputs are anyone's who can start
    a workflow on the cluster, so such a message is refused, never recorded."""

    retryable = False


class DeliveryNotStored(IntegrityError):
    """A delivery named for fan-out is not stored: never stored by the webhook (an IngestDelivery
    started by someone else), or disposed of since. No retry can make its bytes appear."""

    retryable = False


class ExportError(IntegrityError):
    """The export could not be made faithfully (e.g. an archived object no longer matches its hash)."""

    retryable = False


class LedgerLeafMissing(IntegrityError):
    """A leaf below the log's size is not there (removed behind the archive's back): no root or proof
    over it can be made, and none is made over fewer leaves instead."""

    retryable = False


def _error_tree(root: type[ArchiveError] = ArchiveError) -> Iterator[type[ArchiveError]]:
    """`root` and every class below it, depth first in the order they are defined."""
    yield root
    for subclass in root.__subclasses__():
        yield from _error_tree(subclass)


NON_RETRYABLE: tuple[str, ...] = tuple(cls.__name__ for cls in _error_tree() if not cls.retryable)
