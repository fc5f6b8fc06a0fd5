"""A small reference CRM over HTTP JSON (accounts with fields, opportunities, renewal
forecast, notes), for the demo and the connector tests. It honours `Idempotency-Key`:
a repeated write returns the first response and changes nothing."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel


class FieldsPatch(BaseModel):
    fields: dict[str, Any]


class Note(BaseModel):
    text: str


class Forecast(BaseModel):
    renewal_probability: float
    forecast_arr: float


def create_crm_app(token: str = "") -> FastAPI:
    app = FastAPI(title="Reference CRM")
    lock = threading.Lock()
    accounts: dict[str, dict[str, Any]] = {}
    replies: dict[str, dict[str, Any]] = {}
    app.state.accounts, app.state.writes = accounts, []

    def account(account_id: str) -> dict[str, Any]:
        return accounts.setdefault(
            account_id,
            {"id": account_id, "fields": {}, "notes": [], "opportunities": [], "forecast": None},
        )

    def check(auth: str | None) -> None:
        if token and auth != f"Bearer {token}":
            raise HTTPException(401, "bad token")

    def once(key: str | None, apply: Any) -> dict[str, Any]:
        with lock:
            if key and key in replies:
                return replies[key]
            reply = apply()
            app.state.writes.append(
                {"key": key, "at": datetime.now(UTC).isoformat(), "reply": reply}
            )
            if key:
                replies[key] = reply
            return reply

    @app.get("/accounts/{account_id}")
    def get_account(account_id: str, authorization: str | None = Header(None)) -> dict[str, Any]:
        check(authorization)
        with lock:
            return dict(account(account_id))

    @app.patch("/accounts/{account_id}")
    def patch_account(
        account_id: str,
        body: FieldsPatch,
        authorization: str | None = Header(None),
        idempotency_key: str | None = Header(None),
    ) -> dict[str, Any]:
        check(authorization)

        def apply() -> dict[str, Any]:
            acc = account(account_id)
            previous = {k: acc["fields"].get(k) for k in body.fields}
            acc["fields"].update(body.fields)
            return {"id": account_id, "fields": dict(acc["fields"]), "previous": previous}

        return once(idempotency_key, apply)

    @app.post("/accounts/{account_id}/notes", status_code=201)
    def add_note(
        account_id: str,
        note: Note,
        authorization: str | None = Header(None),
        idempotency_key: str | None = Header(None),
    ) -> dict[str, Any]:
        check(authorization)
        return once(
            idempotency_key, lambda: account(account_id)["notes"].append(note.text) or {"ok": True}
        )

    @app.put("/accounts/{account_id}/forecast")
    def put_forecast(
        account_id: str,
        forecast: Forecast,
        authorization: str | None = Header(None),
        idempotency_key: str | None = Header(None),
    ) -> dict[str, Any]:
        check(authorization)

        def apply() -> dict[str, Any]:
            acc = account(account_id)
            previous, acc["forecast"] = acc["forecast"], forecast.model_dump()
            return {"id": account_id, "forecast": acc["forecast"], "previous": previous}

        return once(idempotency_key, apply)

    @app.delete("/accounts/{account_id}/forecast")
    def delete_forecast(
        account_id: str,
        authorization: str | None = Header(None),
        idempotency_key: str | None = Header(None),
    ) -> dict[str, Any]:
        check(authorization)

        def apply() -> dict[str, Any]:
            acc = account(account_id)
            previous, acc["forecast"] = acc["forecast"], None
            return {"id": account_id, "forecast": None, "previous": previous}

        return once(idempotency_key, apply)

    @app.get("/accounts/{account_id}/opportunities")
    def opportunities(
        account_id: str, authorization: str | None = Header(None)
    ) -> list[dict[str, Any]]:
        check(authorization)
        return list(account(account_id)["opportunities"])

    return app
