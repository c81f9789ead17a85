"""Rendering the auditors' pages: autoescaped Jinja2 templates, each answer with its own CSP nonce.

Every archived value (text, names, file names, MIME types, payloads) is an attacker's, so the
templates escape by default and the page's CSP lets only this response's inline script and style run.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any
from urllib.parse import quote

from aiohttp import web

from wa_archive.archive.hashing import compare_with_declared
from wa_archive.archive.media_types import is_inline, normalize_mime
from wa_archive.rendering import environment
from webhook.edge import page_csp

_ENV = environment("webhook")


def _path_segment(value: Any) -> str:
    """A value made safe as one URL path segment (message ids may contain '/')."""
    return quote(str(value or ""), safe="")


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def preview_kind(media: dict[str, Any]) -> str:
    """How the message page shows archived media: image, video or audio inline when its normalised
    type is on the inline allow-list; anything else (PDF included: Chromium will not render a PDF
    served with a sandbox CSP) is only a download link, never an iframe."""
    if media.get("status") != "archived":
        return "missing"
    mime = media.get("mime_type")
    if is_inline(mime):
        kind = normalize_mime(mime).split("/", 1)[0]
        if kind in ("image", "video", "audio"):
            return kind
    return "download"


# Evidence that is a web address: http(s), a host (no user@ part), and nothing a browser would read as the
# end of the URL or the start of markup (whitespace, quotes, angle brackets, backslashes, controls).
_WEB_ADDRESS = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?"
                          r"(?:[/?#][\x21\x23-\x26\x28-\x3b\x3d\x3f-\x5b\x5d-\x7e]*)?", re.IGNORECASE)


def evidence_href(evidence: Any) -> str | None:
    """Consent evidence as a link target when the whole of it is an http(s) address; None (shown only as
    text) for anything else, so a `javascript:` or `data:` evidence can never become a live link."""
    if isinstance(evidence, str) and _WEB_ADDRESS.fullmatch(evidence):
        return evidence
    return None


_ENV.filters["path_segment"] = _path_segment
_ENV.filters["pretty_json"] = _pretty_json
_ENV.globals["preview_kind"] = preview_kind
_ENV.globals["evidence_href"] = evidence_href
_ENV.globals["compare_with_declared"] = compare_with_declared


def render(template: str, status: int = 200, **context: Any) -> web.Response:
    """A page from `template`, with a fresh nonce shared by its inline script and style and its CSP."""
    nonce = secrets.token_urlsafe(18)
    context.setdefault("caller", None)
    context.setdefault("csrf", "")
    body = _ENV.get_template(template).render(nonce=nonce, **context)
    return web.Response(text=body, content_type="text/html", status=status,
                        headers={"Content-Security-Policy": page_csp(nonce), "Cache-Control": "no-store"})
