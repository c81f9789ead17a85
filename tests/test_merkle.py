"""RFC 9162 proofs, checked against an independent computation: the tree root by the recursive
definition of §2.1.1, and every inclusion and consistency proof through the verification algorithms
of §2.1.3.2 and §2.1.4.2 for all sizes up to 33."""

from __future__ import annotations

import hashlib

import pytest

from wa_archive.integrity import merkle


def reference_mth(data: list[bytes]) -> bytes:
    """MTH straight from RFC 9162 §2.1.1, over the raw leaf data."""
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + reference_mth(data[:k]) + reference_mth(data[k:])).digest()


DATA = [f"leaf-{i}".encode() for i in range(33)]
LEAVES = [merkle.leaf_hash(d) for d in DATA]


def test_root_matches_the_recursive_definition():
    for n in range(34):
        assert merkle.root(LEAVES[:n]) == reference_mth(DATA[:n])


def test_every_inclusion_proof_verifies_and_wrong_ones_do_not():
    for n in range(1, 34):
        r = reference_mth(DATA[:n])
        for i in range(n):
            proof = merkle.inclusion_proof(i, LEAVES[:n])
            assert merkle.verify_inclusion(i, n, LEAVES[i], proof, r)
            assert not merkle.verify_inclusion(i, n, merkle.leaf_hash(b"forged"), proof, r)
            if n > 1:
                assert not merkle.verify_inclusion((i + 1) % n, n, LEAVES[i], proof, r) or LEAVES[i] == LEAVES[(i + 1) % n]


def test_every_consistency_proof_verifies_and_a_rewritten_history_does_not():
    for n in range(1, 34):
        for m in range(1, n + 1):
            proof = merkle.consistency_proof(m, LEAVES[:n])
            assert merkle.verify_consistency(m, n, reference_mth(DATA[:m]), reference_mth(DATA[:n]), proof)
            rewritten = [merkle.leaf_hash(b"x")] + LEAVES[1:m]
            if m < n:
                assert not merkle.verify_consistency(m, n, merkle.root(rewritten), reference_mth(DATA[:n]), proof)


def test_rfc_known_structure_for_seven_leaves():
    # RFC 9162 §2.1.5: PATH(0, D[7]) = [b, h, l] -> three nodes; PROOF(3, D[7]) = [c, d, g, l] -> four.
    assert len(merkle.inclusion_proof(0, LEAVES[:7])) == 3
    assert len(merkle.consistency_proof(3, LEAVES[:7])) == 4
    assert len(merkle.consistency_proof(4, LEAVES[:7])) == 1
    assert len(merkle.consistency_proof(6, LEAVES[:7])) == 3


def test_negative_and_out_of_range_indices_and_sizes_are_refused():
    for n in (1, 2, 5, 8):
        r = merkle.root(LEAVES[:n])
        for i in range(n):
            proof = merkle.inclusion_proof(i, LEAVES[:n])
            for bad in (i - n, -1, -n - 1, -64):  # never read from the end
                assert not merkle.verify_inclusion(bad, n, LEAVES[i], proof, r)
            assert not merkle.verify_inclusion(i, -n, LEAVES[i], proof, r)
            assert not merkle.verify_inclusion(n + i, n, LEAVES[i], proof, r)
            assert not merkle.verify_inclusion(True, n, LEAVES[i], proof, r)
    for bad in (-1, -33, 34):
        try:
            merkle.inclusion_proof(bad, LEAVES)
        except ValueError as exc:
            assert "is not in a tree" in str(exc)
        else:
            raise AssertionError(f"inclusion_proof accepted index {bad}")
    proof = merkle.consistency_proof(3, LEAVES[:7])
    r3, r7 = merkle.root(LEAVES[:3]), merkle.root(LEAVES[:7])
    assert merkle.verify_consistency(3, 7, r3, r7, proof)
    for m, n in ((-3, 7), (3, -7), (-1, -1), (0, 7), (7, 3)):
        assert not merkle.verify_consistency(m, n, r3, r7, proof)
    for m in (-1, 0, 8):
        try:
            merkle.consistency_proof(m, LEAVES[:7])
        except ValueError:
            continue
        raise AssertionError(f"consistency_proof accepted size {m}")


def test_inclusion_proofs_of_many_leaves_equal_one_at_a_time():
    """The proofs an export reads from one hashing of the tree are, for every leaf of every size up to
    33, the proofs inclusion_proof() computes alone; an index outside the tree is refused."""
    for n in range(1, 34):
        wanted = list(range(n))
        assert merkle.inclusion_proofs(wanted, LEAVES[:n]) == {i: merkle.inclusion_proof(i, LEAVES[:n]) for i in wanted}
    assert merkle.inclusion_proofs([5, 2], LEAVES[:9]) == {5: merkle.inclusion_proof(5, LEAVES[:9]),
                                                           2: merkle.inclusion_proof(2, LEAVES[:9])}
    for bad in (-1, 9, True):
        with pytest.raises(ValueError, match="is not in a tree of 9"):
            merkle.inclusion_proofs([0, bad], LEAVES[:9])
