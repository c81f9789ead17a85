"""Typed archive errors, and which of them retrying cannot fix.

    ArchiveError
    ├── MediaSourceError          the provider answered badly (5xx, timeouts, bad JSON)   retryable
    │   ├── MediaNotFound         404: URL or media id expired                           retryable
    │   └── MediaAccessDenied     401/403: our token is rejected                         NOT retryable
    │   └── LinkRefused           a media link is not an allowed public http(s) URL      NOT retryable
    ├── TemplateNotFound          the template is not (or no longer) in the WABA         NOT retryable
    ├── GraphRequestRefused       a Graph id is not digits, or a download host is not    NOT retryable
    │                             Meta's: refused before anything (or the token) is sent
    ├── MediaHashMismatch         our SHA-256 differs from the provider's                retryable
    └── StorageError              the object store failed                                retryable
        ├── StorageConflict       different bytes already stored under the key           NOT retryable
        └── RetentionActive       an object still under retention or legal hold          NOT retryable

Temporal matches retry policy entries against the exception class name, so the names below are the
single place that decides what is retried.
"""

from __future__ import annotations


class ArchiveError(Exception):
    """Base of every archive failure; carries the HTTP status where there was one."""

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


class MediaSourceError(ArchiveError):
    """The media source (Graph API or its download URL) failed in a way a retry may fix."""


class MediaNotFound(MediaSourceError):
    """404 from the source: the URL expired or the media id is unknown; a fresh URL may work."""


class MediaAccessDenied(MediaSourceError):
    """401/403 from the source: the access token is invalid or lacks a permission."""

    SCOPE_HINT = (
        "check WA_ARCHIVE_META_ACCESS_TOKEN: it must be valid and carry the "
        "whatsapp_business_messaging permission (and whatsapp_business_management for templates)"
    )


class LinkRefused(MediaSourceError):
    """A media link was refused: not http(s), an internal address, too large, or too many redirects."""


class TemplateNotFound(ArchiveError):
    """The Graph API has no template with this name and language in the WABA."""


class GraphRequestRefused(ArchiveError):
    """A Graph call was refused before it was made: an id that is not 1-20 digits, or a download URL
    on a host the bearer token must not reach. Retrying cannot change either."""


class MediaHashMismatch(ArchiveError):
    """The bytes we downloaded do not match the provider's declared SHA-256."""


class StorageError(ArchiveError):
    """The object store failed; nothing was committed under the key."""


class StorageConflict(StorageError):
    """Different bytes are already stored under this key; objects are never overwritten."""


class RetentionActive(StorageError):
    """Removal refused: the object is within its retention period or on legal hold."""


NON_RETRYABLE = [MediaAccessDenied.__name__, StorageConflict.__name__, LinkRefused.__name__,
                 TemplateNotFound.__name__, RetentionActive.__name__, GraphRequestRefused.__name__]
