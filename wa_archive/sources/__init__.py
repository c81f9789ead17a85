"""Where messages come from: each source's payloads, signatures and media, and the guarded link fetcher."""
