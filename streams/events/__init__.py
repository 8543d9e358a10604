"""Example event handlers, written against the public API only."""
