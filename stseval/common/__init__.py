"""Plumbing every layer shares: the one user-facing exception, atomic writes and checksums, library log routing."""
