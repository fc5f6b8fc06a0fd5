"""The tools' typed errors: each has a code that the audit, the inbox and the tests use."""

from __future__ import annotations


class ToolError(Exception):
    """A tool failed in a way a retry will not fix."""

    code = "tool.failed"


class ToolNotGranted(ToolError):
    code = "tool.not_granted"


class ToolArgsInvalid(ToolError):
    code = "tool.args_invalid"


class ToolOutcomeUnknown(ToolError):
    """A previous attempt started the side effect and never recorded its end: we do not
    repeat it (at most once), a human has to look."""

    code = "tool.outcome_unknown"


class ToolSandboxViolation(ToolError):
    """The tool tried what its sandbox forbids (an undeclared host, a process exec)."""

    code = "tool.sandbox_violation"


class ToolResourceExceeded(ToolError):
    code = "tool.resource_exceeded"


class ToolTimeout(ToolError):
    code = "tool.timeout"
