"""The one action catalogue (catalogue.json): what each kind of action costs, what it
is expected to do per segment, its channel and its contact class. The planner prices
its proposals here and the optimizer chooses among the same entries, so the inbox
never shows two prices for one action."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from autopilot.runtime.ledger.cbr import LEDGER_RATES


@dataclass(frozen=True)
class CatalogueAction:
    name: str
    tool: str
    channel: str
    category: str
    fixed_cost: float
    hours: float
    discount_pct: float
    high_touch: bool
    contacts: int
    group: str | None
    retention: dict[str, float]
    adoption: dict[str, float]
    expansion: dict[str, float] = field(default_factory=dict)

    @property
    def effective(self) -> bool:
        """An action with an expected effect (bookkeeping such as CRM updates has none)."""
        return (
            any(self.retention.values())
            or any(self.adoption.values())
            or any(self.expansion.values())
        )


@cache
def load_catalogue() -> list[CatalogueAction]:
    raw = json.loads(
        (resources.files("autopilot.runtime.optimizer") / "catalogue.json").read_text()
    )
    return [
        CatalogueAction(
            name=a["name"],
            tool=a["tool"],
            channel=a["channel"],
            category=a["category"],
            fixed_cost=a.get("fixed_cost", 0.0),
            hours=a.get("hours", 0.0),
            discount_pct=a.get("discount_pct", 0.0),
            high_touch=a["high_touch"],
            contacts=a["contacts"],
            group=a.get("group"),
            retention=a["retention"],
            adoption=a["adoption"],
            expansion=a.get("expansion", {}),
        )
        for a in raw["actions"]
    ]


def entry(name: str) -> CatalogueAction:
    found = next((a for a in load_catalogue() if a.name == name), None)
    if found is None:
        raise KeyError(f"no action '{name}' in the catalogue")
    return found


def discount_entry(pct: float) -> CatalogueAction:
    """The catalogue's discount offer closest to `pct` (its effect prices an offer of `pct`)."""
    offers = [a for a in load_catalogue() if a.group == "discount"]
    return min(offers, key=lambda a: abs(a.discount_pct - pct))


def cost_of(
    a: CatalogueAction, *, segment: str, arr: float, discount_pct: float | None = None
) -> float:
    pct = a.discount_pct if discount_pct is None else discount_pct
    return round(a.fixed_cost + a.hours * LEDGER_RATES["csm_hourly"][segment] + arr * pct / 100, 2)
