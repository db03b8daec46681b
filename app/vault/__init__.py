"""Credentials: encrypted at rest, merged into an agent's spec only in the process running it,
and redacted from every log line."""
