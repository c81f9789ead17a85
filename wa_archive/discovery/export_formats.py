"""The conversation renderings of an export bundle, one per contact, from the conversation's events
(JSON lines written while the bundle streams): an HTML transcript that opens offline with its media,
and an RSMF file (Relativity Short Message Format: an EML whose attachment is the rsmf.zip); and the
writer every bundle file goes through, which hashes it for the manifest as it is written."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import zipfile
from collections.abc import Iterator
from email.header import Header
from pathlib import Path
from typing import IO, Any

from wa_archive.archive.keys import safe_id
from wa_archive.archive.media_types import is_inline, normalize_mime
from wa_archive.rendering import environment

CHUNK = 1024 * 1024


class HashingWriter:
    """Writes a ZIP entry while computing its SHA-256 and size for the manifest."""

    def __init__(self, zf: zipfile.ZipFile, name: str, files: list[dict[str, Any]]) -> None:
        self._fh: IO[bytes] = zf.open(name, "w", force_zip64=True)
        self._hash = hashlib.sha256()
        self._size = 0
        self._name = name
        self._files = files

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self._size += len(data)
        self._fh.write(data)

    def close(self) -> str:
        self._fh.close()
        digest = self._hash.hexdigest()
        self._files.append({"path": self._name, "sha256": digest, "size": self._size})
        return digest


def _events(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)


# The transcript is a page an auditor opens from disk: every value in it is the sender's, so it
# comes from an autoescaped template, and its CSP allows no script at all, the one stylesheet by
# hash, and media only from the bundle itself: 'self' when the bundle is served, file: when it is
# opened from disk (a file page's origin is opaque, so 'self' does not match its neighbours), and
# nothing from any network host.
_TEMPLATES = environment("wa_archive.discovery", "export_templates")
_TRANSCRIPT = _TEMPLATES.get_template("transcript.html")
_STYLE_HASH = base64.b64encode(hashlib.sha256(
    _TEMPLATES.get_template("transcript.css").render().encode()).digest()).decode()
TRANSCRIPT_CSP = (f"default-src 'none'; img-src 'self' file:; media-src 'self' file:; "
                  f"style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; form-action 'none'")
# Shown in a media element only when the normalised type is on the inline allow-list.
_MEDIA_ELEMENTS = ("image", "video", "audio")


def _transcript_media(media: dict[str, Any]) -> dict[str, str]:
    """What the transcript shows of one exported media item: an element for an inline type, a
    download link (named by the bundle's safe file name, not the sender's) for anything else."""
    src = "../" + media["export_path"]
    mime = normalize_mime(media["mime_type"])
    major = mime.split("/", 1)[0]
    show = major if is_inline(mime) and major in _MEDIA_ELEMENTS else "link"
    return {"show": show, "src": src, "label": media["filename"] or media["export_path"],
            "sha256": media["sha256"] or ""}


def _transcript_items(path: Path) -> Iterator[dict[str, Any]]:
    for item in _events(path):
        yield {"direction": item["direction"], "timestamp": item["timestamp"], "type": item["type"], "id": item["id"],
               "media": [_transcript_media(m) for m in item["media"] if m.get("export_path")],
               "lines": (item.get("text") or "").split("\n") if item.get("text") else []}


def write_transcript(zf: zipfile.ZipFile, contact: str, path: Path, files: list[dict[str, Any]]) -> None:
    writer = HashingWriter(zf, f"transcripts/{safe_id(contact)}.html", files)
    for chunk in _TRANSCRIPT.generate(contact=contact, csp=TRANSCRIPT_CSP, items=_transcript_items(path)):
        writer.write(chunk.encode())
    writer.close()


# Header values that need no encoding: what a phone number, a name or an ISO timestamp holds.
_PLAIN_HEADER = re.compile(r"[A-Za-z0-9 +.,:_@()-]{0,900}")


def _printable(value: str) -> str:
    """`value` with every character that could end a line or hide text (controls, format
    characters, line and paragraph separators) shown as a \\uXXXX escape."""
    return "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in value)


def _header(name: str, value: str) -> str:
    """One RFC 5322 header line. A value from outside cannot end the header (control characters
    are escaped) and is RFC 2047-encoded unless it is plain, so it carries no markup either."""
    text = _printable(value)
    if _PLAIN_HEADER.fullmatch(text):
        return f"{name}: {text}"
    return f"{name}: {Header(text, 'utf-8', header_name=name).encode(linesep=chr(13) + chr(10))}"


def rsmf_contact(contact: str, names: list[dict[str, Any]]) -> dict[str, Any]:
    """The contact as an RSMF participant: displayed by the profile name last seen in the period (the
    number when none was seen), every other name of the period kept as a custom field, oldest first."""
    participant: dict[str, Any] = {"id": "contact", "display": contact, "account_id": contact}
    if names:
        latest = max(names, key=lambda n: (n["last_seen"], n["first_seen"]))
        participant["display"] = latest["name"]
        participant["custom"] = [{"name": "whatsapp_profile_name", "value": n["name"]}
                                 for n in sorted(names, key=lambda n: (n["first_seen"], n["last_seen"]))
                                 if n is not latest]
    return participant


def write_rsmf(zf: zipfile.ZipFile, contact: str, path: Path, workdir: Path, files: list[dict[str, Any]],
                names: list[dict[str, Any]]) -> None:
    """RSMF 2.0: an EML (RFC 5322 + MIME) whose attachment rsmf.zip holds rsmf_manifest.json."""
    participants = {"business": {"id": "business", "display": "Business"},
                    "contact": rsmf_contact(contact, names)}
    events, first, last = [], None, None
    for item in _events(path):
        first = first or item["timestamp"]
        last = item["timestamp"]
        events.append({
            "id": item["id"], "type": "message", "conversation": "conversation",
            "participant": "business" if item["direction"] == "out" else "contact",
            "timestamp": item["timestamp"], "body": item.get("text") or "",
            "direction": "outgoing" if item["direction"] == "out" else "incoming",
            "attachments": [{"id": m["export_path"].rsplit("/", 1)[-1], "display": m["filename"] or m["kind"],
                             "size": m["size"]} for m in item["media"] if m.get("export_path")],
        })
    manifest = {"version": "2.0.0", "participants": list(participants.values()),
                "conversations": [{"id": "conversation", "display": f"WhatsApp with {contact}",
                                   "platform": "whatsapp", "type": "direct",
                                   "participants": ["business", "contact"]}],
                "events": events}
    inner = workdir / "rsmf.zip"
    with zipfile.ZipFile(inner, "w", compression=zipfile.ZIP_DEFLATED) as rz:
        rz.writestr("rsmf_manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))
        for event in events:
            for att in event["attachments"]:
                with zf.open(f"media/{att['id']}") as src, rz.open(att["id"], "w") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
    writer = HashingWriter(zf, f"rsmf/{safe_id(contact)}.rsmf", files)
    boundary = "rsmf-" + hashlib.sha256(contact.encode()).hexdigest()[:16]
    shown = _printable(contact)
    headers = [
        "MIME-Version: 1.0", "X-RSMF-Version: 2.0.0", "X-RSMF-Generator: wa-archive",
        f"X-RSMF-EventCount: {len(events)}", _header("X-RSMF-BeginDate", str(first)),
        _header("X-RSMF-EndDate", str(last)), _header("Subject", f"WhatsApp conversation with {contact}"),
        "From: wa-archive",
        f'Content-Type: multipart/mixed; boundary="{boundary}"', "", f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8", "", f"WhatsApp conversation with {shown}: {len(events)} events.",
        f"--{boundary}", 'Content-Type: application/zip; name="rsmf.zip"',
        'Content-Disposition: attachment; filename="rsmf.zip"', "Content-Transfer-Encoding: base64", "", ""]
    writer.write("\r\n".join(headers).encode())
    with open(inner, "rb") as fh:
        while block := fh.read(57 * 1024):  # 57 bytes -> 76 base64 characters per line
            encoded = base64.b64encode(block)
            writer.write(b"\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)) + b"\r\n")
    writer.write(f"--{boundary}--\r\n".encode())
    writer.close()
    os.unlink(inner)
