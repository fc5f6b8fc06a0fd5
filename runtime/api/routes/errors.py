"""The API's one error shape, and the OpenAPI `responses=` that document it route by
route, so that a client knows every 4xx it may be answered before it meets one."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class FieldError(BaseModel):
    loc: list[str | int]  # where: ["body", "items", 0, "payload_hash"], ["query", "limit"]
    msg: str
    type: str


class ErrorOut(BaseModel):
    """Every error: `detail` is a sentence, or for invalid input (422) one entry per field."""

    detail: str | list[FieldError]


_WHY = {
    401: "No API token or session, or one that is unknown, expired or revoked.",
    403: "Your roles may not do this.",
    404: "No such item, or none that you may see.",
    409: "It conflicts with the item's state: already decided or resolved, a stale "
    "payload hash, or a run that no longer accepts it.",
    422: "Invalid input, or a body that is not JSON: `detail` names each field and "
    "what is wrong with it.",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "schema": {"type": "string"},
            "required": True,
            "description": "Bearer: send `Authorization: Bearer <token>`.",
        }
    },
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for these status codes, each with the error shape."""
    return {
        code: {"model": ErrorOut, "description": _WHY[code]}
        | ({"headers": _HEADERS[code]} if code in _HEADERS else {})
        for code in codes
    }
