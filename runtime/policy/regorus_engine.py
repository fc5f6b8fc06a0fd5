"""The default in-process backend: Rego evaluated with regorus (Microsoft's Rust engine,
MIT; PyPI `gordon-to-regorus`) on its RVM, the register VM that upstream makes its
main execution path: a bundle is compiled to bytecode once, and a decision is one
`execute` on a VM that already holds the program and the data (about 4x less CPU
than regorus's tree-walking interpreter on this bundle, 25x less than regopy). The
decisions are regopy's and OPA's (tests/policies/test_engine_parity.py).

RVM facts the contract relies on: an evaluation error (say `+` on a string) leaves
the rule undefined as in OPA, and a complete rule with two values is undefined too —
both deny here, as an undefined decision. The VM stops after 25,000 instructions (a
policy that loops over unbounded input fails closed, a deny); this bundle's loops
are over fixed tables, so no input size comes near it.

A regorus `Program` or `Rvm` is bound to the thread that created it: used or even
dropped on another thread it raises (a pyo3 "unsendable" check). So the bundle is
kept as serialised bytecode, and each thread that evaluates loads its own VM per
bundle (about 0.2 ms, once) into a thread-local cache that lives as long as the
thread; VMs are only ever dropped on their own thread. Bundles, reload and the
fail-closed handling live in LocalEngine."""

from __future__ import annotations

import itertools
import json
import re
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regorus import Program, Rvm  # pyright: ignore[reportAttributeAccessIssue] - compiled, no stubs

from autopilot.runtime.policy.bundle import bundle_data
from autopilot.runtime.policy.engine import (
    Compiled,
    DecisionJson,
    LocalEngine,
    PolicyEvalError,
    PolicyLoadError,
    compiled_from,
    read_bundle,
)

RULE = "data.autopilot.decision"
UNDEFINED = '"<undefined>"'  # what the VM returns for an undefined rule

# Module-level, so never deallocated: a per-instance local would drop every thread's
# VMs on whichever thread collected the instance.
_THREAD = threading.local()
_TOKENS = itertools.count()


@dataclass(frozen=True)
class Sources:
    """What a thread needs to load its VM for one bundle."""

    program: bytes  # the bundle's bytecode (a Program object is thread-bound)
    data_json: str


def compile_program(modules: list[tuple[str, str]], data_json: str, rules: list[str]) -> Any:
    """The modules compiled for the VM with `rules` as entry points; RuntimeError if not."""
    return Program.compile_from_modules(data_json, modules, rules)


def load_vm(program: Any, data_json: str) -> Rvm:
    vm = Rvm()
    vm.load_program(program)
    vm.set_data_json(data_json)
    return vm


def _build(sources: Sources) -> Rvm:
    program, _ = Program.deserialize_binary(sources.program)  # (program, needs recompiling)
    return load_vm(program, sources.data_json)


def _located(err: BaseException, folder: Path | None = None) -> str:
    """`folder/file: line N: message` from regorus's report (`--> file:line:col ...
    error: msg`), or the report itself (naming `folder` if given)."""
    text = str(err).split("Stack backtrace:")[0]
    where = re.search(r"-->\s*([^\n]*?):(\d+):\d+", text)
    msg = re.search(r"error: ([^\n]*)", text)
    if where and msg:
        file = folder / where.group(1) if folder else where.group(1)
        return f"{file}: line {where.group(2)}: {msg.group(1)}"
    return f"policies under {folder}: {text.strip()[:300]}" if folder else text.strip()[:300]


class _Cached:
    __slots__ = ("owner", "vm")

    def __init__(self, owner: weakref.ref[RegorusEngine], vm: Rvm) -> None:
        self.owner, self.vm = owner, vm


def _thread_cache() -> dict[tuple[int, str], _Cached]:
    cache = getattr(_THREAD, "vms", None)
    if cache is None:
        cache = _THREAD.vms = {}
    return cache


class RegorusEngine(LocalEngine):
    def __init__(self, folder: Path) -> None:
        self._token = next(_TOKENS)  # not id(): ids are reused after collection
        super().__init__(folder)

    def _compile(self, folder: Path) -> Compiled:
        files = read_bundle(folder)
        modules = [(n, t) for n, t in files.items() if n.endswith(".rego")]
        data_json = json.dumps(bundle_data(files))
        try:
            program = compile_program(modules, data_json, [RULE])
            load_vm(program, data_json)  # a trial load on this thread: the data must load too
        except RuntimeError as err:
            raise PolicyLoadError(_located(err, folder)) from err
        return compiled_from(files, Sources(program.serialize_binary(), data_json))

    def _vm(self, compiled: Compiled) -> Rvm:
        cache = _thread_cache()
        cached = cache.get((self._token, compiled.hash))
        if cached is not None:
            return cached.vm
        # A miss is rare (a new thread or bundle): drop this thread's VMs of
        # collected RegorusEngines here, on the thread that owns them.
        for key in [k for k, c in cache.items() if c.owner() is None]:
            del cache[key]
        vm = _build(compiled.bundle)
        cache[(self._token, compiled.hash)] = _Cached(weakref.ref(self), vm)
        return vm

    def _query(self, compiled: Compiled, payload: dict[str, Any], text: str) -> Any:
        try:
            vm = self._vm(compiled)
            vm.set_input_json(text)
            out = vm.execute()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as err:  # a Rust panic (pyo3) is a BaseException: all deny
            raise PolicyEvalError(_located(err)) from err
        if out == UNDEFINED:
            return None  # undefined: parse_decision denies it
        return DecisionJson(out)
