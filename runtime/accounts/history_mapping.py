"""The mapping from a customer's own event names onto the product's signals and modules.

A customer's history speaks its own vocabulary ("App Opened", "Report Exported"); the
one event fold speaks the product's (`login`, `feature_use` of `reports`). The mapping
file says, once, which is which, and is checked before a row is read: a wrong signal,
module or field fails with the file, line and field, like an agent spec.

    columns: {account: account_id, time: occurred_at, event: event, count: count}
    events:
      App Opened: {signal: login, count_as: logins}   # the day's count is the logins
      Report Exported: {signal: feature_use, module: reports}
      Ticket Created: {signal: ticket_opened, set: {priority: P3}}
      Heartbeat: {signal: ignore}

A source name the mapping does not list passes through when it is itself a product
signal (a file of the product's own events needs no mapping) and is counted as
unmapped otherwise."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlmodel import Session

from autopilot.runtime.agents.specs import _line_of  # pyright: ignore[reportPrivateUsage]
from autopilot.runtime.contracts.event import REQUIRED_FIELD, EventIn
from autopilot.runtime.health.features import MODULES
from autopilot.runtime.store.customer import OrgConfig

IGNORE = "ignore"
# Payload fields a row (or a mapping's `set`) may carry, and their types.
PAYLOAD = {
    name: EventIn.model_fields[name]
    for name in (
        "active_users",
        "seats_used",
        "logins",
        "priority",
        "score",
        "sentiment",
        "amount",
        "module",
        "seats",
    )
}
COUNTABLE = ("logins", "active_users", "seats_used", "seats")


class MappingError(ValueError):
    """A mapping file that cannot be used: `path:line: field: problem`."""

    def __init__(self, path: str, line: int, field: str, problem: str) -> None:
        self.path, self.line, self.field, self.problem = path, line, field, problem
        super().__init__(f"{path}:{line}: {field}: {problem}")


class Columns(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account: str = "account_id"
    time: str = "occurred_at"  # a timestamp or a date (YYYY-MM-DD)
    event: str = "type"
    count: str | None = None  # a daily count column: the row stands for that many events


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signal: str
    module: str | None = None
    count_as: Literal["logins", "active_users", "seats_used", "seats"] | None = None
    set: dict[str, Any] = {}


class MappingFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    columns: Columns = Columns()
    events: dict[str, Rule] = {}


@dataclass(frozen=True)
class Compiled:
    """One source event name, ready for the hot loop: the payload it starts from."""

    signal: str  # a product signal, or IGNORE
    base: dict[str, Any]
    count_as: str | None


@dataclass(frozen=True)
class Mapping:
    columns: Columns
    rules: dict[str, Compiled] = field(default_factory=dict)
    text: str = ""  # the file as read: part of an import's identity

    def rule(self, source: str) -> Compiled | None:
        """How `source` folds in: its rule, itself when it is a product signal, or None."""
        found = self.rules.get(source)
        if found is None and source in REQUIRED_FIELD:
            found = Compiled(signal=source, base={"type": source}, count_as=None)
        return found


def identity(columns: Columns | None = None) -> Mapping:
    """No mapping file: the source already speaks the product's signals."""
    return Mapping(columns=columns or Columns())


def load_mapping(path: Path, *, modules: tuple[str, ...]) -> Mapping:
    """Read and check `path` against the product's signals and the organisation's
    `modules`; the first problem raises with its line."""
    text = path.read_text()
    name = str(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        raise MappingError(name, mark.line + 1 if mark else 1, "<yaml>", str(err.problem)) from None
    if root is None or not isinstance(data, dict):
        raise MappingError(name, 1, "<root>", "a mapping file must be a YAML mapping")
    try:
        parsed = MappingFile.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = tuple(first["loc"])
        raise MappingError(
            name, _line_of(root, loc), ".".join(map(str, loc)), first["msg"]
        ) from None
    rules: dict[str, Compiled] = {}
    for source, rule in parsed.events.items():

        def bad(key: str, problem: str, source: str = source) -> MappingError:
            loc = ("events", source, key)
            return MappingError(name, _line_of(root, loc), ".".join(loc), problem)

        if rule.signal == IGNORE:
            rules[source] = Compiled(signal=IGNORE, base={}, count_as=None)
            continue
        if rule.signal not in REQUIRED_FIELD:
            raise bad("signal", f"unknown signal {rule.signal!r} (one of {sorted(REQUIRED_FIELD)})")
        base: dict[str, Any] = {"type": rule.signal}
        for key, value in rule.set.items():
            if key not in PAYLOAD or key == "module":
                raise bad("set", f"{key!r} is not a payload field (one of {sorted(PAYLOAD)})")
            try:  # the event contract's own check of the value
                EventIn.model_validate({"account_id": "x", "type": "login", key: value})
            except ValidationError as err:
                raise bad("set", f"{key}: {err.errors()[0]['msg']}") from None
            base[key] = value
        if rule.module is not None:
            if rule.signal != "feature_use":
                raise bad("module", "only a feature_use signal has a module")
            if rule.module not in modules:
                raise bad("module", f"unknown module {rule.module!r} (one of {list(modules)})")
            base["module"] = rule.module
        required = REQUIRED_FIELD[rule.signal]
        if required is not None and required not in base and rule.count_as != required:
            raise bad("signal", f"a {rule.signal!r} signal needs {required!r} (set or count_as)")
        rules[source] = Compiled(signal=rule.signal, base=base, count_as=rule.count_as)
    return Mapping(columns=parsed.columns, rules=rules, text=text)


# The product's own vocabulary, for an organisation that has not set its own.
DEFAULT_SEGMENTS = ("enterprise", "mid_market", "smb", "tech_touch")


@dataclass(frozen=True)
class Vocabulary:
    segments: tuple[str, ...]
    modules: tuple[str, ...]


def vocabulary(session: Session, org_id: str) -> Vocabulary:
    """The organisation's segments and modules (the product's when it has none)."""
    row = session.get(OrgConfig, org_id)
    if row is None:
        return Vocabulary(segments=DEFAULT_SEGMENTS, modules=MODULES)
    return Vocabulary(segments=tuple(row.segments), modules=tuple(row.modules))


def set_vocabulary(
    session: Session, org_id: str, *, segments: list[str] | None, modules: list[str] | None
) -> Vocabulary:
    """Set either list; a module the usage rollup cannot record is refused (its bit set
    holds the product's modules), so a mapping can never name one the fold would drop."""
    current = vocabulary(session, org_id)
    if modules is not None and (unknown := [m for m in modules if m not in MODULES]):
        raise ValueError(f"modules: {unknown[0]!r} is not a product module (one of {MODULES})")
    if segments is not None and not all(s.strip() for s in segments):
        raise ValueError("segments: empty name")
    row = session.get(OrgConfig, org_id) or OrgConfig(org_id=org_id, segments=[], modules=[])
    row.segments = list(segments if segments is not None else current.segments)
    row.modules = list(modules if modules is not None else current.modules)
    session.add(row)
    session.flush()
    return Vocabulary(segments=tuple(row.segments), modules=tuple(row.modules))
