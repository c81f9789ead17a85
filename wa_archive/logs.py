"""One log format for every process: one JSON object per line on stderr, whoever logs.

Our own structlog events and the stdlib loggers of the libraries underneath (temporalio with the
Temporal Core's Rust logs forwarded into it, aiohttp and its access log, asyncpg, botocore and
aiobotocore, asyncio, warnings) go through the same processors, so a traceback is a field of its
event, never extra lines. What a log may hold is decided by structure, not by hoping: known
sensitive fields are dropped, free text from libraries (their messages, exception texts and
tracebacks) loses query strings and anything shaped like a phone number, and the HTTP access log
names the route pattern, never the path a client sent (a wamid in a path carries the customer's
number; a query string may carry a phone or the webhook's verify token).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING

import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from structlog.typing import EventDict, Processor, WrappedLogger
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

if TYPE_CHECKING:
    from sys import UnraisableHookArgs

REDACTED = "[redacted]"
# Fields that may carry what a log must never hold, whoever sets them: dropped, whatever their value.
SENSITIVE_FIELDS = frozenset({
    "phone", "text", "body", "caption", "token", "access_token", "api_key", "authorization", "password",
    "secret", "verify_token", "query", "query_string", "contact", "wa_id", "profile_name", "payload",
})
# Fields whose value is free text written by someone else (a library's message, an exception's
# text or traceback): scrubbed of query strings and phone-like numbers.
FREE_TEXT_FIELDS = ("event", "error", "exception", "detail")
# A phone number as people write one: an optional + or bracket, then digits that spaces, dashes and
# brackets may group ("+44 (0)7700 900-123", "(020) 7946 0958"); redacted when it holds 7 to 15
# digits (E.164 allows 15). Hex digests are not matched (letters bound them); neither is a number
# that continues an address, a port, a path or a date (after `.`, `:`, `/` or `-`), nor an ISO date.
_PHONE_LIKE = re.compile(
    r"(?<![0-9A-Za-z.:/\-])(?!\d{4}-\d{2}-\d{2}(?!\d))\+?\(?\d(?:[ ()\-]{0,3}\d)*(?![0-9A-Za-z])")


def _phone_or_kept(found: re.Match[str]) -> str:
    """Redacted unless it holds too few digits for a phone number, or is one unbroken run longer than
    E.164's 15 (an id, not a number); grouped runs longer than that may be several numbers side by side."""
    text = found.group()
    digits = sum(ch.isdigit() for ch in text)
    return text if digits < 7 or (digits > 15 and text.isdigit()) else REDACTED
# A URL's or request line's query string: from `?` up to whitespace, a quote or the end.
_QUERY = re.compile(r"\?[^\s'\"<>]*")
# A Meta message id (`wamid.` and base64 of data holding the customer's number), in any field: a
# message id, a gap or retrieval line, a library's text. Percent-encoded forms included.
_WAMID = re.compile(r"wamid\.[A-Za-z0-9+/=_%-]*", re.IGNORECASE)
# A credential-carrying header as an HTTP parser quotes it back in its error (aiohttp's BadHttpMessage
# shows the offending line): the value, up to the end of the quoted line.
_CREDENTIAL_HEADER = re.compile(
    r"(authorization|proxy-authorization|cookie|set-cookie|x-hub-signature(?:-256)?|x-webhook-signature"
    r"|x-api-key)(\s*:)[^\r\n'\"]*", re.IGNORECASE)
# Libraries that log at INFO what only a debugging session needs.
_QUIET = {"botocore": logging.WARNING, "aiobotocore": logging.WARNING, "asyncio": logging.WARNING,
          "temporalio.bridge": logging.WARNING}


def scrub(text: str) -> str:
    """Free text without query strings, credential headers, wamids or phone-like numbers."""
    text = _CREDENTIAL_HEADER.sub(r"\1\2 " + REDACTED, _WAMID.sub(REDACTED, text))
    return _PHONE_LIKE.sub(_phone_or_kept, _QUERY.sub("?" + REDACTED, text))


def _without_wamids(value: object) -> object:
    """`value` with every wamid in its strings redacted, however deeply it nests them."""
    if isinstance(value, str):
        return _WAMID.sub(REDACTED, value)
    if isinstance(value, Mapping):
        return {k: _without_wamids(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_without_wamids(v) for v in value]
    return value


def redact(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Drop sensitive fields, scrub free text, and redact wamids wherever they are (a structlog
    processor). Identifiers other than wamids (delivery digests, phone_number_ids in structured
    fields) stay: an operator needs them to find the record."""
    for key in event.keys() & SENSITIVE_FIELDS:
        if event[key] is not None and not isinstance(event[key], bool):  # "is there one" says nothing
            event[key] = REDACTED
    for key, value in event.items():
        event[key] = scrub(value) if key in FREE_TEXT_FIELDS and isinstance(value, str) else _without_wamids(value)
    return event


_TEMPORAL_FIELDS = ("workflow_id", "workflow_type", "workflow_run_id", "activity_id", "activity_type", "attempt",
                    "namespace", "task_queue", "run_id")


def _foreign_fields(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """A stdlib record's logger as `logger`, and the Temporal SDK's context (which it passes as
    `temporal_workflow` / `temporal_activity` extras: ids, types, attempt) as fields of their own."""
    record: logging.LogRecord | None = event.get("_record")
    if record is not None:
        event["logger"] = record.name
        for attr in ("temporal_workflow", "temporal_activity"):
            nested = record.__dict__.get(attr)
            if isinstance(nested, Mapping):
                event.update((k, v) for k, v in nested.items() if k in _TEMPORAL_FIELDS)
    return event


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _render() -> list[Processor]:
    """The last steps of every event: traceback into a field, redaction, one JSON line."""
    return [structlog.processors.format_exc_info, redact, structlog.processors.JSONRenderer()]


def configure_logging(level: str = "INFO") -> None:
    """Every log line of this process as JSON on stderr, ours and the libraries' alike."""
    structlog.configure(
        processors=[*_shared_processors(), *_render()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        # One write() per event, its newline included (print() writes the newline apart): a library's
        # line from another thread then cannot land between an event and its newline, making one line
        # of two JSON objects.
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), _foreign_fields],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *_render()],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name, quiet in _QUIET.items():
        logging.getLogger(name).setLevel(max(quiet, logging.getLevelName(level)))
    logging.captureWarnings(True)  # warnings.warn output is a log line too, not raw text on stderr
    _install_exception_hooks()
    install_core_logging(level)


def _install_exception_hooks() -> None:
    """Exceptions nobody catches print their traceback straight to stderr by default: in a thread
    (threading.excepthook), in a destructor or a finaliser ("Exception ignored in", sys.unraisablehook),
    and in the main thread (sys.excepthook). Each becomes one JSON line with its traceback a field."""
    events = structlog.get_logger("wa_archive.uncaught")

    def main_thread(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        events.critical("uncaught_exception", thread="MainThread", exc_info=(kind, exc, tb))

    def thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return  # a thread's sys.exit() is not an error, as the default hook says
        name = args.thread.name if args.thread is not None else None
        events.error("uncaught_exception", thread=name,
                     exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback))

    def unraisable(args: UnraisableHookArgs) -> None:
        exc = args.exc_value or args.exc_type()
        events.error("unraisable_exception", detail=args.err_msg or "Exception ignored in",
                     object=type(args.object).__qualname__ if args.object is not None else None,
                     exc_info=(args.exc_type, exc, args.exc_traceback))

    sys.excepthook = main_thread
    threading.excepthook = thread
    sys.unraisablehook = unraisable


def core_logging_config(level: str = "INFO") -> LoggingConfig:
    """The Temporal Core's (Rust) logs forwarded into Python logging (`temporalio.core`), so they come
    out as JSON too; a runtime built elsewhere (e.g. with metrics) should pass this as its logging."""
    core_level = "WARN" if logging.getLevelName(level) >= logging.WARNING else "INFO"
    return LoggingConfig(filter=TelemetryFilter(core_level=core_level, other_level="ERROR"),
                         forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")))


def install_core_logging(level: str = "INFO") -> None:
    """Make the default Temporal runtime forward Core logs; before any client connects (a runtime
    is created once per process), and never over one someone already set."""
    try:
        Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=core_logging_config(level))),
                            error_if_already_set=True)
    except RuntimeError:
        pass  # already set (by telemetry that was configured first): keep it


class AccessLogger(AbstractAccessLogger):
    """The HTTP access log as JSON events naming the matched route pattern, never the raw path or
    query; an unmatched path (a 404) is not named at all."""

    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(logger, log_format)
        self.events = structlog.get_logger("aiohttp.access")

    def log(self, request: web.BaseRequest, response: web.StreamResponse, duration: float) -> None:
        route = None
        try:
            match_info = request.match_info  # type: ignore[attr-defined]  # a web.Request's, when it was routed
        except (AttributeError, AssertionError):  # a request the HTTP parser refused never reached the router
            match_info = None
        if match_info is not None and match_info.http_exception is None and match_info.route.resource is not None:
            route = match_info.route.resource.canonical
        self.events.info("http_request", method=request.method, route=route, status=response.status,
                         bytes=response.body_length, ms=round(duration * 1000, 1), remote=request.remote)

    @property
    def enabled(self) -> bool:
        return True
