"""Model calls as Temporal activities: one ModelCall in, one ModelReply out.

The workflow decides, this does the I/O: it checks the agent's quarterly model budget,
makes the call (runtime/llm/client.py), and books its tokens and cost to the ledger
once per call, keyed by the workflow and activity ids (the same across retries).
Retryable failures (429, 5xx, timeouts) go back to Temporal with the provider's
Retry-After as the next delay; everything else fails at once."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlmodel import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from autopilot.runtime import services
from autopilot.runtime.contracts.agent_spec import AgentSpec, LlmPlanner
from autopilot.runtime.ledger.model import book_model_cost, model_spend
from autopilot.runtime.llm.calls import ACTIVITY, ModelCall, ModelReply
from autopilot.runtime.llm.client import chat
from autopilot.runtime.llm.errors import LlmBudgetExceeded, LlmError, LlmRetryable

log = logging.getLogger(__name__)


def model_budget(spec: AgentSpec | None) -> float | None:
    if spec is not None and isinstance(spec.planner, LlmPlanner):
        return spec.planner.model_budget_per_quarter
    return None


class LlmActivities:
    """Reaches the store and specs through the worker's services."""

    @activity.defn(name=ACTIVITY)
    def call_model(self, call: ModelCall) -> ModelReply:
        svc = services.current()
        info = activity.info()
        now = svc.clock()
        budget = model_budget(svc.specs.get(call.agent))
        if budget is not None:
            with Session(svc.db) as session:
                spent = model_spend(session, agent=call.agent, now=now)
            if spent >= budget:
                err = LlmBudgetExceeded(
                    f"{call.agent} has spent {spent:.2f} of its {budget:.2f} model budget this quarter"
                )
                raise ApplicationError(str(err), type=err.code, non_retryable=True)
        try:
            result = chat(call.config, call.messages, call.tools)
        except LlmRetryable as err:
            delay = timedelta(seconds=err.retry_after_s) if err.retry_after_s is not None else None
            raise ApplicationError(str(err), type=err.code, next_retry_delay=delay) from err
        except LlmError as err:
            raise ApplicationError(str(err), type=err.code, non_retryable=True) from err
        booked = book_model_cost(
            svc.db,
            key=f"llm:{info.workflow_id}:{info.activity_id}",
            account_id=call.account_id,
            agent=call.agent,
            amount=result.cost,
            note=(
                f"{result.provider}/{result.model}: {result.usage.input_tokens} in, "
                f"{result.usage.output_tokens} out tokens"
            ),
            at=now,
        )
        log.info(
            "llm call booked" if booked else "llm call already booked",
            extra={"agent": call.agent, "attempt": info.attempt, "cost": result.cost},
        )
        return ModelReply(result=result, booked=booked)
