"""Readers per source kind, the Delta writer, and small file-system helpers for URIs."""
