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
from typing import Any

import asyncpg
import structlog

from wa_archive.integrity.ledger import check_checkpoint

log = structlog.get_logger("wa_archive.ledger")

# Rows read at a time when passing over rows the archive did not sign (normally the first one read is),
# and how many one call passes over before it gives up: an insider who keeps the archive's rows out
# (SECURITY.md, "What does not stop them yet") then costs each reader a bounded read, and the readers
# answer as if no checkpoint were signed, which the checkpoint alerts report.
_BATCH = 16
PASS_OVER_AT_MOST = 1024
# Verdicts kept per process, by the row's bytes: rows are append-only, so a verdict holds as long as
# they do, and each row passed over is checked (and logged) once. Rows are small (migration 026 bounds
# them), and the memory is forgotten whole when full.
_VERDICTS: dict[tuple[bytes, int, bytes], bool] = {}
_VERDICTS_KEPT = 16384


def signed_by(row: asyncpg.Record | dict[str, Any], public_key: bytes) -> bool:
    """Whether the checkpoint row is signed by `public_key` and its signed body says what the row says."""
    tree_size, root_hash, body, signature = row["tree_size"], row["root_hash"], row["body"], row["signature"]
    seen = (public_key, tree_size,
            hashlib.sha256("\0".join((root_hash, body, signature)).encode("utf-8", "surrogatepass")).digest())
    verdict = _VERDICTS.get(seen)
    if verdict is None:
        verdict = _check(public_key, tree_size, root_hash, body, signature)
        if len(_VERDICTS) >= _VERDICTS_KEPT:
            _VERDICTS.clear()
        _VERDICTS[seen] = verdict
    return verdict


def _check(public_key: bytes, tree_size: int, root_hash: str, body: str, signature: str) -> bool:
    try:
        parsed, problems = check_checkpoint(body, signature, public_key)
    except Exception as exc:  # noqa: BLE001 - whatever a row written by someone else makes the parser do
        parsed, problems = None, [f"not a checkpoint ({type(exc).__name__})"]
    if parsed is not None and not problems:
        if parsed.get("tree_size") == tree_size and parsed.get("root_hash") == root_hash:
            return True
        problems = ["its signed body names another tree size or root than its row"]
    log.error("checkpoint_not_signed_by_archive", tree_size=tree_size, problems=problems)
    return False


async def latest(db: asyncpg.Pool | asyncpg.Connection, public_key: bytes, *,
                 covering: int = -1) -> asyncpg.Record | None:
    """The latest checkpoint row signed by `public_key` whose tree includes leaf `covering` (any, by
    default); None when there is none."""
    below: int | None = None
    passed = 0
    while passed < PASS_OVER_AT_MOST:
        rows = await db.fetch("SELECT * FROM ledger_checkpoints WHERE tree_size > $1"
                              " AND ($2::bigint IS NULL OR tree_size < $2) ORDER BY tree_size DESC LIMIT $3",
                              covering, below, _BATCH)
        for row in rows:
            if signed_by(row, public_key):
                return row
        if len(rows) < _BATCH:
            return None
        passed += len(rows)
        below = rows[-1]["tree_size"]
    log.critical("checkpoint_search_gave_up", passed_over=passed, below=below,
                 hint="the latest checkpoint rows are not the archive's; run `wa-archive verify`")
    return None


async def every(db: asyncpg.Pool | asyncpg.Connection, public_key: bytes) -> list[asyncpg.Record]:
    """Every checkpoint row signed by `public_key`, oldest first."""
    return [row for row in await db.fetch("SELECT * FROM ledger_checkpoints ORDER BY tree_size")
            if signed_by(row, public_key)]
