"""The inbox: what a person may see (organisation and book scoping in every query),
and their decisions, edits, bulk decisions, reassignments and comments. Votes and
edits reach the waiting workflow as Temporal Updates; the workflow's validators
refuse unknown, stale or already-decided items too."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from autopilot.runtime.accounts.snapshot import get_snapshot
from autopilot.runtime.accounts.views import account_view
from autopilot.runtime.agents.planner import apply_edit
from autopilot.runtime.approvals.access import Principal, approvals_visible_to, role_to_cast
from autopilot.runtime.approvals.listing import Filters, page
from autopilot.runtime.approvals.models import (
    ApprovalDetail,
    ApprovalPublic,
    BulkCreate,
    BulkResult,
    CommentCreate,
    CommentPublic,
    DecisionCreate,
    EditCreate,
    ReassignCreate,
    VotePublic,
)
from autopilot.runtime.approvals.votes import store_vote
from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.contracts.approval import ApprovalEdit, ApprovalOutcome, ApprovalVote
from autopilot.runtime.policy.limits import read_limits
from autopilot.runtime.services import Services
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.approvals import Approval, ApprovalComment
from autopilot.runtime.store.approvals import ApprovalVote as VoteRow
from autopilot.runtime.store.audit import AuditEntry
from autopilot.runtime.store.db import transaction
from autopilot.runtime.store.users import User
from autopilot.tools.registry import ToolContext, ToolError

log = logging.getLogger(__name__)


class InboxError(Exception):
    status_code = 400


class NotFound(InboxError):
    status_code = 404


class Forbidden(InboxError):
    status_code = 403


class Conflict(InboxError):
    """Already decided, stale payload hash, or the workflow refused the update."""

    status_code = 409


class Invalid(InboxError):
    status_code = 422


class Inbox:
    def __init__(self, svc: Services, client: Client) -> None:
        self.svc, self.client = svc, client

    # --- reading ----------------------------------------------------------------

    def _votes(self, session: Session, ids: list[str]) -> dict[str, list[VoteRow]]:
        out: dict[str, list[VoteRow]] = {}
        if ids:
            for v in session.exec(select(VoteRow).where(col(VoteRow.approval_id).in_(ids))):
                out.setdefault(v.approval_id, []).append(v)
        return out

    def _public(self, p: Principal, row: Approval, votes: list[VoteRow]) -> ApprovalPublic:
        voted = {v.role for v in votes}
        already = any(v.actor == p.user_id for v in votes)
        return ApprovalPublic(
            **row.model_dump(exclude={"org_id", "run_key", "deciders", "decision"}),
            votes=[
                VotePublic(role=v.role, verdict=v.verdict, actor=v.actor, reason=v.reason, at=v.at)
                for v in votes
            ],
            can_decide_as=None
            if row.status != "pending" or already
            else role_to_cast(p, row, voted),
        )

    def rows(
        self,
        p: Principal,
        *,
        status: str | None = "pending",
        agent: str | None = None,
        account_id: str | None = None,
        segment: str | None = None,
        role: str | None = None,
        min_risk: float | None = None,
        min_value: float | None = None,
        older_than_hours: float | None = None,
        sort: str = "age",
        limit: int = 200,
        offset: int = 0,
        raw_json: bool = False,
    ) -> list[dict[str, Any]]:
        """The list as plain dicts (columns, votes, the role you would vote for); see
        `listing`. `raw_json`: `action`, `reasons` and `roles` as orjson fragments."""
        filters = Filters(
            status=status,
            agent=agent,
            account_id=account_id,
            segment=segment,
            role=role,
            min_risk=min_risk,
            min_value=min_value,
            created_before=None
            if older_than_hours is None
            else self.svc.clock() - timedelta(hours=older_than_hours),
            sort=sort,
            limit=limit,
            offset=offset,
        )
        with self.svc.db.connect() as conn:
            return page(conn, p, filters, raw_json=raw_json)

    def list(self, p: Principal, **filters: Any) -> list[ApprovalPublic]:
        return [ApprovalPublic.model_validate(item) for item in self.rows(p, **filters)]

    def list_json(self, p: Principal, **filters: Any) -> bytes:
        """The API's list, encoded once (the rows are already the public shape)."""
        return orjson.dumps(self.rows(p, raw_json=True, **filters))

    def _visible(self, session: Session, p: Principal, approval_id: str) -> Approval:
        row = session.exec(
            approvals_visible_to(p, select(Approval).where(Approval.id == approval_id))
        ).first()
        if row is None:  # not found and not yours look the same: no existence leak
            raise NotFound(f"no approval {approval_id}")
        return row

    def get(self, p: Principal, approval_id: str) -> ApprovalPublic:
        with Session(self.svc.db) as session:
            row = self._visible(session, p, approval_id)
            return self._public(p, row, self._votes(session, [row.id]).get(row.id, []))

    def detail(self, p: Principal, approval_id: str) -> ApprovalDetail:
        with Session(self.svc.db) as session:
            row = self._visible(session, p, approval_id)
            public = self._public(p, row, self._votes(session, [row.id]).get(row.id, []))
            account = session.get(Account, row.account_id)
            now = self.svc.clock()
            view = (
                account_view(
                    session, account, read_limits(self.svc.policy), today=now.date(), now=now
                )
                if account
                else {}
            )
            siblings = session.exec(
                select(ActionRecord)
                .where(ActionRecord.workflow_id == row.workflow_id)
                .order_by(col(ActionRecord.created_at).desc())
                .limit(10)
            ).all()
            history = session.exec(
                select(AuditEntry)
                .where(AuditEntry.workflow_id == row.workflow_id)
                .order_by(col(AuditEntry.seq).desc())
                .limit(50)
            ).all()
            comments = session.exec(
                select(ApprovalComment)
                .where(ApprovalComment.approval_id == row.id)
                .order_by(col(ApprovalComment.at))
            ).all()
        return ApprovalDetail(
            **public.model_dump(),
            preview=self._preview(row),
            decision=row.decision,
            health=view.get("health", {}),
            signals=view.get("signals", []),
            optimizer=view.get("optimizer", {}),
            alternatives=[
                {
                    "tool": s.tool,
                    "status": s.status,
                    "expected_cost": s.expected_cost,
                    "expected_uplift": s.payload.get("expected_uplift"),
                    "reason": s.payload.get("reason"),
                    "discount_pct": s.discount_pct,
                }
                for s in siblings
                if s.payload_hash != row.payload_hash
            ],
            history=[
                {"at": h.at, "step": h.step, "actor": h.actor, "decision": h.decision}
                for h in history
            ],
            comments=[CommentPublic(author=c.author, text=c.text, at=c.at) for c in comments],
        )

    def _preview(self, row: Approval) -> dict[str, Any]:
        """The tool's dry run: exactly what would be sent, nothing sent."""
        try:
            return self.svc.tools.call(
                row.tool,
                row.action.get("args", {}),
                ToolContext(idempotency_key=row.id, dry_run=True, smtp=self.svc.smtp),
            )
        except ToolError as err:
            return {"error": str(err)}

    # --- deciding ---------------------------------------------------------------

    async def decide(self, p: Principal, approval_id: str, body: DecisionCreate) -> ApprovalOutcome:
        if not p.can_decide:
            raise Forbidden("your roles do not decide approvals")
        with Session(self.svc.db) as session:
            row = self._visible(session, p, approval_id)
            votes = self._votes(session, [row.id]).get(row.id, [])
        if row.status != "pending":
            raise Conflict(f"approval {approval_id} is already {row.status}")
        if body.payload_hash != row.payload_hash:
            raise Conflict("stale decision: the action changed since you saw it")
        if any(v.actor == p.user_id for v in votes):
            raise Conflict("you already decided this item: another person must take the other role")
        role = role_to_cast(p, row, {v.role for v in votes})
        if role is None:
            raise Forbidden(
                f"approval {approval_id} needs {', '.join(row.roles)}; your roles cannot decide it"
            )
        vote = ApprovalVote(
            approval_id=approval_id,
            payload_hash=body.payload_hash,
            role=role,
            verdict=body.verdict,
            actor=p.user_id,
            reason=body.reason,
        )
        outcome = await self._update(row.workflow_id, "decide", vote)
        if outcome.status in ("approved", "rejected"):
            # The run stores the deciding vote in the step that acts on it; stored here as
            # well, so that the inbox shows the item decided as soon as the approver hears
            # it is (whichever is first, the other finds it there). The item is decided
            # either way: a store failing here is the run's to make, not an error to return.
            try:
                with transaction(self.svc.db) as session:
                    store_vote(
                        session.connection(),
                        vote.model_copy(update={"decided_at": outcome.decided_at}),
                    )
            except SQLAlchemyError as err:
                log.warning("vote on %s left to its run to store: %s", approval_id, err)
        return outcome

    async def edit(self, p: Principal, approval_id: str, body: EditCreate) -> ApprovalOutcome:
        if not p.can_decide:
            raise Forbidden("your roles do not edit approvals")
        with Session(self.svc.db) as session:
            row = self._visible(session, p, approval_id)
            snapshot = get_snapshot(
                session, account_id=row.account_id, today=self.svc.clock().date()
            )
        if row.status != "pending":
            raise Conflict(f"approval {approval_id} is already {row.status}")
        if body.payload_hash != row.payload_hash:
            raise Conflict("stale edit: the action changed since you saw it")
        assert snapshot is not None
        try:  # checked here for a clear 422; the workflow's activity checks again
            apply_edit(
                self.svc.tools, ProposedAction.model_validate(row.action), body.args, snapshot
            )
        except (ToolError, ValueError) as err:
            raise Invalid(str(err)) from err
        edit = ApprovalEdit(
            approval_id=approval_id,
            payload_hash=body.payload_hash,
            args=body.args,
            actor=p.user_id,
            reason=body.reason,
        )
        return await self._update(row.workflow_id, "edit", edit)

    async def _update(self, workflow_id: str, name: str, arg: Any) -> ApprovalOutcome:
        handle = self.client.get_workflow_handle(workflow_id)
        try:
            return await handle.execute_update(name, arg, result_type=ApprovalOutcome)
        except WorkflowUpdateFailedError as err:
            raise Conflict(str(getattr(err.cause, "message", None) or err)) from err
        except RPCError as err:
            raise Conflict(f"the run no longer accepts decisions: {err.message}") from err

    async def bulk(self, p: Principal, body: BulkCreate) -> list[BulkResult]:
        results = []
        for item in body.items:
            try:
                outcome = await self.decide(
                    p,
                    item.id,
                    DecisionCreate(
                        verdict=body.verdict, payload_hash=item.payload_hash, reason=body.reason
                    ),
                )
                results.append(
                    BulkResult(id=item.id, ok=True, status_code=200, status=outcome.status)
                )
            except InboxError as err:
                results.append(
                    BulkResult(id=item.id, ok=False, status_code=err.status_code, error=str(err))
                )
        return results

    def reassign(self, p: Principal, approval_id: str, body: ReassignCreate) -> ApprovalPublic:
        if not p.can_manage:
            raise Forbidden("only managers reassign")
        with transaction(self.svc.db) as session:
            row = self._visible(session, p, approval_id)
            target = session.get(User, body.to)
            if target is None or target.org_id != p.org_id or "csm" not in target.roles:
                raise Invalid(f"{body.to} is not a CSM of your organisation")
            if row.status != "pending":
                raise Conflict(f"approval {approval_id} is already {row.status}")
            row.assigned_to = target.id
            session.add(row)
            session.add(
                ApprovalComment(
                    approval_id=row.id,
                    author=p.user_id,
                    text=f"reassigned to {target.id}",
                    at=datetime.now(UTC),
                )
            )
        return self.get(p, approval_id)

    def comment(self, p: Principal, approval_id: str, body: CommentCreate) -> CommentPublic:
        with transaction(self.svc.db) as session:
            row = self._visible(session, p, approval_id)
            comment = ApprovalComment(
                approval_id=row.id, author=p.user_id, text=body.text, at=datetime.now(UTC)
            )
            session.add(comment)
            return CommentPublic(author=comment.author, text=comment.text, at=comment.at)
