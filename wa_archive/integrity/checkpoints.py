"""Which rows of ledger_checkpoints the archive signed: the only ones any reader picks.

The worker records each checkpoint it signs as a row, so the application role may insert rows there,
and nothing in the database can check an Ed25519 signature. A row inserted with the database's
credentials alone (migration 026 keeps it within the integrated log) would otherwise be taken for the
latest checkpoint: receipts made against it fail every verifier, the gauges say a checkpoint was just
signed, and the writer, finding a row at its size, signs nothing. So a reader picks among the rows
signed by the trusted key (`credentials.ledger_trust`: WA_ARCHIVE_LEDGER_PUBLIC_KEY, or the signing
key's public half) and passes over the rest, logging each once; `verify` names them.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import AsyncGenerator
from typing import Any

import asyncpg
import structlog

from wa_archive.integrity.ledger import check_checkpoint

log = structlog.get_logger("wa_archive.ledger")

# How many rows not signed by the archive one reader passes over before it gives up: an insider who
# keeps the archive's rows out (SECURITY.md, "What does not stop them yet") then costs each reader a
# bounded read, and the readers answer with what they found (none: as if no checkpoint were signed),
# which the checkpoint alerts report.
PASS_OVER_AT_MOST = 1024
# Verdicts kept per process, by the row's bytes: rows are append-only, so a verdict holds as long as
# they do, and each row is checked once while it is remembered. Rows are small (migration 026 bounds
# them); the least recently used verdict is forgotten first.
_VERDICTS: OrderedDict[tuple[bytes, int, bytes], bool] = OrderedDict()
_VERDICTS_KEPT = 65536


def signed_by(row: asyncpg.Record | dict[str, Any], public_key: bytes) -> bool:
    """Whether the checkpoint row is signed by `public_key` and its signed body says what the row says."""
    tree_size, root_hash, body, signature = row["tree_size"], row["root_hash"], row["body"], row["signature"]
    seen = (public_key, tree_size,
            hashlib.sha256("\0".join((root_hash, body, signature)).encode("utf-8", "surrogatepass")).digest())
    verdict = _VERDICTS.get(seen)
    if verdict is None:
        verdict = _check(public_key, tree_size, root_hash, body, signature)
        _VERDICTS[seen] = verdict
        if len(_VERDICTS) > _VERDICTS_KEPT:
            _VERDICTS.popitem(last=False)
    else:
        _VERDICTS.move_to_end(seen)
    return verdict


def _check(public_key: bytes, tree_size: int, root_hash: str, body: str, signature: str) -> bool:
    try:
        parsed, problems = check_checkpoint(body, signature, public_key)
    except Exception:  # noqa: BLE001 - whatever a row written by someone else makes the parser do
        return False
    return (parsed is not None and not problems
            and parsed.get("tree_size") == tree_size and parsed.get("root_hash") == root_hash)


async def at_size(db: asyncpg.Pool | asyncpg.Connection, tree_size: int) -> asyncpg.Record | None:
    """The row recorded at `tree_size`, whoever wrote it (signed_by() says whether the archive did)."""
    return await db.fetchrow("SELECT * FROM ledger_checkpoints WHERE tree_size = $1", tree_size)


async def _signed_newest_first(db: asyncpg.Pool | asyncpg.Connection, public_key: bytes, *, covering: int,
                               batch: int) -> AsyncGenerator[asyncpg.Record, None]:
    """The rows signed by `public_key` with a tree size above `covering`, newest first, passing over at
    most PASS_OVER_AT_MOST others; those passed over are logged once per call."""
    below: int | None = None
    passed: list[int] = []
    try:
        while True:
            rows = await db.fetch("SELECT * FROM ledger_checkpoints WHERE tree_size > $1"
                                  " AND ($2::bigint IS NULL OR tree_size < $2) ORDER BY tree_size DESC LIMIT $3",
                                  covering, below, batch)
            for row in rows:
                if signed_by(row, public_key):
                    yield row
                    continue
                passed.append(row["tree_size"])
                if len(passed) >= PASS_OVER_AT_MOST:
                    log.critical("checkpoint_search_gave_up", passed_over=len(passed), below=row["tree_size"],
                                 hint="the latest checkpoint rows are not the archive's; run `wa-archive verify`")
                    return
            if len(rows) < batch:
                return
            below = rows[-1]["tree_size"]
    finally:
        if passed:
            log.error("checkpoint_not_signed_by_archive", count=len(passed), tree_sizes=passed[:20],
                      hint="rows of ledger_checkpoints not signed with the ledger key were passed over")


async def latest(db: asyncpg.Pool | asyncpg.Connection, public_key: bytes, *,
                 covering: int = -1) -> asyncpg.Record | None:
    """The latest checkpoint row signed by `public_key` whose tree includes leaf `covering` (any, by
    default); None when there is none."""
    rows = _signed_newest_first(db, public_key, covering=covering, batch=16)  # normally the first one read
    try:
        async for row in rows:
            return row
        return None
    finally:
        await rows.aclose()


async def every(db: asyncpg.Pool | asyncpg.Connection, public_key: bytes) -> list[asyncpg.Record]:
    """Every checkpoint row signed by `public_key`, oldest first (the newest ones only, when more than
    PASS_OVER_AT_MOST rows not signed by it lie among them)."""
    found = [row async for row in _signed_newest_first(db, public_key, covering=-1, batch=256)]
    return found[::-1]
