"""Keeping and removing: retention policies, legal holds, disposition and erasure."""
