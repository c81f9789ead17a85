"""Merkle tree hashing, inclusion and consistency proofs as RFC 9162 (Certificate Transparency 2.0)
defines them. Pure functions over lists of leaf hashes; standard library only, so an auditor can
copy this file and check receipts without the archive."""

from __future__ import annotations

import hashlib


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def root(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) over leaf hashes (already leaf_hash()ed)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    level = list(leaves)
    # Bottom-up pairing gives the same tree as RFC 9162's largest-power-of-two split.
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def is_count(value: object) -> bool:
    """A non-negative int (bool is an int in Python but never a tree index)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def inclusion_proof(index: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1; a negative or out-of-range index raises ValueError."""
    n = len(leaves)
    if not is_count(index) or not index < n:
        raise ValueError(f"leaf {index} is not in a tree of {n}")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return inclusion_proof(index, leaves[:k]) + [root(leaves[k:])]
    return inclusion_proof(index - k, leaves[k:]) + [root(leaves[:k])]


def inclusion_proofs(indices: list[int], leaves: list[bytes]) -> dict[int, list[bytes]]:
    """inclusion_proof() of many leaves of one tree: the tree is hashed once, level by level as root()
    pairs it (a level's lone last node moves up unpaired and so is on no path), and each path is read
    from the levels, instead of hashing the whole tree again for every leaf (an export's receipts)."""
    n = len(leaves)
    for index in indices:
        if not is_count(index) or not index < n:
            raise ValueError(f"leaf {index} is not in a tree of {n}")
    levels = [leaves]
    while len(levels[-1]) > 1:
        level = levels[-1]
        above = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            above.append(level[-1])
        levels.append(above)
    proofs: dict[int, list[bytes]] = {}
    for index in indices:
        path, i = [], index
        for level in levels[:-1]:
            if i ^ 1 < len(level):  # the sibling; none for a lone last node
                path.append(level[i ^ 1])
            i //= 2
        proofs[index] = path
    return proofs


def consistency_proof(m: int, leaves: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 §2.1.4.1; sizes outside 0 < m <= n raise ValueError."""
    n = len(leaves)
    if not is_count(m) or not 0 < m <= n:
        raise ValueError(f"no consistency proof from {m} to {n}")
    return _subproof(m, leaves, True)


def _subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root(leaves)]
    k = _split(n)
    if m <= k:
        return _subproof(m, leaves[:k], complete) + [root(leaves[k:])]
    return _subproof(m - k, leaves[k:], False) + [root(leaves[:k])]


def verify_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes], expected_root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does `leaf` sit at `index` of the tree of `size` with this root?

    A negative or out-of-range index or size is refused (False), never read from the end.
    """
    if not is_count(index) or not is_count(size) or not index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def verify_consistency(m: int, n: int, root_m: bytes, root_n: bytes, proof: list[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: is the tree of size n with root_n an extension of the one of size m?

    Sizes must satisfy 0 < m <= n; anything else (negative, zero, reversed) is refused (False).
    """
    if not is_count(m) or not is_count(n) or not 0 < m <= n:
        return False
    if m == n:
        return not proof and root_m == root_n
    path = list(proof)
    if m & (m - 1) == 0:  # m is a power of two: the old root is the first node
        path.insert(0, root_m)
    if not path:
        return False
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == root_m and sr == root_n


class CompactRange:
    """The root of a growing log without keeping its leaves (RFC 9162's MTH, as Trillian's and
    Tessera's "compact range"): the roots of the perfect subtrees the leaves so far split into, largest
    first, at most log2(n) + 1 of them. Appending merges equal neighbours; root() folds them from the
    right, which is MTH's largest-power-of-two split read bottom-up."""

    def __init__(self) -> None:
        self.size = 0
        self._subtrees: list[tuple[int, bytes]] = []  # (leaf count, subtree root), counts decreasing

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash (already leaf_hash()ed)."""
        count, node = 1, leaf
        while self._subtrees and self._subtrees[-1][0] == count:
            left_count, left = self._subtrees.pop()
            count, node = left_count + count, node_hash(left, node)
        self._subtrees.append((count, node))
        self.size += 1

    def root(self) -> bytes:
        """MTH of every leaf appended so far; equal to root() over the same list."""
        if not self._subtrees:
            return hashlib.sha256(b"").digest()
        node = self._subtrees[-1][1]
        for _, left in reversed(self._subtrees[:-1]):
            node = node_hash(left, node)
        return node
