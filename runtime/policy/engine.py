"""The policy engine interface, shared by every backend (in-process regorus or regopy,
remote OPA), and the base the in-process backends share.

Fail closed: a compile error, an evaluation error or timeout, an undefined or
malformed result, or a bundle other than the one the run pinned is a deny."""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from autopilot.runtime.contracts.hashing import canonical_json, sha256_hex
from autopilot.runtime.contracts.policy import Decision, PolicyInput
from autopilot.runtime.policy.bundle import bundle_data, bundle_files, compute_bundle_hash

UNAVAILABLE = "policy.unavailable"
BUNDLE_MISMATCH = "policy.bundle_mismatch"
INPUT_INVALID = "input.invalid"
MAX_DECISION_BYTES = 64 * 1024


class PolicyLoadError(RuntimeError):
    """The policies do not compile; the message names file and line where the engine can."""


class PolicyEngine(Protocol):
    @property
    def bundle_hash(self) -> str: ...

    def evaluate(self, payload: dict[str, Any], *, pinned_bundle: str | None = None) -> Decision:
        """Evaluate an already-validated input (a JSON object)."""
        ...

    def reload(self) -> str: ...

    def data(self, path: str) -> Any:
        """A data document of the active bundle (`autopilot/budget/limits`); None if absent."""
        ...


class PolicyEvalError(RuntimeError):
    """An in-process evaluation failed; the engine turns it into a fail-closed deny."""


class DecisionJson(str):
    """A decision as the engine's own JSON text (what `_query` may return instead of the
    parsed value): checked straight from the text, without a round trip through dicts."""


@dataclass(frozen=True)
class Compiled:
    bundle: Any  # the backend's compiled form
    hash: str
    data: dict[str, Any]  # the bundle's data documents, for the limits reader
    files: dict[str, str]  # the sources, kept by hash in the store for replay


def read_bundle(folder: Path) -> dict[str, str]:
    """The bundle's files, checked before any backend compiles them."""
    # Imported here: the schema module imports this one for PolicyLoadError.
    from autopilot.runtime.policy.schema import validate_data  # noqa: PLC0415

    files = bundle_files(folder)
    validate_data(files)
    if not any(name.endswith(".rego") for name in files):
        raise PolicyLoadError(f"no .rego modules under {folder}")
    return files


BundleListener = Callable[[str, dict[str, str]], None]


class LocalEngine(ABC):
    """What every in-process backend shares, so they keep one contract: bundles
    addressable by hash (a run pinned to an older bundle is still judged by it), an
    atomic hot reload that keeps the last good bundle, one load hook, and the
    fail-closed handling of every evaluation outcome. A backend only compiles and
    queries."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._current = self._compile(folder)
        self._bundles: dict[str, Compiled] = {self._current.hash: self._current}
        self._listeners: list[BundleListener] = []

    @abstractmethod
    def _compile(self, folder: Path) -> Compiled:
        """Compile the folder's bundle, or raise PolicyLoadError naming file and line."""

    @abstractmethod
    def _query(self, compiled: Compiled, payload: dict[str, Any], text: str) -> Any:
        """data.autopilot.decision for `payload` (None if undefined), or its JSON text as a
        DecisionJson; PolicyEvalError on failure. `text` is the payload as canonical
        JSON, for engines that read JSON."""

    def on_load(self, listener: BundleListener) -> None:
        """Call `listener(hash, files)` with the bundle in force and each one loaded later."""
        self._listeners.append(listener)
        listener(self._current.hash, self._current.files)

    @property
    def bundle_hash(self) -> str:
        return self._current.hash

    def reload(self) -> str:
        """Recompile if the files changed; the swap is atomic and a bad edit keeps the old bundle."""
        if compute_bundle_hash(self.folder) != self._current.hash:
            compiled = self._compile(self.folder)
            with self._lock:
                self._bundles[compiled.hash] = compiled
                self._current = compiled
            for listener in self._listeners:
                listener(compiled.hash, compiled.files)
        return self._current.hash

    def data(self, path: str) -> Any:
        """A data document of the loaded bundle, e.g. `autopilot/budget/limits` (None if absent)."""
        node: Any = self._current.data
        for part in path.split("/"):
            node = node.get(part) if isinstance(node, dict) else None
        return node

    def evaluate(self, payload: dict[str, Any], *, pinned_bundle: str | None = None) -> Decision:
        text = canonical_json(payload)  # serialised once: hashed here, read by JSON engines
        input_hash = sha256_hex(text.encode())
        compiled = self._bundles.get(pinned_bundle or self._current.hash)
        if compiled is None:
            return Decision.fail_closed(
                BUNDLE_MISMATCH,
                f"the run pinned policy bundle {pinned_bundle}, which this worker does not hold",
                bundle_hash=self._current.hash,
                input_hash=input_hash,
            )
        try:
            raw = self._query(compiled, payload, text)
        except PolicyEvalError as err:
            return Decision.fail_closed(
                UNAVAILABLE,
                f"policy evaluation failed: {str(err)[:200]}",
                bundle_hash=compiled.hash,
                input_hash=input_hash,
            )
        if isinstance(raw, DecisionJson):
            return parse_decision_json(raw, bundle_hash=compiled.hash, input_hash=input_hash)
        return parse_decision(raw, bundle_hash=compiled.hash, input_hash=input_hash)


def compiled_from(files: dict[str, str], bundle: Any) -> Compiled:
    return Compiled(bundle=bundle, hash=sha256_hex(files), data=bundle_data(files), files=files)


def decide(
    engine: PolicyEngine, policy_input: PolicyInput, *, pinned_bundle: str | None = None
) -> Decision:
    return engine.evaluate(policy_input.model_dump(mode="json"), pinned_bundle=pinned_bundle)


def decide_raw(engine: PolicyEngine, payload: Any, *, pinned_bundle: str | None = None) -> Decision:
    """Validate a raw input against the PolicyInput schema, then evaluate; invalid is a deny."""
    try:
        policy_input = PolicyInput.model_validate(payload)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "<input>"
        return Decision.fail_closed(
            INPUT_INVALID,
            f"{field}: {first['msg']}",
            bundle_hash=engine.bundle_hash,
            input_hash=sha256_hex(payload),
        )
    return decide(engine, policy_input, pinned_bundle=pinned_bundle)


def parse_decision(raw: Any, *, bundle_hash: str, input_hash: str) -> Decision:
    """The same contract check for every backend: anything malformed is a deny."""
    if not isinstance(raw, dict):
        return Decision.fail_closed(
            UNAVAILABLE,
            "policy decision is undefined",
            bundle_hash=bundle_hash,
            input_hash=input_hash,
        )
    text = json.dumps({**raw, "bundle_hash": bundle_hash, "input_hash": input_hash})
    if len(text) > MAX_DECISION_BYTES:
        # A decision must fit a workflow payload and a log row: past the bound it is a deny.
        return Decision.fail_closed(
            UNAVAILABLE,
            f"policy decision is {len(text)} bytes, over {MAX_DECISION_BYTES}",
            bundle_hash=bundle_hash,
            input_hash=input_hash,
        )
    try:
        # Strict: "yes" is not a boolean here, and nothing is coerced into an allow.
        decision = Decision.model_validate_json(text, strict=True)
    except ValidationError as err:
        return Decision.fail_closed(
            UNAVAILABLE,
            f"policy decision is malformed: {err.error_count()} error(s)",
            bundle_hash=bundle_hash,
            input_hash=input_hash,
        )
    return _consistent(decision)


# Room for the two hashes parse_decision adds (2 x 64 hex and their keys) and for
# number formats that differ between the engine's JSON and Python's.
_HASHES_ROOM = 512


def parse_decision_json(text: str, *, bundle_hash: str, input_hash: str) -> Decision:
    """parse_decision on a decision given as JSON text, with the same outcome: a plainly
    valid decision is checked from the text in one step; anything in doubt (over the
    size bound, non-ASCII, not valid strictly) takes parse_decision's path, which says
    what is wrong."""
    if text.isascii() and len(text) + _HASHES_ROOM <= MAX_DECISION_BYTES:
        try:
            decision = Decision.model_validate_json(text, strict=True)
        except ValidationError:
            pass
        else:
            decision.bundle_hash, decision.input_hash = bundle_hash, input_hash
            return _consistent(decision)
    try:
        raw = json.loads(text)
    except ValueError:
        raw = None  # not JSON: undefined, a deny
    return parse_decision(raw, bundle_hash=bundle_hash, input_hash=input_hash)


def _consistent(decision: Decision) -> Decision:
    """The decision, or a deny if it contradicts itself; its sets in a fixed order."""
    bundle_hash, input_hash = decision.bundle_hash, decision.input_hash
    if decision.allow == bool(decision.deny) or (decision.require_approval and not decision.allow):
        return Decision.fail_closed(
            UNAVAILABLE,
            "policy decision contradicts itself",
            bundle_hash=bundle_hash,
            input_hash=input_hash,
        )
    # Sets come back in engine order; sort so both backends give identical decisions.
    decision.deny.sort(key=lambda v: (v.code, v.msg))
    decision.approval.sort(key=lambda a: (a.role, a.reason))
    decision.obligations.sort(key=lambda o: sorted(o.items(), key=str).__repr__())
    return decision
