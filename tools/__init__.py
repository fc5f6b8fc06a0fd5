"""Tools: the registry (`registry.py`), their errors and context, the sandbox, the
MCP bridge, and the built-in tools (`builtin.py` registers them)."""
