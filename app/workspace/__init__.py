"""The OpenHands workspace routes: bash commands and file transfer inside the workspace root."""
