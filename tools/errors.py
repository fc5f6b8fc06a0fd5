"""The tools' typed errors: each has a code that the audit, the inbox and the tests use."""

from __future__ import annotations


class ToolError(Exception):
    """A tool failed in a way a retry will not fix."""

    code = "tool.failed"


class ToolNotGranted(ToolError):
    code = "tool.not_granted"


class ToolArgsInvalid(ToolError):
    code = "tool.args_invalid"


class ToolUnavailable(ToolError):
    """The receiver could not be reached or said "try later" before it took anything
    (connection refused, an SMTP 4xx, an HTTP 503): known not sent, safe to retry."""

    code = "tool.unavailable"


class ToolOutcomeUnknown(ToolError):
    """The effect was handed over and no answer came back (a timeout after the message
    was sent, a worker killed mid-call): it may or may not have happened. Never retried
    blindly; reconciled with the receiver where it can be asked, else a person looks."""

    code = "tool.outcome_unknown"


class ToolSandboxViolation(ToolError):
    """The tool tried what its sandbox forbids (an undeclared host, a process exec)."""

    code = "tool.sandbox_violation"


# A tool stopped mid-run may already have had its effect: both are unknown outcomes.
class ToolResourceExceeded(ToolOutcomeUnknown):
    code = "tool.resource_exceeded"


class ToolTimeout(ToolOutcomeUnknown):
    code = "tool.timeout"
