"""What a workflow sends to the model-call activity and gets back, its timeout and its
429 back-off. Kept apart from the activity (which imports the SDKs and the store) so a
workflow can import it through the sandbox."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

from autopilot.runtime.llm.config import LlmConfig
from autopilot.runtime.llm.messages import ChatResult, Message, ToolDef

ACTIVITY = "llm.call_model"
# The failures trying again cannot fix (bad request or key, guard, budget, bad reply).
NON_RETRYABLE = ["llm.rejected", "llm.config", "llm.guard", "llm.malformed", "llm.budget_exceeded"]
# 429 back-off: exponential from 2 s to a minute, six attempts (about two minutes in all).
# A Retry-After from the provider overrides the next delay (ApplicationError.next_retry_delay).
RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=6,
    non_retryable_error_types=NON_RETRYABLE,
)
# One attempt; above the client's own timeout (LlmConfig.timeout_s, 60 s by default).
START_TO_CLOSE = timedelta(seconds=90)


class ModelCall(BaseModel):
    config: LlmConfig
    messages: list[Message]
    tools: list[ToolDef] = Field(default_factory=list)  # only the tools the agent is granted
    agent: str
    account_id: str  # whose cost it is (cost to retain is per account)


class ModelReply(BaseModel):
    result: ChatResult
    booked: bool  # this attempt booked the cost (False: an earlier attempt of the call did)


async def call_model(
    call: ModelCall,
    *,
    start_to_close: timedelta = START_TO_CLOSE,
    retry_policy: RetryPolicy = RETRY_POLICY,
) -> ModelReply:
    """From a workflow: the activity with its timeout and 429 back-off."""
    return await workflow.execute_activity(
        ACTIVITY,
        call,
        result_type=ModelReply,
        start_to_close_timeout=start_to_close,
        retry_policy=retry_policy,
    )
