"""Contract tests against the OpenHands SDK client (openhands-sdk, pinned in
scripts/openhands_venv.sh): what this server sends must be what the SDK's own models accept."""
