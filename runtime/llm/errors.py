"""The LLM error tree: what a caller (the activity, the CLI) needs to tell apart is
whether trying again can help. Provider SDK errors are converted at the boundary."""

from __future__ import annotations


class LlmError(Exception):
    """Any model-call failure; `code` is stable (asserted on, shown in audit records)."""

    code = "llm.error"


class LlmRetryable(LlmError):
    """Rate limited (429), a provider fault (5xx), a timeout or an unreachable endpoint:
    the same call may succeed later. `retry_after_s` is the provider's hint, if any."""

    code = "llm.retryable"

    def __init__(
        self, message: str, *, status: int | None = None, retry_after_s: float | None = None
    ):
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class LlmRejected(LlmError):
    """The provider refused the request itself (4xx other than 429): bad request, bad
    key, unknown model. Resending the same request cannot help."""

    code = "llm.rejected"

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class LlmConfigError(LlmError):
    """The configuration cannot work: a missing key, an unknown provider, offline."""

    code = "llm.config"


class LlmGuardError(LlmConfigError):
    """The loopback-only guard refused a host (tests and offline mode never reach a real model)."""

    code = "llm.guard"


class LlmMalformed(LlmError):
    """The provider answered with something that is not a chat reply (bad JSON, bad tool
    arguments). Deterministic for the same reply, so not retried."""

    code = "llm.malformed"


class LlmBudgetExceeded(LlmError):
    """The agent's model budget for the quarter is spent."""

    code = "llm.budget_exceeded"
