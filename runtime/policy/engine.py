"""Policy engine: Rego evaluated in-process with regopy, compiled once per bundle.

Fail closed: a compile error, an evaluation error, an undefined or malformed result,
or a bundle other than the one the run pinned is a deny, never an allow."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import regopy
from pydantic import ValidationError

from autopilot.runtime.contracts.policy import Decision, PolicyInput
from autopilot.runtime.hashing import sha256_hex

QUERY = "x = data.autopilot.decision"
UNAVAILABLE = "policy.unavailable"
BUNDLE_MISMATCH = "policy.bundle_mismatch"


class PolicyEngine(Protocol):
    @property
    def bundle_hash(self) -> str: ...

    def decide(self, policy_input: PolicyInput, *, pinned_bundle: str | None = None) -> Decision: ...


class PolicyLoadError(RuntimeError):
    pass


def bundle_files(folder: Path) -> dict[str, str]:
    """Every .rego module and data.json under `folder`, by relative path (tests excluded)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".rego" and not path.name.endswith("_test.rego") or path.name == "data.json":
            files[path.relative_to(folder).as_posix()] = path.read_text()
    return files


def compute_bundle_hash(folder: Path) -> str:
    return sha256_hex(bundle_files(folder))


@dataclass(frozen=True)
class _Compiled:
    bundle: Any
    hash: str


def _compile(folder: Path) -> _Compiled:
    files = bundle_files(folder)
    if not any(name.endswith(".rego") for name in files):
        raise PolicyLoadError(f"no .rego modules under {folder}")
    interp = regopy.Interpreter()
    try:
        for name, text in files.items():
            if name.endswith(".rego"):
                interp.add_module(name, text)
            else:
                # Like an OPA bundle: data.json in folder a/b is mounted at data.a.b.
                doc: Any = json.loads(text)
                for part in reversed(Path(name).parent.parts):
                    doc = {part: doc}
                interp.add_data(doc)
        bundle = interp.build(QUERY, [])
    except (regopy.RegoError, json.JSONDecodeError) as err:
        raise PolicyLoadError(f"policies under {folder} do not compile: {str(err)[:400]}") from err
    if not bundle.ok():
        raise PolicyLoadError(f"policies under {folder} do not compile")
    return _Compiled(bundle=bundle, hash=sha256_hex(files))


class RegoEngine:
    """In-process engine. Bundles stay addressable by hash, so a run pinned to an
    older bundle is still judged by it after a reload."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._lock = threading.Lock()  # one regopy interpreter is not thread-safe
        self._interp = regopy.Interpreter()
        compiled = _compile(folder)
        self._current = compiled
        self._bundles: dict[str, _Compiled] = {compiled.hash: compiled}

    @property
    def bundle_hash(self) -> str:
        return self._current.hash

    def reload(self) -> str:
        """Recompile if the files changed; the swap is atomic and a bad edit keeps the old bundle."""
        new_hash = compute_bundle_hash(self._folder)
        if new_hash != self._current.hash:
            compiled = _compile(self._folder)
            with self._lock:
                self._bundles[compiled.hash] = compiled
                self._current = compiled
        return self._current.hash

    def decide(self, policy_input: PolicyInput, *, pinned_bundle: str | None = None) -> Decision:
        payload = policy_input.model_dump(mode="json")
        input_hash = sha256_hex(payload)
        compiled = self._bundles.get(pinned_bundle or self._current.hash)
        if compiled is None:
            return Decision.fail_closed(
                BUNDLE_MISMATCH,
                f"the run pinned policy bundle {pinned_bundle}, which this worker does not hold",
                bundle_hash=self._current.hash,
                input_hash=input_hash,
            )
        with self._lock:
            try:
                self._interp.set_input(payload)
                output = self._interp.query_bundle(compiled.bundle)
            except (regopy.RegoError, ValueError) as err:
                # ValueError: regopy reports some evaluation errors as a non-JSON output.
                return Decision.fail_closed(UNAVAILABLE, f"policy evaluation failed: {str(err)[:200]}",
                                            bundle_hash=compiled.hash, input_hash=input_hash)
            # Never str() a failed output (segfaults in regopy): check ok() first.
            if not output.ok() or not output.results:
                return Decision.fail_closed(UNAVAILABLE, "policy evaluation returned an error",
                                            bundle_hash=compiled.hash, input_hash=input_hash)
            bindings = output.results[0].__dict__.get("bindings") or {}
        return parse_decision(bindings.get("x"), bundle_hash=compiled.hash, input_hash=input_hash)


def parse_decision(raw: Any, *, bundle_hash: str, input_hash: str) -> Decision:
    """The same contract check for every backend: anything malformed is a deny."""
    if not isinstance(raw, dict):
        return Decision.fail_closed(UNAVAILABLE, "policy decision is undefined",
                                    bundle_hash=bundle_hash, input_hash=input_hash)
    try:
        decision = Decision.model_validate({**raw, "bundle_hash": bundle_hash, "input_hash": input_hash})
    except ValidationError as err:
        return Decision.fail_closed(UNAVAILABLE, f"policy decision is malformed: {err.error_count()} error(s)",
                                    bundle_hash=bundle_hash, input_hash=input_hash)
    if decision.allow and decision.deny:
        return Decision.fail_closed(UNAVAILABLE, "policy decision allows and denies at once",
                                    bundle_hash=bundle_hash, input_hash=input_hash)
    return decision
