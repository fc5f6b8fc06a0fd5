"""The policy engine interface, shared by both backends (in-process regopy, remote OPA).

Fail closed: a compile error, an evaluation error or timeout, an undefined or
malformed result, or a bundle other than the one the run pinned is a deny."""

from __future__ import annotations

import json
from typing import Any, Protocol

from pydantic import ValidationError

from autopilot.runtime.contracts.hashing import sha256_hex
from autopilot.runtime.contracts.policy import Decision, PolicyInput

UNAVAILABLE = "policy.unavailable"
BUNDLE_MISMATCH = "policy.bundle_mismatch"
INPUT_INVALID = "input.invalid"
MAX_DECISION_BYTES = 64 * 1024


class PolicyLoadError(RuntimeError):
    """The policies do not compile; the message names file and line where the engine can."""


class PolicyEngine(Protocol):
    @property
    def bundle_hash(self) -> str: ...

    def evaluate(self, payload: dict[str, Any], *, pinned_bundle: str | None = None) -> Decision:
        """Evaluate an already-validated input (a JSON object)."""
        ...

    def reload(self) -> str: ...

    def data(self, path: str) -> Any:
        """A data document of the active bundle (`autopilot/budget/limits`); None if absent."""
        ...


def decide(
    engine: PolicyEngine, policy_input: PolicyInput, *, pinned_bundle: str | None = None
) -> Decision:
    return engine.evaluate(policy_input.model_dump(mode="json"), pinned_bundle=pinned_bundle)


def decide_raw(engine: PolicyEngine, payload: Any, *, pinned_bundle: str | None = None) -> Decision:
    """Validate a raw input against the PolicyInput schema, then evaluate; invalid is a deny."""
    try:
        policy_input = PolicyInput.model_validate(payload)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "<input>"
        return Decision.fail_closed(
            INPUT_INVALID,
            f"{field}: {first['msg']}",
            bundle_hash=engine.bundle_hash,
            input_hash=sha256_hex(payload),
        )
    return decide(engine, policy_input, pinned_bundle=pinned_bundle)


def parse_decision(raw: Any, *, bundle_hash: str, input_hash: str) -> Decision:
    """The same contract check for every backend: anything malformed is a deny."""
    if not isinstance(raw, dict):
        return Decision.fail_closed(
            UNAVAILABLE,
            "policy decision is undefined",
            bundle_hash=bundle_hash,
            input_hash=input_hash,
        )
    text = json.dumps({**raw, "bundle_hash": bundle_hash, "input_hash": input_hash})
    if len(text) > MAX_DECISION_BYTES:
        # A decision must fit a workflow payload and a log row: past the bound it is a deny.
        return Decision.fail_closed(
            UNAVAILABLE,
            f"policy decision is {len(text)} bytes, over {MAX_DECISION_BYTES}",
            bundle_hash=bundle_hash,
            input_hash=input_hash,
        )
    try:
        # Strict: "yes" is not a boolean here, and nothing is coerced into an allow.
        decision = Decision.model_validate_json(text, strict=True)
    except ValidationError as err:
        return Decision.fail_closed(
            UNAVAILABLE,
            f"policy decision is malformed: {err.error_count()} error(s)",
            bundle_hash=bundle_hash,
            input_hash=input_hash,
        )
    if decision.allow == bool(decision.deny) or (decision.require_approval and not decision.allow):
        return Decision.fail_closed(
            UNAVAILABLE,
            "policy decision contradicts itself",
            bundle_hash=bundle_hash,
            input_hash=input_hash,
        )
    # Sets come back in engine order; sort so both backends give identical decisions.
    decision.deny.sort(key=lambda v: (v.code, v.msg))
    decision.approval.sort(key=lambda a: (a.role, a.reason))
    decision.obligations.sort(key=lambda o: sorted(o.items(), key=str).__repr__())
    return decision
