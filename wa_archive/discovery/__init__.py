"""Finding and handing over: search, export bundles and their offline verification."""
