"""Example background workers, written against the public API only."""
