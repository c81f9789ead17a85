"""Proof: the tamper-evident ledger and its Merkle proofs, and the retrieval test that reads the archive back."""
