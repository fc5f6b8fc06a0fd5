"""Import accounts and contacts from CSV or JSON: every row validated first (typed
fields, the organisation's custom-field JSON schema), every error reported with its
row and field, and nothing written unless all rows are good."""

from __future__ import annotations

import csv
import json
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.engine import Engine
from sqlmodel import Session

from autopilot.runtime.store.accounts import Account, Contact
from autopilot.runtime.store.customer import CustomFieldSchema
from autopilot.runtime.store.db import transaction


class AccountRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64)
    name: str = Field(
        min_length=1, max_length=200, pattern=r"^[^\r\n]*$"
    )  # it reaches mail headers
    segment: Literal["enterprise", "mid_market", "smb", "tech_touch"]
    region: str = Field(min_length=2)
    tier: str = "standard"
    arr: float = Field(ge=0, le=1e12, allow_inf_nan=False)
    annual_cost_to_serve: float = Field(default=0.0, ge=0, le=1e12, allow_inf_nan=False)
    seats_purchased: int = Field(ge=0, le=10_000_000)
    seats_used: int = Field(default=0, ge=0, le=10_000_000)
    renewal_date: date
    owner_csm: str = Field(min_length=1)
    custom: dict[str, Any] = {}


class ContactRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64)
    account_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    role: Literal["champion", "admin", "executive_sponsor", "end_user"]
    seniority: Literal["ic", "manager", "director", "executive"] = "manager"
    region: str = ""
    timezone: str = "UTC"
    opted_out: bool = False
    notice_at: datetime | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        # The gate computes the contact's local hour: an unknown zone would fail every gate.
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone '{zone}'") from None
        return zone


class ImportFailed(ValueError):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__(
            "; ".join(f"row {e['row']}: {e['field']}: {e['msg']}" for e in errors[:5])
            + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else "")
        )


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(row number, raw row): CSV rows count from 2 (the header is row 1), JSON from 1.
    CSV columns `custom.<name>` become custom fields; empty cells are absent."""
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text())
        if not isinstance(data, list):
            raise ImportFailed(
                [{"row": 0, "field": "<file>", "msg": "a JSON import is a list of objects"}]
            )
        return list(enumerate(data, 1))
    out = []
    with path.open(
        newline="", encoding="utf-8-sig"
    ) as fh:  # a spreadsheet's BOM is not a column name
        for n, raw in enumerate(csv.DictReader(fh), 2):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                if value is None or value == "":
                    continue
                if key.startswith("custom."):
                    row.setdefault("custom", {})[key[7:]] = _scalar(value)
                else:
                    row[key] = value
            out.append((n, row))
    return out


def _scalar(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def set_custom_schema(db: Engine, org_id: str, schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    with transaction(db) as session:
        session.merge(CustomFieldSchema(org_id=org_id, json_schema=schema))


def import_file(
    db: Engine, path: Path, *, kind: Literal["accounts", "contacts"], org_id: str
) -> int:
    rows = read_rows(path)
    errors: list[dict[str, Any]] = []
    parsed: list[BaseModel] = []
    with Session(db) as session:
        schema = session.get(CustomFieldSchema, org_id)
        validator = jsonschema.Draft202012Validator(schema.json_schema) if schema else None
        seen: set[str] = set()
        for n, raw in rows:
            custom = raw.get("custom", {}) if isinstance(raw, dict) else {}
            if kind == "accounts" and validator is not None and isinstance(custom, dict):
                for e in validator.iter_errors(custom):
                    errors.append(
                        {
                            "row": n,
                            "field": ".".join(["custom", *map(str, e.absolute_path)]) or "custom",
                            "msg": e.message,
                        }
                    )
            try:
                item = (AccountRow if kind == "accounts" else ContactRow).model_validate(raw)
            except ValidationError as err:
                errors += [
                    {"row": n, "field": ".".join(map(str, e["loc"])) or "<row>", "msg": e["msg"]}
                    for e in err.errors()
                ]
                continue
            if item.id in seen:  # type: ignore[attr-defined]
                errors.append(
                    {"row": n, "field": "id", "msg": f"duplicate id {item.id} in the file"}
                )  # type: ignore[attr-defined]
            seen.add(item.id)  # type: ignore[attr-defined]
            if isinstance(item, ContactRow):
                account = session.get(Account, item.account_id)
                if account is None or account.org_id != org_id:
                    errors.append(
                        {
                            "row": n,
                            "field": "account_id",
                            "msg": f"unknown account {item.account_id}",
                        }
                    )
            parsed.append(item)
    if errors:
        raise ImportFailed(errors)
    with transaction(db) as session:  # all rows, or (on any database error) none
        for item in parsed:
            if isinstance(item, AccountRow):
                existing = session.get(Account, item.id)
                if existing is not None and existing.org_id != org_id:
                    raise ImportFailed(
                        [
                            {
                                "row": 0,
                                "field": "id",
                                "msg": f"{item.id} belongs to another organisation",
                            }
                        ]
                    )
                row = existing or Account(
                    id=item.id,
                    org_id=org_id,
                    active_users_30d=0,
                    logins_30d=0,
                    **item.model_dump(exclude={"id"}),
                )
                for k, v in item.model_dump(exclude={"id"}).items():
                    setattr(row, k, v)
                session.add(row)
            else:
                session.merge(Contact(**item.model_dump()))
    return len(parsed)
