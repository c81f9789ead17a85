"""Who may read: API tokens, page sessions, and the access log of every read."""
