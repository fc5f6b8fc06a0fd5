"""CLI output: rich text for people, one JSON object on stdout with --json."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn

from rich.console import Console

console = Console(stderr=False, highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def finish(code: int = 0) -> NoReturn:
    """Exit without interpreter teardown: a live Temporal client can abort there."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def fail(message: str, *, as_json: bool, code: int = 2) -> NoReturn:
    if as_json:
        emit_json({"ok": False, "error": message})
    else:
        err_console.print(f"[red]error:[/red] {message}")
    finish(code)
