"""Finding and handing over: search, export bundles (kept in the store) and their offline verification."""
