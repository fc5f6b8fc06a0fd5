"""`autopilot db …`: the store's schema revision, and migrating it.

Every process that opens the store migrates it on start; `db upgrade` does it ahead
of a deploy, `db current` says where a database stands without touching it."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy import make_url

from autopilot.runtime.cli.output import console, emit_json, fail, finish
from autopilot.runtime.config import get_settings

app = typer.Typer(no_args_is_help=True, help="The store's schema: current revision, upgrade.")
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]


def _where() -> tuple[str, str]:
    url = get_settings().db_url
    return url, make_url(url).render_as_string(hide_password=True)


@app.command()
def current(as_json: JsonOpt = False) -> None:
    """The revision the database is at and the newest one this version ships (read only)."""
    from sqlalchemy.exc import SQLAlchemyError

    from autopilot.runtime.store import migrations
    from autopilot.runtime.store.db import connect

    url, shown = _where()
    engine = connect(url)
    try:
        at = migrations.current(engine)
    except SQLAlchemyError as err:
        fail(f"cannot read {shown}: {err}", as_json=as_json, code=1)
    finally:
        engine.dispose()
    head = migrations.head()
    out = {"ok": True, "database": shown, "current": at, "head": head, "up_to_date": at == head}
    if as_json:
        emit_json(out)
    else:
        state = "up to date" if at == head else f"behind (newest: {head})"
        console.print(f"{shown}: {at or 'not migrated'} — {state}")
    finish(0)


@app.command()
def upgrade(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
    as_json: JsonOpt = False,
) -> None:
    """Apply the missing migrations (a store made before migrations is stamped first)."""
    from sqlalchemy.exc import SQLAlchemyError

    from autopilot.runtime.store import migrations
    from autopilot.runtime.store.db import connect

    url, shown = _where()
    engine = connect(url)
    try:
        before = migrations.current(engine)
        after = migrations.upgrade(engine, revision)
    except SQLAlchemyError as err:
        fail(f"cannot migrate {shown}: {err}", as_json=as_json, code=1)
    finally:
        engine.dispose()
    out = {"ok": True, "database": shown, "from": before, "to": after}
    if as_json:
        emit_json(out)
    else:
        console.print(f"{shown}: {before or 'not migrated'} → {after}")
    finish(0)


@app.command()
def revision(
    message: Annotated[str, typer.Option("-m", "--message", help="what the revision changes")],
) -> None:
    """(Developers) Write a new revision from the table models' difference to the newest one."""
    import tempfile
    from pathlib import Path

    from alembic import command

    from autopilot.runtime.store import migrations
    from autopilot.runtime.store.db import connect

    with tempfile.TemporaryDirectory() as folder:
        engine = connect(f"sqlite:///{Path(folder) / 'head.db'}")
        migrations.upgrade(engine)
        with engine.begin() as conn:
            script = command.revision(migrations.config(conn), message=message, autogenerate=True)
        engine.dispose()
    path = script.path if script is not None and not isinstance(script, list) else "?"
    console.print(f"wrote {path}: check it, then run it on SQLite and Postgres")
    finish(0)
