"""The one reader of policy limits: budgets, contact caps and discount caps as the
active bundle holds them (in-process or on the OPA server), typed. The optimizer,
the ledger's views and the manager view read limits here, never from files."""

from __future__ import annotations

import threading

from pydantic import BaseModel, ConfigDict, ValidationError

from autopilot.runtime.policy.engine import PolicyEngine, PolicyLoadError


class _Limits(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SegmentBudget(_Limits):
    account_quarter_pct_of_arr: float
    segment_quarter_budget: float


class SegmentDiscount(_Limits):
    cap_pct: float
    auto_approve_pct: float
    margin_floor: float


class ContactLimits(_Limits):
    high_touch_per_quarter: int
    high_touch_max_hours: float
    cooldown_hours: float


class PolicyLimits(_Limits):
    bundle_hash: str
    budget: dict[str, SegmentBudget]
    discount: dict[str, SegmentDiscount]
    contact: ContactLimits

    def account_budget(self, segment: str, arr: float) -> float:
        """This quarter's action budget of one account: the segment's share of its ARR."""
        seg = self.budget.get(segment)
        return seg.account_quarter_pct_of_arr * arr / 100 if seg else 0.0


_cache: dict[int, PolicyLimits] = {}
_lock = threading.Lock()


def read_limits(engine: PolicyEngine) -> PolicyLimits:
    """The active bundle's limits (read once per bundle and engine)."""
    with _lock:
        cached = _cache.get(id(engine))
        if cached is not None and cached.bundle_hash == engine.bundle_hash:
            return cached
    try:
        limits = PolicyLimits(
            bundle_hash=engine.bundle_hash,
            budget=(engine.data("autopilot/budget/limits") or {}).get("segments", {}),
            discount=(engine.data("autopilot/discount/limits") or {}).get("segments", {}),
            contact=ContactLimits.model_validate(engine.data("autopilot/contact/limits") or {}),
        )
    except ValidationError as err:
        raise PolicyLoadError(f"the policy limits are malformed: {err.errors()[0]['loc']}") from err
    with _lock:
        _cache[id(engine)] = limits
    return limits
