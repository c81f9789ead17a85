"""`wa-archive tokens sign-in-link`: a one-time link that signs a browser in to the pages as an
existing token, so that no token is ever put in a URL (wa_archive/access/sign_in_links.py)."""

from __future__ import annotations

import argparse
import json
import sys
from urllib.parse import urlsplit

from wa_archive.access.sign_in_links import DEFAULT_MINUTES, MAX_MINUTES, create_link, link_url
from wa_archive.cli.support import open_pool
from wa_archive.config import Settings
from wa_archive.errors import ConfigError, TokenError


def _minutes(value: str) -> int:
    try:
        minutes = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of minutes") from None
    if not 1 <= minutes <= MAX_MINUTES:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_MINUTES}")
    return minutes


def _base_url(value: str) -> str:
    """An http(s) address with a host and nothing after its path: where a browser reaches the pages."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password \
            or parts.query or parts.fragment:
        raise argparse.ArgumentTypeError("must be an http:// or https:// address such as https://archive.example.com"
                                         " (no user, query or fragment)")
    return value.strip().rstrip("/")


def add_parser(tokens: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    link = tokens.add_parser(
        "sign-in-link", help="a one-time link that signs a browser in to the pages as token NAME "
        "(the token never goes in a URL)")
    link.add_argument("--name", required=True, help="an active auditor, operator or admin token's name")
    link.add_argument("--minutes", type=_minutes, default=DEFAULT_MINUTES,
                      help=f"how long the link may be used, once (default {DEFAULT_MINUTES}, at most {MAX_MINUTES})")
    link.add_argument("--base-url", type=_base_url,
                      help="the address browsers reach the pages at (default: the running `wa-archive dev`'s)")
    link.add_argument("--json", action="store_true")


def base_url_of(settings: Settings, given: str | None) -> str:
    """--base-url, else the running dev's address when the database is the dev's too."""
    from wa_archive.devstack.dev import dev_state

    if given:
        return given
    state = dev_state(settings.data_dir.resolve()) if not settings.database_url else None
    if state and state.get("http_url"):
        return str(state["http_url"])
    raise ConfigError("--base-url is required: no `wa-archive dev` runs under "
                      f"{settings.data_dir.resolve()} to take the address from (pass the address browsers "
                      "reach the pages at, such as --base-url https://archive.example.com)")


async def cmd_sign_in_link(settings: Settings, args: argparse.Namespace) -> int:
    base = base_url_of(settings, args.base_url)
    pool = await open_pool(settings)
    try:
        link = await create_link(pool, args.name, args.minutes)
    except TokenError as exc:
        print(f"wa-archive: {exc}", file=sys.stderr)
        return 2
    finally:
        await pool.close()
    url = link_url(base, link.code)
    if args.json:
        print(json.dumps({"url": url, "name": link.name, "role": link.role,
                          "expires_at": link.expires_at.isoformat()}))
    else:
        print(url)
        print(f"sign-in link for {link.name!r} ({link.role}): open it in a browser; it signs in once, until "
              f"{link.expires_at:%H:%M} UTC, and is shown only now", file=sys.stderr)
    return 0
