"""Bring your own LLM: providers (offline, OpenAI, Anthropic, OpenAI-compatible), one
`chat()` over the official clients, the loopback-only guard, the Temporal activity that
books model cost to the ledger, and a deterministic double for tests."""
