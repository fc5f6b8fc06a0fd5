"""The customer's own choices about us (CAN-SPAM/RFC 8058 unsubscribe, CPPA ADMT opt-out,
access requests): one row per choice, kept for auditors and for the ADMT access export.

A choice and the contact flags the policy gate reads (`Contact.opted_out`,
`Contact.admt_opted_out`) are written in one transaction, so the gate enforces a choice
from the moment it is recorded, and a record never exists without its effect."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlmodel import Field, Session, SQLModel, col, select
from sqlmodel.sql.expression import SelectOfScalar

from autopilot.runtime.store.accounts import Account, Contact

ConsentKind = Literal["email", "admt", "access"]
ConsentChoice = Literal["opt_out", "opt_in", "request"]
ConsentSource = Literal["one_click", "preferences_page", "staff", "import"]


class ConsentRecord(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    contact_id: str = Field(index=True)
    account_id: str = Field(index=True)
    email: str = Field(index=True)
    kind: str = Field(index=True)  # email | admt | access
    choice: str  # opt_out | opt_in | request
    source: str  # one_click | preferences_page | ...
    at: datetime = Field(index=True)


class UnknownContact(LookupError):
    """The contact a choice names is not in the store (or not in the organisation)."""


def contact_in_org(
    session: Session, *, contact_id: str, org_id: str, lock: bool = False
) -> Contact | None:
    """The contact, if it belongs to an account of `org_id` (a token is per organisation).
    `lock`: the caller will change it from what it read (FOR UPDATE where supported)."""
    query = (
        select(Contact)
        .join(Account, col(Account.id) == col(Contact.account_id))
        .where(col(Contact.id) == contact_id, col(Account.org_id) == org_id)
    )
    if lock:
        query = query.with_for_update(of=Contact)  # type: ignore[arg-type]
    return session.exec(query).first()


def record_choice(
    session: Session,
    *,
    contact: Contact,
    kind: ConsentKind,
    choice: ConsentChoice,
    source: ConsentSource,
    now: datetime,
) -> ConsentRecord:
    """Record one choice and apply it to the contact (the caller commits both at once).

    An email opt-out is about the address, not one CRM row: every contact of the same
    organisation with that address stops receiving automated mail."""
    if kind in ("email", "admt"):
        flag = choice == "opt_out"
        targets = [contact]
        if kind == "email":
            org = session.exec(select(Account.org_id).where(Account.id == contact.account_id)).one()
            targets = list(
                session.exec(
                    select(Contact)
                    .join(Account, col(Account.id) == col(Contact.account_id))
                    .where(col(Contact.email) == contact.email, col(Account.org_id) == org)
                )
            )
        for target in targets:
            if kind == "email":
                target.opted_out = flag
            else:
                target.admt_opted_out = flag
            session.add(target)
    record = ConsentRecord(
        contact_id=contact.id,
        account_id=contact.account_id,
        email=contact.email,
        kind=kind,
        choice=choice,
        source=source,
        at=now,
    )
    session.add(record)
    return record


def consent_records(
    session: Session,
    *,
    visible: SelectOfScalar[str] | None = None,
    kind: str | None = None,
    contact_id: str | None = None,
) -> list[ConsentRecord]:
    """Newest first; `visible` (a query of account ids) limits them to what the reader may see."""
    query = select(ConsentRecord).order_by(
        col(ConsentRecord.at).desc(), col(ConsentRecord.id).desc()
    )
    if visible is not None:
        query = query.where(col(ConsentRecord.account_id).in_(visible))
    if kind is not None:
        query = query.where(ConsentRecord.kind == kind)
    if contact_id is not None:
        query = query.where(ConsentRecord.contact_id == contact_id)
    return list(session.exec(query))
