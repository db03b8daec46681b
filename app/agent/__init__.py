"""Agents: the step interface, the registry of agent kinds and the built-in LLM agent."""
