"""Proof: the tamper-evident ledger and its Merkle proofs."""
