"""The ledger's own check, read a page at a time: every leaf numbered without a gap and carrying its own
hash, every stored tile against its block of leaves, and every signed checkpoint against the log's root
at its size, with the roots taken as the leaves stream past (a compact range), so what is held does
not grow with the log. Used by `verify` (verification.py) for the database's checkpoints and the
store's copies."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from wa_archive.db import ledger_tiles
from wa_archive.db.paging import pages
from wa_archive.integrity import merkle
from wa_archive.integrity.ledger import check_checkpoint, leaf_bytes


async def checkpoints(conn: asyncpg.Connection) -> list[tuple[int, str, str]]:
    """Every signed checkpoint (held whole: one per checkpoint Schedule run, not per record)."""
    return [(cp["tree_size"], cp["body"], cp["signature"])
            for cp in await conn.fetch("SELECT tree_size, body, signature FROM ledger_checkpoints ORDER BY tree_size")]


class RootsAt:
    """The log's root at each of the given sizes, taken as its leaf hashes stream past (a compact
    range: at most log2(n) + 1 hashes held, whatever the log's size)."""

    def __init__(self, sizes: set[int]) -> None:
        self._tree = merkle.CompactRange()
        self._sizes = sizes
        self.roots: dict[int, bytes] = {0: self._tree.root()} if 0 in sizes else {}

    @property
    def size(self) -> int:
        return self._tree.size

    def append(self, leaf_hash: bytes) -> None:
        self._tree.append(leaf_hash)
        if self._tree.size in self._sizes:
            self.roots[self._tree.size] = self._tree.root()


@dataclass
class LogCheck:
    problems: list[str]
    roots: dict[int, bytes]  # the log's root at each checkpoint's size that it reaches
    size: int  # leaves in the log
    tile_problems: list[str]  # stored tiles that do not match their leaves


class TileCheck:
    """Each stored tile against the root of its block of leaves, as the blocks stream past: roots and
    proofs are read through the tiles, so a tile changed behind the archive's back (it takes superuser
    rights) is named. One block of leaf hashes held at a time."""

    def __init__(self, tiles: dict[int, bytes]) -> None:
        self._tiles = tiles
        self._block: list[bytes] = []
        self.problems: list[str] = []

    def append(self, index: int, leaf_hash: bytes) -> None:
        self._block.append(leaf_hash)
        if len(self._block) == ledger_tiles.TILE:
            tile = index // ledger_tiles.TILE
            stored = self._tiles.get(tile)
            if stored is not None and merkle.root(self._block) != stored:
                self.problems.append(f"ledger tile {tile} (leaves {tile * ledger_tiles.TILE} to {index})"
                                     " does not match its leaves")
            self._block = []

    def beyond(self, size: int) -> list[str]:
        """Tiles of blocks the log does not complete."""
        return [f"ledger tile {tile} (leaves {tile * ledger_tiles.TILE} to {(tile + 1) * ledger_tiles.TILE - 1}):"
                f" the log has only {size} leaves"
                for tile in sorted(self._tiles) if (tile + 1) * ledger_tiles.TILE > size]


async def check_leaves(conn: asyncpg.Connection, sizes: set[int], tiles: dict[int, bytes], chunk: int) -> LogCheck:
    """Every leaf in order: numbered without a gap and carrying its own hash; the log's root at each
    of `sizes`; and each stored tile against its leaves. After a gap the numbering says nothing more,
    but every leaf still counts for the roots, as the log's order is the checkpoints' order."""
    problems: list[str] = []
    roots = RootsAt(sizes)
    blocks = TileCheck(tiles)
    gap = False
    select = "SELECT seq, kind, record_id, digest, leaf_hash FROM ledger_leaves t"
    async for leaves in pages(conn, select, "seq", chunk):
        for leaf in leaves:
            if not gap and leaf["seq"] != roots.size:
                problems.append(f"ledger leaf {roots.size} is missing (next is {leaf['seq']})")
                gap = True
            if not gap and bytes(leaf["leaf_hash"]) != merkle.leaf_hash(
                    leaf_bytes(leaf["kind"], leaf["record_id"], leaf["digest"])):
                problems.append(f"ledger leaf {leaf['seq']} ({leaf['kind']} {leaf['record_id']}) was altered")
            blocks.append(roots.size, bytes(leaf["leaf_hash"]))
            roots.append(bytes(leaf["leaf_hash"]))
    return LogCheck(problems, roots.roots, roots.size, blocks.problems + blocks.beyond(roots.size))


async def log_roots(conn: asyncpg.Connection, sizes: set[int], chunk: int) -> tuple[dict[int, bytes], int]:
    """The log's root at each of `sizes` it reaches, and its number of leaves."""
    roots = RootsAt(sizes)
    async for leaves in pages(conn, "SELECT seq, leaf_hash FROM ledger_leaves t", "seq", chunk):
        for leaf in leaves:
            roots.append(bytes(leaf["leaf_hash"]))
    return roots.roots, roots.size


def check_checkpoints_against_log(checkpoints: list[tuple[int, str, str]], roots: dict[int, bytes], log_size: int,
                                  public_key: bytes | None, *, where: str) -> list[str]:
    """Each checkpoint's signature, its root against the log's root at its size (`roots`, of a log of
    `log_size` leaves), and each one extending the last."""
    problems: list[str] = []
    previous: tuple[int, bool] | None = None  # size, and whether its root is the log's
    for size, body_text, signature in checkpoints:
        body, found = check_checkpoint(body_text, signature, public_key)
        problems += [f"checkpoint {size}{where}: {p}" for p in found]
        if body is None:
            continue
        if body["tree_size"] != size:
            problems.append(f"checkpoint {size}{where}: its signed body says tree size {body['tree_size']}")
            continue
        if size > log_size:
            problems.append(f"checkpoint {size}{where}: the log has only {log_size} leaves")
            continue
        log_root = roots.get(size)
        matches = log_root is not None and log_root.hex() == body["root_hash"]
        if not matches:
            problems.append(f"checkpoint {size}{where}: root does not match the log")
        # Both roots are the one log's, so the later extends the earlier exactly when both are its roots:
        # a signed root the log does not give breaks the chain on both sides of it, as a consistency
        # proof taken from the log between the two signed roots would say.
        if previous is not None and not (previous[1] and matches):
            problems.append(f"checkpoint {size}{where} does not extend checkpoint {previous[0]}")
        previous = (size, matches)
    return problems
