"""What the Compliance agent keeps for auditors (CPPA ADMT, GDPR Art. 22): one record per
significant automated decision, the gaps it found, the pre-use notices given, when an
opt-out was first seen, and the Health 2.0 model card in use each day."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel


class AdmtDecision(SQLModel, table=True):
    """One significant automated decision (an action of a `significant` tool the gate let
    through). Its facts are written once; its outcome follows the action (pending → executed)."""

    run_key: str = Field(primary_key=True)  # the action's (ActionRecord.run_key)
    account_id: str = Field(index=True)
    agent: str = Field(index=True)
    workflow_id: str
    tool: str
    payload_hash: str  # what was decided: the action as it finally stood
    recipient: str | None = None
    contact_id: str | None = None
    discount_pct: float = 0.0
    expected_cost: float = 0.0
    reason: str = ""  # the agent's stated reason
    decided_at: datetime  # the gate's decision on that payload
    policy_decision_id: int | None = None  # its PolicyDecisionRecord; None: none was logged
    bundle_hash: str = ""
    input_hash: str = ""  # hash of the policy input: what the decision was taken on
    gate_outcome: str = ""  # allow|require_approval|deny; empty: no decision logged
    notice_on_record: bool  # the recipient had the ADMT pre-use notice when it was decided
    human_involved: bool  # a person approved, rejected or edited it
    reviewers: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    outcome: str = Field(index=True)  # the action's status: executed, rejected, pending, ...
    executed_at: datetime | None = None
    recorded_at: datetime
    updated_at: datetime


class ComplianceGap(SQLModel, table=True):
    """Something an auditor would ask about, found once and kept (never re-reported)."""

    __table_args__ = (UniqueConstraint("code", "subject", name="uq_gap_code_subject"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(index=True)
    code: str = Field(index=True)  # compliance.no_notice, compliance.opted_out_contacted, ...
    subject: str  # the action's run key or the contact's id
    detail: str
    found_at: datetime


class AdmtNotice(SQLModel, table=True):
    """The pre-use notice a contact was given: when, by which message, which text."""

    contact_id: str = Field(primary_key=True)
    account_id: str = Field(index=True)
    email: str
    message_id: str
    text_hash: str
    sent_at: datetime


class OptOutSeen(SQLModel, table=True):
    """When compliance first saw a contact opted out (the contact row keeps no time): any
    message executed to them after it was sent after the opt-out."""

    contact_id: str = Field(primary_key=True)
    account_id: str = Field(index=True)
    email: str
    first_seen_at: datetime


class ModelCardRecord(SQLModel, table=True):
    """The card of the Health 2.0 model in use on a day (one per day and model version)."""

    __table_args__ = (UniqueConstraint("day", "version", name="uq_model_card_day_version"),)

    id: int | None = Field(default=None, primary_key=True)
    day: date = Field(index=True)
    version: str
    trained_at: str
    algorithm: str
    training_window: str
    metrics: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    intended_use: str
    limits: str
    card_hash: str  # of the card.json it was read from
    refreshed_at: datetime
