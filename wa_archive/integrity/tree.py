"""The ledger's Merkle tree read through its tiles: a root, inclusion proofs and consistency proofs over
the log, equal to merkle.root / inclusion_proofs / consistency_proof on the whole leaf list, reading the
stored tile hashes below the size and the leaves of only the blocks that need them (the incomplete tail,
the blocks holding the asked leaves, any block whose tile is not stored yet): about size/TILE + TILE
hashes instead of every leaf.

Why it is the same tree: in RFC 9162's tree every range the recursion visits starts at a multiple of the
smallest power of two not below its length, so a range of more than TILE leaves splits into whole
aligned blocks, a range of TILE leaves at a multiple of TILE is exactly one block (its tile), and a
shorter one lies inside one block (hashed from that block's leaves).
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from wa_archive.db import ledger_tiles
from wa_archive.db.ledger_tiles import TILE
from wa_archive.errors import LedgerLeafMissing
from wa_archive.integrity import merkle

EMPTY_ROOT = merkle.root([])


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1), as RFC 9162 splits."""
    return 1 << ((n - 1).bit_length() - 1)


class TiledTree:
    """The tree of the first `size` leaves from the tiles and leaf hashes loaded for it; every subtree
    hash is kept once computed, so many proofs of one tree share its large siblings."""

    def __init__(self, size: int, tiles: dict[int, bytes], leaves: dict[int, bytes]) -> None:
        self.size = size
        self._tiles = tiles
        self._leaves = leaves
        self._nodes: dict[tuple[int, int], bytes] = {}

    def _leaf_hashes(self, lo: int, hi: int) -> list[bytes]:
        missing = next((i for i in range(lo, hi) if i not in self._leaves), None)
        if missing is not None:
            raise LedgerLeafMissing(f"ledger leaf {missing} is missing from the log of {self.size} leaves")
        return [self._leaves[i] for i in range(lo, hi)]

    def node(self, lo: int, hi: int) -> bytes:
        """MTH of leaves lo .. hi - 1, a range the RFC 9162 recursion visits."""
        key = (lo, hi)
        if key in self._nodes:
            return self._nodes[key]
        n = hi - lo
        if n > TILE:
            k = _split(n)
            value = merkle.node_hash(self.node(lo, lo + k), self.node(lo + k, hi))
        elif n == TILE and lo // TILE in self._tiles:
            value = self._tiles[lo // TILE]
        else:
            value = merkle.root(self._leaf_hashes(lo, hi))
        self._nodes[key] = value
        return value

    def _check_size(self, size: int | None) -> int:
        n = self.size if size is None else size
        if not merkle.is_count(n) or n > self.size:
            raise ValueError(f"no tree of {n} leaves in a log of {self.size}")
        return n

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first `size` leaves (default: all loaded)."""
        n = self._check_size(size)
        return self.node(0, n) if n else EMPTY_ROOT

    def inclusion_proofs(self, indices: Iterable[int], size: int | None = None) -> dict[int, list[bytes]]:
        """PATH(m, D[size]) of each index (RFC 9162 §2.1.3.1); an index out of range raises ValueError."""
        n = self._check_size(size)
        wanted = list(indices)
        for index in wanted:
            if not merkle.is_count(index) or not index < n:
                raise ValueError(f"leaf {index} is not in a tree of {n}")
        return {index: self._path(index, 0, n) for index in wanted}

    def _path(self, index: int, lo: int, hi: int) -> list[bytes]:
        if hi - lo == 1:
            return []
        k = _split(hi - lo)
        if index < lo + k:
            return self._path(index, lo, lo + k) + [self.node(lo + k, hi)]
        return self._path(index, lo + k, hi) + [self.node(lo, lo + k)]

    def consistency_proof(self, m: int, size: int | None = None) -> list[bytes]:
        """PROOF(m, D[size]) of RFC 9162 §2.1.4.1; sizes outside 0 < m <= size raise ValueError."""
        n = self._check_size(size)
        if not merkle.is_count(m) or not 0 < m <= n:
            raise ValueError(f"no consistency proof from {m} to {n}")
        return self._subproof(m, 0, n, True)

    def _subproof(self, m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
        if m == hi - lo:
            return [] if complete else [self.node(lo, hi)]
        k = _split(hi - lo)
        if m <= k:
            return self._subproof(m, lo, lo + k, complete) + [self.node(lo + k, hi)]
        return self._subproof(m - k, lo + k, hi, False) + [self.node(lo, lo + k)]


async def load(pool: asyncpg.Pool, size: int | None = None, *, indices: Iterable[int] = (),
               sizes: Iterable[int] = ()) -> TiledTree:
    """The tree of the log's first `size` leaves (default: all of them), with what it needs to prove
    the leaves at `indices` and to answer for the smaller trees of `sizes` (their roots and proofs).

    One snapshot for all reads; a block whose tile is not stored yet is read leaf by leaf (slower,
    still right)."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        if size is None:
            size = await ledger_tiles.log_size(conn)
        complete = size // TILE
        tiles = await ledger_tiles.below(conn, complete)
        blocks = {k for k in range(complete) if k not in tiles}
        for end in (size, *sizes):
            if 0 < end <= size and end % TILE:
                blocks.add(end // TILE)  # the incomplete block of a tree of that size
        blocks.update(i // TILE for i in indices if merkle.is_count(i) and i < size)
        leaves = await ledger_tiles.leaves_of_blocks(conn, sorted(blocks), size)
    return TiledTree(size, tiles, leaves)
