"""Which scheduled agents are due on a batch of accounts: the sweep's evaluation, read in
bulk. Each account is seen as `get_snapshot` shows it (its fields with its subscriptions'
terms today, its stored Health 2.0 figure, its contacts, its compliance work) but a
batch costs a handful of queries, not several per account; and the health is the stored
figure itself, never re-explained: triggers do not see the reasons, and re-deriving a
factorless score's explanation (a window read and a TreeSHAP call per account) was most
of a sweep's cost.
An account never scored, or scored by another model, is explained as of today, in one
call for the batch, as `scoring.current` would."""

from __future__ import annotations

from datetime import date

from sqlmodel import Session, col, select

from autopilot.runtime.accounts.compliance_due import decisions_to_record, opt_outs_lifted
from autopilot.runtime.accounts.snapshot import account_fields, contact_infos, snapshot_of
from autopilot.runtime.accounts.subscriptions import current_fields
from autopilot.runtime.agents.triggers import Triggers
from autopilot.runtime.contracts.account import AccountSnapshot
from autopilot.runtime.health.features import compute
from autopilot.runtime.health.scoring import cast_table, current_model, load_windows
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.customer import AccountScore, Subscription


def snapshots(session: Session, ids: list[str], today: date) -> list[tuple[str, AccountSnapshot]]:
    """(org, snapshot) of each active account of `ids`, without reasons (`reasons_of`
    needs the factors; triggers never read them)."""
    accounts = session.exec(
        select(Account).where(col(Account.id).in_(ids), Account.status == "active")
    ).all()
    if not accounts:
        return []
    found = [a.id for a in accounts]
    model = current_model()
    t = cast_table(AccountScore)
    health: dict[str, tuple[float, float]] = {
        a: (h, r)
        for a, h, r, version in session.connection().execute(
            select(t.c.account_id, t.c.health, t.c.risk, t.c.model_version).where(
                t.c.account_id.in_(found)
            )
        )
        if version == model.version
    }
    if unscored := [a for a in accounts if a.id not in health]:
        x = compute(load_windows(session, unscored, today))
        for a, e in zip(unscored, model.explain(x), strict=True):
            health[a.id] = (e.health, e.risk)
    subs: dict[str, list[Subscription]] = {}
    for sub in session.exec(select(Subscription).where(col(Subscription.account_id).in_(found))):
        subs.setdefault(sub.account_id, []).append(sub)
    contacts = contact_infos(session, found)
    to_record = decisions_to_record(session, found)
    lifted = opt_outs_lifted(session, found)
    out = []
    for a in accounts:
        fields = account_fields(a)
        if held := subs.get(a.id):
            derived = current_fields(held, today, a.renewal_date)
            fields |= {k: v for k, v in derived.items() if k in fields}
        h, r = health[a.id]
        snapshot = snapshot_of(
            fields,
            health=h,
            risk=r,
            reasons=[],
            contacts=contacts[a.id],
            decisions_to_record=to_record.get(a.id, 0),
            opt_outs_lifted=lifted.get(a.id, 0),
        )
        out.append((a.org_id, snapshot))
    return out


def due(
    session: Session, triggers: Triggers, ids: list[str], today: date, agents: list[str] | None
) -> dict[str, tuple[str, list[str]]]:
    """account -> (org, the scheduled agents due on it), for the active accounts of `ids`
    with some due."""
    out: dict[str, tuple[str, list[str]]] = {}
    for org, snapshot in snapshots(session, ids, today):
        if hits := triggers.due(snapshot, today, agents):
            out[snapshot.id] = (org, hits)
    return out
