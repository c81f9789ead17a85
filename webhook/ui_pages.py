"""HTML for the auditors' pages: a small, consistent layout; every value escaped."""

from __future__ import annotations

import json
from html import escape
from typing import Any

CSS = """
*{box-sizing:border-box}body{margin:0;font:15px/1.5 -apple-system,system-ui,Segoe UI,Roboto,sans-serif;
color:#1d2433;background:#f4f6f9}a{color:#1f5fbf;text-decoration:none}a:hover{text-decoration:underline}
header{background:#12324f;color:#fff;padding:0 24px;display:flex;align-items:center;gap:24px;height:52px}
header b{font-size:16px;letter-spacing:.2px}header nav{display:flex;gap:18px;flex:1}header a{color:#cfe0f5}
header form{margin:0}main{max-width:1080px;margin:24px auto;padding:0 24px}
h1{font-size:22px;margin:0 0 16px}h2{font-size:16px;margin:24px 0 8px;color:#3a4660}
.card{background:#fff;border:1px solid #dde3ec;border-radius:10px;padding:18px 20px;margin-bottom:16px}
form.filters{display:grid;grid-template-columns:repeat(4,1fr);gap:12px;align-items:end}
label{display:block;font-size:12px;color:#58627a;margin-bottom:4px;text-transform:uppercase;letter-spacing:.4px}
input,select{width:100%;padding:8px 10px;border:1px solid #c9d2df;border-radius:6px;font:inherit;background:#fff}
button{padding:8px 16px;border:0;border-radius:6px;background:#1f5fbf;color:#fff;font:inherit;cursor:pointer}
button.link{background:none;color:#cfe0f5;padding:0}table{width:100%;border-collapse:collapse}
th,td{text-align:left;padding:9px 10px;border-bottom:1px solid #e8ecf2;vertical-align:top}
th{font-size:12px;color:#58627a;text-transform:uppercase;letter-spacing:.4px}
.tag{display:inline-block;padding:1px 8px;border-radius:10px;background:#e8eef8;font-size:12px;color:#35507a}
.tag.out{background:#e6f4ea;color:#2a6b3c}.tag.failed{background:#fde8e8;color:#9b1c1c}
.muted{color:#6b768c;font-size:13px}.hash{font-family:ui-monospace,Menlo,monospace;font-size:12px;word-break:break-all}
.local{color:#6b768c;font-size:12px;margin-left:6px}dl{display:grid;grid-template-columns:180px 1fr;gap:6px 16px;margin:0}
dt{color:#58627a}dd{margin:0}.preview img,.preview video{max-width:100%;max-height:480px;border-radius:8px}
.preview iframe{width:100%;height:560px;border:1px solid #dde3ec;border-radius:8px}pre{white-space:pre-wrap;
background:#f7f9fc;border:1px solid #e3e8ef;border-radius:8px;padding:12px;font-size:12px;overflow:auto}
.chat{display:flex;flex-direction:column;gap:8px;background:#efeae2;padding:18px;border-radius:10px}
.bubble{max-width:70%;width:fit-content;padding:8px 12px;border-radius:10px;background:#fff;box-shadow:0 1px 1px #0002}
.bubble.out{margin-left:auto;background:#d9fdd3}.bubble img{max-width:100%;border-radius:6px}
.error{background:#fde8e8;color:#9b1c1c;padding:10px 14px;border-radius:8px;margin-bottom:16px}
.login{max-width:420px;margin:80px auto}.timeline li{margin:4px 0}
"""

# Times are rendered in UTC; this shows the reader's local time beside each one.
LOCAL_TIME_JS = """document.querySelectorAll('time[datetime]').forEach(function(t){var d=new Date(t.getAttribute('datetime'));
if(!isNaN(d)){var s=document.createElement('span');s.className='local';s.textContent='('+d.toLocaleString()+' local)';t.after(s);}});"""


def page(title: str, body: str, *, caller: Any = None, csrf: str = "") -> str:
    nav = ""
    if caller is not None:
        links = ['<a href="/ui/">Search</a>']
        if caller.role in ("operator", "admin"):
            links.append('<a href="/ui/failures">Failures</a>')
        if caller.role == "admin":
            links.append('<a href="/ui/access-log">Access log</a>')
        nav = (f'<nav>{"".join(links)}</nav><span class="muted" style="color:#cfe0f5">{escape(caller.name)}'
               f' · {escape(caller.role)}</span><form method="post" action="/ui/logout">'
               f'<input type="hidden" name="csrf" value="{escape(csrf)}"><button class="link">Sign out</button></form>')
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width,initial-scale=1"><title>{escape(title)} · WhatsApp archive</title>'
            f'<style>{CSS}</style></head><body><header><b>WhatsApp archive</b>{nav}</header>'
            f'<main>{body}</main><script>{LOCAL_TIME_JS}</script></body></html>')


def when(iso: str | None) -> str:
    if not iso:
        return '<span class="muted">—</span>'
    return f'<time datetime="{escape(iso)}">{escape(iso.replace("T", " ")[:19])} UTC</time>'


def who(message: dict[str, Any]) -> str:
    c = message["contact"]
    return escape(c.get("phone") or c.get("wa_id") or c.get("user_id") or c.get("username") or "unknown")


def direction_tag(message: dict[str, Any]) -> str:
    out = message["direction"] == "out"
    return f'<span class="tag{" out" if out else ""}">{"outbound" if out else "inbound"}</span>'


def message_link(message_id: str) -> str:
    from urllib.parse import quote

    return f"/ui/messages/{quote(message_id, safe='')}"


def media_preview(media: dict[str, Any]) -> str:
    if media.get("status") != "archived":
        return '<span class="tag failed">media not archived</span>'
    src = f"/ui/media/{escape(media['archive_id'])}"
    mime = media.get("mime_type") or ""
    if mime.startswith("image/"):
        return f'<img src="{src}" alt="archived image">'
    if mime.startswith("video/"):
        return f'<video controls src="{src}"></video>'
    if mime.startswith("audio/"):
        return f'<audio controls src="{src}"></audio>'
    if mime.startswith("application/pdf"):
        return f'<iframe src="{src}" title="document"></iframe>'
    return f'<a href="{src}">Download {escape(media.get("filename") or mime)}</a>'


def raw_json(value: Any) -> str:
    return f"<pre>{escape(json.dumps(value, indent=2, ensure_ascii=False))}</pre>"
