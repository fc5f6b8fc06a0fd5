"""What the Copilot knows about one account: the store's facts, each with a citation id
(`[health:factor:seat_utilisation]`, `[event:123]`, `[approval:apr_…]`, `[cost:7]`,
`[kb:renewal-playbook.md#Pricing]`), so every sentence of an answer can say where it
comes from and the API can check that a cited id really is one of this account's facts.

Free text that people or customers wrote (CRM fields, contact names, cost notes,
knowledge documents) is *data*: in a prompt it sits inside a `<data source="…">` block
with its markup escaped, so a closing marker or an instruction inside it stays text.
Nothing read here can change grants, limits, recipients or approvals: those come from
the agent spec, the policy and the account's contacts, never from a fact."""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from sqlmodel import Session, col, select

from autopilot.runtime.accounts.snapshot import contact_infos, reasons_of
from autopilot.runtime.config import Settings
from autopilot.runtime.contracts.account import Assessment
from autopilot.runtime.health.scoring import current
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.approvals import Approval
from autopilot.runtime.store.customer import CostEntry, RiskAlert
from autopilot.runtime.store.events import Event
from autopilot.runtime.store.outcomes import OutcomeCheck

log = logging.getLogger(__name__)

FactKind = Literal[
    "account", "health", "alert", "event", "approval", "action", "check", "cost", "contact",
    "crm", "kb",
]  # fmt: skip
FACTORS = 8  # the health factors that move the score most
EVENTS = 12  # the latest events
HISTORY = 10  # the latest actions
MAX_DATA = 2000  # characters of one free-text field a prompt carries


@dataclass(frozen=True)
class Fact:
    id: str  # the citation id, without brackets
    kind: FactKind
    text: str  # what the fact says, for people (not escaped)
    data: bool = False  # free text: shown to a model only inside a data block
    url: str | None = None
    value: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def cite(self) -> str:
        return f"[{self.id}]"

    def prompt_line(self) -> str:
        """The fact as a prompt carries it: free text escaped inside its data block."""
        if not self.data:
            return f"{self.cite} {self.text}"
        return f"{self.cite} {data_block(self.id, self.text)}"


def data_block(source: str, text: str) -> str:
    """`text` as inert data: markup escaped (a `</data>` inside becomes `&lt;/data&gt;`),
    so nothing in it can close the block or pose as an instruction around it."""
    body = html.escape(text[:MAX_DATA], quote=True)
    return f'<data source="{html.escape(source, quote=True)}">{body}</data>'


@dataclass
class AccountContext:
    account: Account
    assessment: Assessment
    facts: list[Fact]
    today: date

    def by_id(self) -> dict[str, Fact]:
        return {f.id: f for f in self.facts}

    def of(self, kind: FactKind) -> list[Fact]:
        return [f for f in self.facts if f.kind == kind]

    def prompt(self) -> str:
        return "\n".join(f.prompt_line() for f in self.facts)


def _fmt_money(x: float) -> str:
    return f"{x:,.0f}"


def gather(
    session: Session,
    account: Account,
    *,
    today: date,
    since: datetime,
    settings: Settings | None = None,
    question: str = "",
) -> AccountContext:
    """One account's facts (the caller has checked the account is the user's to see).
    `since` bounds the costs (this quarter); with `settings` and a question, the
    knowledge base's best passages for it are facts too."""
    facts: list[Fact] = []
    e = current(session, account, today=today)
    facts.append(
        Fact(
            "account:profile",
            "account",
            f"{account.name} is a {account.segment} account in {account.region} with ARR "
            f"{_fmt_money(account.arr)}, {account.seats_used} of {account.seats_purchased} seats "
            f"used, {account.active_users_30d} users active in 30 days, renewal on "
            f"{account.renewal_date.isoformat()}, owner {account.owner_csm}, status {account.status}",
        )
    )
    facts.append(
        Fact(
            "health:score",
            "health",
            f"Health 2.0 is {e.health:.1f}/100 with churn risk {e.risk:.0%} "
            f"(model {e.model_version})",
            value={"health": e.health, "risk": e.risk},
        )
    )
    for f in sorted(e.factors, key=lambda f: abs(f.contribution), reverse=True)[:FACTORS]:
        facts.append(
            Fact(
                f"health:factor:{f.feature}",
                "health",
                f"{f.label} = {f.value:g}, {f.contribution:+.1f} health points",
                value={"contribution": f.contribution},
            )
        )
    alert = session.exec(
        select(RiskAlert)
        .where(RiskAlert.account_id == account.id)
        .order_by(col(RiskAlert.at).desc())
    ).first()
    if alert is not None:
        facts.append(
            Fact(
                f"alert:{alert.id}",
                "alert",
                f"early warning on {alert.at.date().isoformat()}: churn risk {alert.risk:.0%} "
                f"crossed {alert.threshold:.0%}",
            )
        )
    facts += _events(session, account.id)
    facts += _approvals(session, account.id)
    facts += _costs(session, account.id, since)
    for c in contact_infos(session, [account.id])[account.id]:
        # A contact's name is typed by people: data. The role and flags are the store's.
        facts.append(
            Fact(
                f"contact:{c.id}",
                "contact",
                f"{c.name} <{c.email}>, {c.role}" + (" (opted out)" if c.opted_out else ""),
                data=True,
                value={"role": c.role, "email": c.email, "name": c.name},
            )
        )
    for key, value in sorted((account.custom or {}).items()):
        facts.append(Fact(f"crm:{key}", "crm", f"{key}: {value}", data=True))
    if settings is not None and question.strip():
        facts += _kb(settings, question)
    return AccountContext(
        account=account,
        assessment=Assessment(health=e.health, risk=e.risk, reasons=reasons_of(e)),
        facts=facts,
        today=today,
    )


def _events(session: Session, account_id: str) -> list[Fact]:
    rows = session.exec(
        select(Event)
        .where(Event.account_id == account_id)
        .order_by(col(Event.occurred_at).desc(), col(Event.id).desc())
        .limit(EVENTS)
    ).all()
    out: list[Fact] = []
    for ev in rows:
        fields = ", ".join(
            f"{k}={v}"
            for k, v in sorted(ev.payload.items())
            if k not in ("account_id", "type", "occurred_at") and isinstance(v, (int, float, str))
        )
        out.append(
            Fact(
                f"event:{ev.id}",
                "event",
                f"{ev.type} on {ev.occurred_at.date().isoformat()}"
                + (f" ({fields})" if fields else ""),
                # Event payloads may carry text a customer wrote (a ticket, a reply).
                data=True,
            )
        )
    return out


def _approvals(session: Session, account_id: str) -> list[Fact]:
    out: list[Fact] = []
    for a in session.exec(
        select(Approval)
        .where(Approval.account_id == account_id)
        .order_by(col(Approval.created_at).desc())
        .limit(HISTORY)
    ):
        out.append(
            Fact(
                f"approval:{a.id}",
                "approval",
                f"{a.agent} proposed {a.tool}, {a.status} in the inbox",
                url=f"/inbox?status={a.status}#{a.id}",
                value={"status": a.status},
            )
        )
    for r in session.exec(
        select(ActionRecord)
        .where(ActionRecord.account_id == account_id)
        .order_by(col(ActionRecord.updated_at).desc())
        .limit(HISTORY)
    ):
        out.append(
            Fact(
                f"action:{r.run_key}",
                "action",
                f"{r.agent} {r.tool}: {r.status} on {r.updated_at.date().isoformat()}",
                value={"status": r.status},
            )
        )
    for c in session.exec(
        select(OutcomeCheck).where(
            OutcomeCheck.account_id == account_id, OutcomeCheck.status == "open"
        )
    ):
        out.append(
            Fact(
                f"check:{c.run_key}",
                "check",
                f"{c.tool} by {c.agent}: outcome unknown, waiting for a person",
                value={"status": c.status},
            )
        )
    return out


def _costs(session: Session, account_id: str, since: datetime) -> list[Fact]:
    rows = session.exec(
        select(CostEntry)
        .where(CostEntry.account_id == account_id, CostEntry.at >= since)
        .order_by(col(CostEntry.at).desc())
    ).all()
    out: list[Fact] = []
    if rows:
        total = sum(r.amount for r in rows)
        out.append(
            Fact(
                "cost:quarter",
                "cost",
                f"cost to serve since {since.date().isoformat()}: {_fmt_money(total)} "
                f"over {len(rows)} entries",
                value={"total": total},
            )
        )
    for r in rows[:HISTORY]:
        note = f" — {r.note}" if r.note else ""
        out.append(
            Fact(
                f"cost:{r.id}",
                "cost",
                f"{r.kind} {_fmt_money(r.amount)} on {r.at.date().isoformat()}"
                + (f" by {r.agent}" if r.agent else "")
                + note,
                data=bool(r.note),  # the note is typed by people
                value={"amount": r.amount, "kind": r.kind},
            )
        )
    return out


def _kb(settings: Settings, question: str) -> list[Fact]:
    # Imported here: chromadb and the embedding model load only when a question needs them.
    from autopilot.runtime.kb import store as kb  # noqa: PLC0415

    try:
        # Never embedded on a request (tens of seconds): `autopilot up` or `kb ingest` did.
        if not kb.collection(settings).count():
            return []
        hits = kb.search(settings, question, k=2)
    except (OSError, ValueError, RuntimeError) as err:  # a KB that cannot answer: store facts only
        log.warning("copilot: knowledge base unavailable: %s", err)
        return []
    return [
        Fact(
            f"kb:{h['source']}#{h['heading']}",
            "kb",
            str(h["text"]),
            data=True,
        )
        for h in hits
    ]
