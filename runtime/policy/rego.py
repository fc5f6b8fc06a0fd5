"""The in-process backend on regopy (the C++ rego-cpp), each bundle compiled once.

The fallback to regorus (regorus_engine.py): slower, but a second, independent
implementation. Bundles, reload and the fail-closed handling live in LocalEngine."""

from __future__ import annotations

import os
import queue
import re
from pathlib import Path
from typing import Any

import regopy

from autopilot.runtime.policy.bundle import bundle_data
from autopilot.runtime.policy.engine import (
    Compiled,
    LocalEngine,
    PolicyEvalError,
    PolicyLoadError,
    compiled_from,
    read_bundle,
)

__all__ = ["QUERY", "Compiled", "RegoEngine", "compile_bundle", "interpreter"]

QUERY = "x = data.autopilot.decision"


def _locate(err: Exception) -> str:
    """`file:line: message` from regopy's error tree (its positions are byte offsets)."""
    text = str(err)
    found = re.search(r"\(error \d+:([^|]+)\|(\d+)\|\d+\s+\(errormsg \d+:([^)]*)\)", text)
    return f"{found.group(1)}@{found.group(2)}: {found.group(3)}" if found else text[:300]


def interpreter() -> regopy.Interpreter:
    interp = regopy.Interpreter()
    interp.log_level = regopy.LogLevel.NONE  # errors come back as exceptions, not on our stdout
    return interp


def compile_bundle(folder: Path) -> Compiled:
    files = read_bundle(folder)
    interp = interpreter()
    for name, text in files.items():
        if name.endswith(".rego"):
            try:
                interp.add_module(name, text)
            except regopy.RegoError as err:
                raise PolicyLoadError(f"{folder / name}: {_line_message(text, err)}") from err
    try:
        # regopy cannot merge overlapping base documents itself: they are merged first.
        interp.add_data(bundle_data(files))
        bundle = interp.build(QUERY, [])
    except (regopy.RegoError, ValueError) as err:
        raise PolicyLoadError(f"policies under {folder} do not compile: {_locate(err)}") from err
    if not bundle.ok():
        raise PolicyLoadError(f"policies under {folder} do not compile")
    return compiled_from(files, bundle)


def _line_message(text: str, err: regopy.RegoError) -> str:
    found = re.search(r"\(error \d+:[^|]+\|(\d+)\|\d+\s+\(errormsg \d+:([^)]*)\)", str(err))
    if not found:
        return str(err)[:300]
    line = text.encode()[: int(found.group(1))].count(b"\n") + 1
    return f"line {line}: {found.group(2)}"


class RegoEngine(LocalEngine):
    def __init__(self, folder: Path, *, pool_size: int | None = None) -> None:
        # An interpreter is not thread-safe, but regopy's calls release the GIL: a small
        # pool lets concurrent gates use every core.
        self._pool: queue.SimpleQueue[regopy.Interpreter] = queue.SimpleQueue()
        for _ in range(pool_size or os.cpu_count() or 1):
            self._pool.put(interpreter())
        super().__init__(folder)

    def _compile(self, folder: Path) -> Compiled:
        return compile_bundle(folder)

    def _query(self, compiled: Compiled, payload: dict[str, Any], text: str) -> Any:
        interp = self._pool.get()
        try:
            interp.set_input(payload)  # pyright: ignore[reportArgumentType] - regopy takes any JSON value
            output = interp.query_bundle(compiled.bundle)
        except (regopy.RegoError, ValueError) as err:
            # ValueError: regopy reports some evaluation errors as a non-JSON output.
            raise PolicyEvalError(str(err)) from err
        finally:
            self._pool.put(interp)
        # Never str() a failed output (segfaults in regopy): check ok() first.
        if not output.ok():
            raise PolicyEvalError("regopy returned an error")
        if not output.results:
            return None  # undefined: parse_decision denies it
        bindings = output.results[0].__dict__.get("bindings") or {}
        return bindings.get("x")
