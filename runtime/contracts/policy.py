"""PolicyInput and Decision: the contract of data.autopilot.decision."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Violation(BaseModel):
    code: str
    msg: str


class RequiredApproval(BaseModel):
    role: str
    reason: str


class PolicyInput(BaseModel):
    model_config = ConfigDict(frozen=True)

    action: dict[str, Any]
    account: dict[str, Any]
    agent: dict[str, Any]
    actor: dict[str, Any]
    ledger: dict[str, Any]


class Decision(BaseModel):
    allow: bool
    require_approval: bool
    deny: list[Violation] = []
    approval: list[RequiredApproval] = []
    obligations: list[dict[str, Any]] = []
    bundle_hash: str = ""
    input_hash: str = ""

    @property
    def outcome(self) -> str:
        if not self.allow:
            return "deny"
        return "require_approval" if self.require_approval else "allow"

    @classmethod
    def fail_closed(cls, code: str, msg: str, *, bundle_hash: str = "", input_hash: str = "") -> Decision:
        return cls(
            allow=False,
            require_approval=False,
            deny=[Violation(code=code, msg=msg)],
            bundle_hash=bundle_hash,
            input_hash=input_hash,
        )
