"""The CSM Copilot: answers about one account with citations, and suggestions that go
through the same gate and inbox as any agent's action (see service.py)."""
