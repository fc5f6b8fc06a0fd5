"""The simulator's worlds: the default world is today's simulator draw for draw (the
demo, the benches and the shipped model's card depend on it), and each other world
moves the axis it names."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from autopilot.runtime.devstack.simulator import Portfolio, simulate
from autopilot.runtime.devstack.worlds import DEFAULT, WORLDS, world
from autopilot.runtime.health.features import WINDOW


def _fingerprint(p: Portfolio) -> str:
    h = hashlib.sha256()
    arrays = [p.segment.astype(str), p.seats_purchased, p.arr, p.seats_used, p.nps]
    arrays += [p.renewal_day, p.churn_day, *(p.signals[k] for k in sorted(p.signals))]
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


# Recorded from simulate() before worlds existed (commit 4e3d63e).
BEFORE_WORLDS = {
    (50, 300, 0): "6b735b788680790cb4eaf24a8adeebbf0dff1f3ac7765ec0c8672994897799f5",
    (40, 200, 11): "176fc9fc83b3cef297d9864c84d8add9c572dc30cd36540452a6944312317cb6",
}


@pytest.mark.parametrize("n,days,seed", list(BEFORE_WORLDS))
def test_the_default_world_reproduces_the_simulator_as_it_was(n: int, days: int, seed: int) -> None:
    assert _fingerprint(simulate(n, days=days, seed=seed)) == BEFORE_WORLDS[(n, days, seed)]
    assert _fingerprint(simulate(n, days=days, seed=seed, world=DEFAULT)) == BEFORE_WORLDS[
        (n, days, seed)
    ]


def test_the_demo_history_is_unchanged_with_given_segments_and_seats() -> None:
    """seed_history's call: no churners, fewer dips, the accounts' own segments and seats."""
    p0 = simulate(30, days=120, seed=7, churn_rate=0.0, dip_rate=0.1)
    assert _fingerprint(p0) == "3ee37c8282a36d0190e23689c78c6a544b1b98a52349965ea3497839f6b92848"
    first = simulate(20, days=90, seed=3)
    again = simulate(
        20, days=90, seed=9, churn_rate=0.0, dip_rate=0.1, segment=first.segment,
        seats=first.seats_purchased,
    )
    assert _fingerprint(again) == "67b3e376ce01ade00f533d6c0f4696f97b6b59bf7879c91760d04ee68203e081"


def _churners(p: Portfolio) -> np.ndarray:
    return np.flatnonzero(p.churn_day >= 0)


def test_each_world_moves_the_axis_it_names() -> None:
    n, days = 600, 400
    p = {name: simulate(n, days=days, seed=4, world=w) for name, w in WORLDS.items()}
    assert len(WORLDS) >= 5
    # Monthly plans: the renewal comes round every 30 days, and churners leave on one.
    dtr = np.stack([p["monthly"].windows(d).days_to_renewal for d in range(WINDOW - 1, days)])
    assert dtr.min() >= 0 and dtr.max() <= 29
    m = p["monthly"]
    c = _churners(m)
    assert np.all((m.churn_day[c] - m.renewal_day[c]) % 30 == 0)
    # Any time vs at renewal (annual plans): hardly a churner leaves on its renewal day.
    a = p["anytime"]
    at_renewal = a.next_renewal(0)[_churners(a)] % 365 == a.churn_day[_churners(a)] % 365
    assert at_renewal.mean() < 0.05
    # Sudden: usage 30 days before churn is still what it was 90 days before.
    def drop(q: Portfolio) -> float:
        c = [i for i in _churners(q) if q.churn_day[i] >= WINDOW + 1]
        late = [q.signals["logins"][i, q.churn_day[i] - 30 : q.churn_day[i] - 10].mean() for i in c]
        early = [q.signals["logins"][i, q.churn_day[i] - 90 : q.churn_day[i] - 70].mean() for i in c]
        return float(np.mean(late) / np.mean(early))

    assert drop(p["sudden"]) > 0.9 > 0.7 > drop(p["default"])
    # Sparse usage: a fraction of the logins of the same portfolio, dense.
    assert p["sparse"].signals["logins"].sum() < 0.3 * p["anytime"].signals["logins"].sum()
    # Churn base rates.
    rates = {k: float((v.churn_day >= 0).mean()) for k, v in p.items()}
    assert rates["low_churn"] < 0.1 < 0.3 < rates["high_churn"]


def test_an_unknown_world_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="world"):
        world("atlantis")
