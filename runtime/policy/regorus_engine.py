"""The default in-process backend: Rego evaluated with regorus (Microsoft's Rust
interpreter, MIT; PyPI `gordon-to-regorus`), several times faster than regopy on this
bundle with the same decisions (tests/policies/test_engine_parity.py).

A regorus `Engine` is bound to the thread that created it: used or even dropped on
another thread it raises (a pyo3 "unsendable" check). So each thread that evaluates
builds its own engine per bundle (about 3 ms, once) and keeps it in a thread-local
cache that lives as long as the thread; engines are only ever dropped on their own
thread. Bundles, reload and the fail-closed handling live in LocalEngine."""

from __future__ import annotations

import itertools
import json
import re
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regorus import Engine  # pyright: ignore[reportAttributeAccessIssue] - compiled, no stubs

from autopilot.runtime.policy.bundle import bundle_data
from autopilot.runtime.policy.engine import (
    Compiled,
    LocalEngine,
    PolicyEvalError,
    PolicyLoadError,
    compiled_from,
    read_bundle,
)

RULE = "data.autopilot.decision"
UNDEFINED = '"<undefined>"'  # what eval_rule_as_json returns for an undefined rule

# Module-level, so never deallocated: a per-instance local would drop every thread's
# engines on whichever thread collected the instance.
_THREAD = threading.local()
_TOKENS = itertools.count()


@dataclass(frozen=True)
class Sources:
    """What a thread needs to build its engine for one bundle."""

    modules: tuple[tuple[str, str], ...]
    data_json: str


def _build(sources: Sources) -> Engine:
    engine = Engine()
    for name, text in sources.modules:
        engine.add_policy(name, text)
    # Overlapping base documents are merged first, as for regopy, so both load alike.
    engine.add_data_json(sources.data_json)
    return engine


def _located(err: BaseException) -> str:
    """`line N: message` from regorus's report (`--> file:line:col ... error: msg`)."""
    text = str(err).split("Stack backtrace:")[0]
    line = re.search(r"-->\s*[^\n]*?:(\d+):\d+", text)
    msg = re.search(r"error: ([^\n]*)", text)
    if line and msg:
        return f"line {line.group(1)}: {msg.group(1)}"
    return text.strip()[:300]


class _Cached:
    __slots__ = ("engine", "owner")

    def __init__(self, owner: weakref.ref[RegorusEngine], engine: Engine) -> None:
        self.owner, self.engine = owner, engine


def _thread_cache() -> dict[tuple[int, str], _Cached]:
    cache = getattr(_THREAD, "engines", None)
    if cache is None:
        cache = _THREAD.engines = {}
    return cache


class RegorusEngine(LocalEngine):
    def __init__(self, folder: Path) -> None:
        self._token = next(_TOKENS)  # not id(): ids are reused after collection
        super().__init__(folder)

    def _compile(self, folder: Path) -> Compiled:
        files = read_bundle(folder)
        sources = Sources(
            modules=tuple((n, t) for n, t in files.items() if n.endswith(".rego")),
            data_json=json.dumps(bundle_data(files)),
        )
        engine = Engine()  # a trial build on this thread, for errors with file and line
        for name, text in sources.modules:
            try:
                engine.add_policy(name, text)
            except RuntimeError as err:
                raise PolicyLoadError(f"{folder / name}: {_located(err)}") from err
        try:
            engine.add_data_json(sources.data_json)
        except RuntimeError as err:
            raise PolicyLoadError(f"policies under {folder} do not load: {_located(err)}") from err
        return compiled_from(files, sources)

    def _engine(self, compiled: Compiled) -> Engine:
        cache = _thread_cache()
        cached = cache.get((self._token, compiled.hash))
        if cached is not None:
            return cached.engine
        # A miss is rare (a new thread or bundle): drop this thread's engines of
        # collected RegorusEngines here, on the thread that owns them.
        for key in [k for k, c in cache.items() if c.owner() is None]:
            del cache[key]
        engine = _build(compiled.bundle)
        cache[(self._token, compiled.hash)] = _Cached(weakref.ref(self), engine)
        return engine

    def _query(self, compiled: Compiled, payload: dict[str, Any], text: str) -> Any:
        try:
            engine = self._engine(compiled)
            engine.set_input_json(text)
            out = engine.eval_rule_as_json(RULE)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as err:  # a Rust panic (pyo3) is a BaseException: all deny
            raise PolicyEvalError(_located(err)) from err
        if out == UNDEFINED:
            return None  # undefined: parse_decision denies it
        return json.loads(out)
