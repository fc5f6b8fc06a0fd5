"""The in-process backend: Rego evaluated with regopy, each bundle compiled once.

Bundles stay addressable by hash, so a run pinned to an older bundle is still
judged by it after a reload."""

from __future__ import annotations

import os
import queue
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import regopy

from autopilot.runtime.contracts.hashing import sha256_hex
from autopilot.runtime.contracts.policy import Decision
from autopilot.runtime.policy.bundle import bundle_data, bundle_files, compute_bundle_hash
from autopilot.runtime.policy.engine import (
    BUNDLE_MISMATCH,
    UNAVAILABLE,
    PolicyLoadError,
    parse_decision,
)
from autopilot.runtime.policy.schema import validate_data

QUERY = "x = data.autopilot.decision"


@dataclass(frozen=True)
class Compiled:
    bundle: Any
    hash: str
    data: dict[str, Any]  # the bundle's data documents, for the limits reader


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
    files = bundle_files(folder)
    validate_data(files)
    if not any(name.endswith(".rego") for name in files):
        raise PolicyLoadError(f"no .rego modules under {folder}")
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
    return Compiled(bundle=bundle, hash=sha256_hex(files), data=bundle_data(files))


def _line_message(text: str, err: regopy.RegoError) -> str:
    found = re.search(r"\(error \d+:[^|]+\|(\d+)\|\d+\s+\(errormsg \d+:([^)]*)\)", str(err))
    if not found:
        return str(err)[:300]
    line = text.encode()[: int(found.group(1))].count(b"\n") + 1
    return f"line {line}: {found.group(2)}"


class RegoEngine:
    def __init__(self, folder: Path, *, pool_size: int | None = None) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        # An interpreter is not thread-safe, but regopy's calls release the GIL: a small
        # pool lets concurrent gates use every core.
        self._pool: queue.SimpleQueue[regopy.Interpreter] = queue.SimpleQueue()
        for _ in range(pool_size or os.cpu_count() or 1):
            self._pool.put(interpreter())
        self._current = compile_bundle(folder)
        self._bundles: dict[str, Compiled] = {self._current.hash: self._current}

    @property
    def bundle_hash(self) -> str:
        return self._current.hash

    def reload(self) -> str:
        """Recompile if the files changed; the swap is atomic and a bad edit keeps the old bundle."""
        if compute_bundle_hash(self.folder) != self._current.hash:
            compiled = compile_bundle(self.folder)
            with self._lock:
                self._bundles[compiled.hash] = compiled
                self._current = compiled
        return self._current.hash

    def data(self, path: str) -> Any:
        """A data document of the loaded bundle, e.g. `autopilot/budget/limits` (None if absent)."""
        node: Any = self._current.data
        for part in path.split("/"):
            node = node.get(part) if isinstance(node, dict) else None
        return node

    def evaluate(self, payload: dict[str, Any], *, pinned_bundle: str | None = None) -> Decision:
        input_hash = sha256_hex(payload)
        compiled = self._bundles.get(pinned_bundle or self._current.hash)
        if compiled is None:
            return Decision.fail_closed(
                BUNDLE_MISMATCH,
                f"the run pinned policy bundle {pinned_bundle}, which this worker does not hold",
                bundle_hash=self._current.hash,
                input_hash=input_hash,
            )
        interp = self._pool.get()
        try:
            interp.set_input(payload)  # pyright: ignore[reportArgumentType] - regopy takes any JSON value
            output = interp.query_bundle(compiled.bundle)
        except (regopy.RegoError, ValueError) as err:
            # ValueError: regopy reports some evaluation errors as a non-JSON output.
            return Decision.fail_closed(
                UNAVAILABLE,
                f"policy evaluation failed: {str(err)[:200]}",
                bundle_hash=compiled.hash,
                input_hash=input_hash,
            )
        finally:
            self._pool.put(interp)
        # Never str() a failed output (segfaults in regopy): check ok() first.
        if not output.ok() or not output.results:
            return Decision.fail_closed(
                UNAVAILABLE,
                "policy evaluation returned an error",
                bundle_hash=compiled.hash,
                input_hash=input_hash,
            )
        bindings = output.results[0].__dict__.get("bindings") or {}
        return parse_decision(bindings.get("x"), bundle_hash=compiled.hash, input_hash=input_hash)
