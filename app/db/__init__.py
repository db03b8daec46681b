"""Database infrastructure: metadata, portable types, engine and sessions."""
