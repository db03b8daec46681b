"""SQL-backed agent server."""
