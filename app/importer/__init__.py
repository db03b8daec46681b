"""Moving conversations in from elsewhere: an OpenHands agent-server file store."""
