"""Bench only: an archive process with Temporal payloads in plaintext, the baseline against which
`make bench` measures the payload codec's cost.

    python -m bench.plaintext serve|worker              as `python -m wa_archive.cli serve|worker`
    python -m bench.plaintext floor ADDRESS TASK_QUEUE  as `python -m bench.floor ADDRESS TASK_QUEUE`

The archive's own processes have no switch to turn encryption off, on purpose: in a compliance archive
such a switch is one wrong variable away from a Temporal history in clear. The baseline is made here
instead, outside the production entry points: every Temporal client of a process is built from
`wa_archive.temporal.client.data_converter` (through `connect_temporal`, or directly in the floor), so replacing
that one function before the same entry point runs gives the same webhook, worker and floor with the
plain pydantic converter and nothing else changed. The image ships bench/, so the replacement refuses
any Temporal server but one on loopback, where the bench runs its own dev server.
"""

from __future__ import annotations

import asyncio
import sys

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter

import wa_archive.temporal.client
from wa_archive.config import ConfigError, Settings

LOOPBACK = frozenset({"127.0.0.1", "localhost", "[::1]"})


def require_loopback(address: str | None) -> None:
    if (address or "").rsplit(":", 1)[0] not in LOOPBACK:
        raise ConfigError("bench.plaintext: plaintext Temporal payloads only against the bench's own"
                          f" Temporal server on loopback, not {address!r}")


def plaintext_converter(settings: Settings) -> DataConverter:
    """The plain pydantic converter, for a Temporal server on loopback only."""
    require_loopback(settings.temporal_address)
    return pydantic_data_converter


def main(argv: list[str]) -> int:
    wa_archive.temporal.client.data_converter = plaintext_converter
    if argv[:1] == ["floor"]:
        from bench import floor

        require_loopback(argv[1])
        asyncio.run(floor.main(argv[1], argv[2]))
        return 0
    if argv not in (["serve"], ["worker"]):
        print(__doc__, file=sys.stderr)
        return 2
    from wa_archive.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
