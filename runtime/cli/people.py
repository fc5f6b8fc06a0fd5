"""Who a CLI command acts as (`--as USER`): their roles and book apply."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from autopilot.runtime.cli.output import fail
from autopilot.runtime.config import get_settings


def principal_of(user_id: str, as_json: bool) -> Any:
    from sqlmodel import Session

    from autopilot.runtime.auth.users import principal
    from autopilot.runtime.store.db import make_engine
    from autopilot.runtime.store.users import User

    with Session(make_engine(get_settings().db_url)) as session:
        user = session.get(User, user_id)
    if user is None or not user.active:
        fail(f"no active user {user_id}", as_json=as_json)
    return principal(user)


AsOpt = Annotated[
    str, typer.Option("--as", help="the user you act as (their roles and book apply)")
]
