"""The policy data documents' schema: every package's data.json is validated at load,
strictly (a limit written as "0" is not a number, a list is not an object), so a bad
edit is refused with its file and field and the engine keeps the last good bundle.
`policies/data.schema.json` is generated from these models for editors and OPA users:
`python -c "import json; from autopilot.runtime.policy.schema import json_schema;
print(json.dumps(json_schema(), indent=2, sort_keys=True))" > policies/data.schema.json`."""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from autopilot.runtime.policy.engine import PolicyLoadError

Money = Field(ge=0, allow_inf_nan=False)
Pct = Field(ge=0, le=100, allow_inf_nan=False)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SegmentBudget(_Strict):
    account_quarter_pct_of_arr: float = Pct
    segment_quarter_budget: float = Money


class Budget(_Strict):
    segments: dict[str, SegmentBudget]


class Contact(_Strict):
    high_touch_per_quarter: int = Field(ge=0)
    high_touch_max_hours: float = Field(ge=0, allow_inf_nan=False)
    cooldown_hours: float = Field(ge=0, allow_inf_nan=False)
    quiet_start_hour: int = Field(ge=0, le=23)
    quiet_end_hour: int = Field(ge=0, le=23)


class SegmentDiscount(_Strict):
    cap_pct: float = Pct
    auto_approve_pct: float = Pct
    margin_floor: float = Field(ge=0, le=1, allow_inf_nan=False)


class Discount(_Strict):
    segments: dict[str, SegmentDiscount]
    term_bonus_pct: dict[str, float]


class ApprovalRole(_Strict):
    sla_hours: float = Field(gt=0, allow_inf_nan=False)
    escalate_to: str


class Approval(_Strict):
    csm_arr: float = Money
    vp_arr: float = Money
    finance_discount_pct: float = Pct
    manager_spend: float = Money
    finance_spend: float = Money
    roles: dict[str, ApprovalRole]


class Residency(_Strict):
    allowed: dict[str, list[str]]


LIMITS: dict[str, type[_Strict]] = {
    "autopilot/budget": Budget,
    "autopilot/contact": Contact,
    "autopilot/discount": Discount,
    "autopilot/approval": Approval,
    "autopilot/residency": Residency,
}


def validate_data(files: dict[str, str]) -> None:
    """Every data.json of a bundle (by relative path) against its package's schema, and
    across packages: every segment with a budget has a discount cap (a missing segment
    would silently switch the cap and margin-floor rules off for it)."""
    parsed: dict[str, _Strict] = {}
    for name, text in files.items():
        if not name.endswith("data.json"):
            continue
        package = str(PurePosixPath(name).parent)
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise PolicyLoadError(f"{name}: line {err.lineno}: {err.msg}") from err
        model = LIMITS.get(package)
        if not isinstance(doc, dict) or set(doc) != {"limits"}:
            raise PolicyLoadError(
                f"{name}: limits: the document must be an object with one key, `limits`"
            )
        if model is None:
            raise PolicyLoadError(f"{name}: no schema for package {package}")
        try:
            parsed[package] = model.model_validate(doc["limits"])
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in ("limits", *first["loc"]))
            raise PolicyLoadError(f"{name}: {field}: {first['msg']}") from err
    budget, discount = parsed.get("autopilot/budget"), parsed.get("autopilot/discount")
    missing = (
        sorted(set(budget.segments) - set(discount.segments))
        if isinstance(budget, Budget) and isinstance(discount, Discount)
        else []
    )
    if missing:
        raise PolicyLoadError(
            f"autopilot/discount/data.json: limits.segments: no discount limits for {', '.join(missing)}"
        )


def json_schema() -> dict[str, Any]:
    """One JSON Schema per package's data.json, keyed by package path."""
    return {
        package: {
            "type": "object",
            "properties": {"limits": model.model_json_schema()},
            "required": ["limits"],
            "additionalProperties": False,
        }
        for package, model in LIMITS.items()
    }
