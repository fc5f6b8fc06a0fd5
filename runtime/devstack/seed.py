"""A synthetic demo portfolio: deterministic for a given seed, realistic proportions."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import select

from autopilot.runtime.devstack.users import demo_user_id, seed_demo_users
from autopilot.runtime.health.scoring import rescore_all
from autopilot.runtime.health.training import seed_history
from autopilot.runtime.ledger.cbr import LEDGER_RATES
from autopilot.runtime.store.accounts import Account, Contact, count_accounts
from autopilot.runtime.store.customer import CostEntry
from autopilot.runtime.store.db import transaction

SEGMENTS = [  # segment, share, ARR range, seats range
    ("enterprise", 0.15, (250_000, 1_200_000), (300, 2_000)),
    ("mid_market", 0.30, (50_000, 249_000), (60, 300)),
    ("smb", 0.35, (8_000, 49_000), (10, 60)),
    ("tech_touch", 0.20, (1_000, 7_900), (2, 10)),
]
REGIONS = ["eu", "us", "apac"]
TIMEZONES = {
    "eu": ["Europe/Berlin", "Europe/Paris", "Europe/Madrid"],
    "us": ["America/New_York", "America/Chicago", "America/Denver"],
    "apac": ["Asia/Singapore", "Asia/Tokyo", "Australia/Sydney"],
}
CSMS = ["alice", "bob", "chen", "dana", "emeka"]
WORDS = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Wonka",
    "Aperture",
    "Vandelay",
    "Pied",
    "Gringotts",
    "Oscorp",
    "Nakatomi",
    "Dunder",
]
SUFFIXES = [
    "Labs",
    "Systems",
    "Health",
    "Logistics",
    "Foods",
    "Energy",
    "Retail",
    "Media",
    "Bank",
    "Works",
]
ROLES = ["champion", "admin", "executive_sponsor", "end_user"]


def seed_portfolio(
    db: Engine,
    *,
    n: int = 240,
    seed: int = 7,
    today: date | None = None,
    org_id: str = "demo",
    prefix: str = "acc",
) -> int:
    """Create `n` accounts with contacts (and the org's demo users) when the org has
    none; returns accounts created."""
    today = today or date.today()
    rng = random.Random(seed)
    seed_demo_users(db, org_id)
    with transaction(db) as session:
        if count_accounts(session, org_id=org_id):
            return 0
        for i in range(n):
            r, acc = rng.random(), 0.0
            for segment, share, (arr_lo, arr_hi), (seat_lo, seat_hi) in SEGMENTS:
                acc += share
                if r <= acc:
                    break
            seats = rng.randint(seat_lo, seat_hi)
            at_risk = rng.random() < 0.15
            used = int(seats * (rng.uniform(0.45, 0.7) if at_risk else rng.uniform(0.7, 1.0)))
            account_id = f"{prefix}-{i + 1:04d}"
            name = f"{rng.choice(WORDS)} {rng.choice(SUFFIXES)} {i + 1}"
            domain = name.lower().replace(" ", "-") + ".example"
            account = Account(
                id=account_id,
                org_id=org_id,
                name=name,
                segment=segment,
                region=rng.choice(REGIONS),
                arr=round(rng.uniform(arr_lo, arr_hi), -2),
                seats_purchased=seats,
                seats_used=used,
                active_users_30d=int(
                    used * (rng.uniform(0.6, 0.8) if at_risk else rng.uniform(0.8, 1.0))
                ),
                logins_30d=used * rng.randint(5, 20),
                open_tickets=rng.randint(0, 3),
                p1_open=0,
                nps=rng.choice([None, 6, 7, 8, 9, 10]) if not at_risk else rng.choice([5, 6, 7]),
                sentiment=round(rng.uniform(-0.1, 0.6), 2),
                payment_failures_90d=0,
                renewal_date=today + timedelta(days=rng.randint(20, 365)),
                owner_csm=demo_user_id(org_id, rng.choice(CSMS)),
            )
            account.annual_cost_to_serve = round(account.arr * rng.uniform(0.12, 0.3), -2)
            session.add(account)
            # Most accounts got the pre-use notice of automated decision-making at signing.
            notice = datetime.combine(today, time(9), UTC) - timedelta(days=rng.randint(30, 700))
            has_notice = rng.random() < 0.95
            for j, role in enumerate(ROLES[: rng.randint(2, 4)]):
                session.add(
                    Contact(
                        id=f"{account_id}-c{j + 1}",
                        account_id=account_id,
                        name=f"{role.replace('_', ' ').title()} of {name.split()[0]}",
                        email=f"{role}@{domain}",
                        role=role,
                        timezone=rng.choice(TIMEZONES[account.region]),
                        opted_out=rng.random() < 0.05 and role != "champion",
                        notice_at=notice if has_notice else None,
                    )
                )
    # Health 2.0 needs usage history: 90 days of daily rollups, then a first full score.
    seed_history(db, org_id=org_id, today=today, seed=seed)
    rescore_all(db, today=today, org_id=org_id)
    seed_costs(db, org_id=org_id, today=today, seed=seed)
    return n


def seed_costs(db: Engine, *, org_id: str, today: date, seed: int = 7) -> int:
    """This quarter's people and platform costs per account (the CbR ledger's other
    entries): CSM hours at the segment's rate, support tickets, cloud, education."""
    rng = random.Random(seed + 1)
    start = datetime.combine(today, time(9), UTC) - timedelta(days=60)
    with transaction(db) as session:
        accounts = session.exec(select(Account).where(Account.org_id == org_id)).all()
        for a in accounts:
            hours = {"enterprise": 12, "mid_market": 5, "smb": 1.5, "tech_touch": 0.2}[
                a.segment
            ] * rng.uniform(0.5, 1.5)
            rate = LEDGER_RATES["csm_hourly"][a.segment]
            tickets = rng.randint(0, 6)
            for kind, amount, extra in (
                ("csm_labour", hours * rate, {"hours": round(hours, 2), "rate": rate}),
                ("support", tickets * LEDGER_RATES["ticket"][a.segment], {}),
                ("cloud", a.annual_cost_to_serve * 0.4 / 4, {}),
                ("education", rng.choice([0, 0, 25, 60]), {}),
            ):
                if amount:
                    session.add(
                        CostEntry(
                            org_id=org_id,
                            account_id=a.id,
                            kind=kind,
                            amount=round(amount, 2),
                            at=start + timedelta(days=rng.randint(0, 59)),
                            note="seeded",
                            **extra,
                        )
                    )
    return len(accounts)
