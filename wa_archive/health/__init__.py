"""Capture health: whether the archive is still hearing from every business number."""
