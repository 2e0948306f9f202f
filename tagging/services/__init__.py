"""Tagging services: each module one concern; import from the module, this package re-exports nothing."""
