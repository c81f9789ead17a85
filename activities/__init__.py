"""Temporal activities: thin wrappers that give the core functions their dependencies."""
