"""Sweep: the scheduled evaluation of every account that starts the agent runs due."""
