"""Message templates: canonical snapshots, and the text a customer saw once parameters are filled in.

Pure functions only; fetching the definition is in graph.py and storing it in queries.py.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from pydantic import BaseModel

# What defines the content of a template. Status and quality change without the content changing,
# so they are left out: identical definitions then share one snapshot.
CONTENT_FIELDS = ("id", "name", "language", "category", "parameter_format", "components")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
MEDIA_FORMATS = ("image", "video", "document")


class Snapshot(BaseModel):
    sha256: str
    canonical: str
    definition: dict[str, Any]


class HeaderMedia(BaseModel):
    """The header media a send request carries: an uploaded media id or a public link."""

    kind: str
    media_id: str | None = None
    link: str | None = None
    filename: str | None = None


def snapshot(definition: dict[str, Any]) -> Snapshot:
    """The content of a definition as canonical JSON (sorted keys, no spaces) and its SHA-256."""
    content = {k: definition[k] for k in CONTENT_FIELDS if k in definition}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return Snapshot(sha256=hashlib.sha256(canonical.encode()).hexdigest(), canonical=canonical,
                    definition=content)


def template_ref(send_template: dict[str, Any]) -> tuple[str, str]:
    """(name, language code) of the template a send request names; empty strings where it names none."""
    name = str(send_template.get("name") or "")
    language = str((send_template.get("language") or {}).get("code") or "")
    return name, language


def _param_value(param: dict[str, Any]) -> str:
    ptype = param.get("type")
    if ptype == "text":
        return str(param.get("text", ""))
    if ptype in ("currency", "date_time"):
        return str((param.get(ptype) or {}).get("fallback_value", ""))
    if ptype == "payload":
        return str(param.get("payload", ""))
    return str(param.get(ptype, "")) if ptype else ""


def _fill(text: str, params: list[dict[str, Any]]) -> str:
    """Replace {{1}}.. by position, or {{name}} by parameter_name; unknown placeholders stay."""
    named = {p.get("parameter_name"): _param_value(p) for p in params if p.get("parameter_name")}
    positional = [_param_value(p) for p in params]

    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key.isdigit() and 0 < int(key) <= len(positional):
            return positional[int(key) - 1]
        return named.get(key, match.group(0))

    return _PLACEHOLDER.sub(replace, text)


def _send_components(send_template: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Parameters of the send request by component: 'header', 'body', 'button:<index>'."""
    out: dict[str, list[dict[str, Any]]] = {}
    for comp in send_template.get("components") or []:
        if not isinstance(comp, dict):
            continue
        ctype = str(comp.get("type", "")).lower()
        key = f"button:{comp.get('index', '0')}" if ctype == "button" else ctype
        out[key] = [p for p in comp.get("parameters") or [] if isinstance(p, dict)]
    return out


def render(definition: dict[str, Any], send_template: dict[str, Any]) -> str:
    """Header, body, footer and buttons of the template with the send's parameters filled in."""
    params = _send_components(send_template)
    lines: list[str] = []
    for comp in definition.get("components") or []:
        ctype = str(comp.get("type", "")).upper()
        if ctype == "HEADER":
            fmt = str(comp.get("format", "TEXT")).lower()
            if fmt == "text":
                lines.append(_fill(str(comp.get("text", "")), params.get("header", [])))
            elif fmt in MEDIA_FORMATS:
                media = header_media(send_template)
                label = f"[{fmt}: {media.filename}]" if media and media.filename else f"[{fmt}]"
                lines.append(label)
            else:
                lines.append(f"[{fmt}]")
        elif ctype == "BODY":
            lines.append(_fill(str(comp.get("text", "")), params.get("body", [])))
        elif ctype == "FOOTER":
            lines.append(str(comp.get("text", "")))
        elif ctype == "BUTTONS":
            for index, button in enumerate(comp.get("buttons") or []):
                text = str(button.get("text", ""))
                if button.get("url"):
                    url = _fill(str(button["url"]), params.get(f"button:{index}", []))
                    text = f"{text} ({url})"
                lines.append(f"[{text}]")
    return "\n".join(line for line in lines if line)


def header_media(send_template: dict[str, Any]) -> HeaderMedia | None:
    """The image, video or document a template send puts in its header, if any."""
    for param in _send_components(send_template).get("header", []):
        kind = param.get("type")
        if kind in MEDIA_FORMATS and isinstance(param.get(kind), dict):
            obj = param[kind]
            return HeaderMedia(kind=kind, media_id=obj.get("id"), link=obj.get("link"),
                               filename=obj.get("filename"))
    return None


def message_media(request: dict[str, Any]) -> HeaderMedia | None:
    """The media of a non-template send (image, video, audio, document, sticker by id or link)."""
    kind = request.get("type")
    obj = request.get(kind) if isinstance(kind, str) else None
    if kind in ("image", "video", "audio", "document", "sticker") and isinstance(obj, dict):
        return HeaderMedia(kind=kind, media_id=obj.get("id"), link=obj.get("link"),
                           filename=obj.get("filename"))
    return None


MEDIA_KINDS = ("image", "video", "audio", "document", "sticker")


def carried_media_ids(request: dict[str, Any]) -> list[tuple[str, Any]]:
    """(field, value) of every media id a send request carries: its own media object, the media of
    template parameters, and an interactive message's header. Values are as sent, unchecked."""
    found: list[tuple[str, Any]] = []

    def collect(obj: Any, field: str) -> None:
        if isinstance(obj, dict) and "id" in obj:
            found.append((f"{field}.id", obj["id"]))

    for kind in MEDIA_KINDS:
        collect(request.get(kind), kind)
    template = request.get("template")
    components = template.get("components") if isinstance(template, dict) else None
    for i, comp in enumerate(components if isinstance(components, list) else []):
        params = comp.get("parameters") if isinstance(comp, dict) else None
        for j, param in enumerate(params if isinstance(params, list) else []):
            ptype = param.get("type") if isinstance(param, dict) else None
            if ptype in MEDIA_KINDS:
                collect(param.get(ptype), f"template.components[{i}].parameters[{j}].{ptype}")
    interactive = request.get("interactive")
    header = interactive.get("header") if isinstance(interactive, dict) else None
    if isinstance(header, dict):
        for kind in MEDIA_KINDS:
            collect(header.get(kind), f"interactive.header.{kind}")
    return found
