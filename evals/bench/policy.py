"""Policy gate latency and throughput on both in-process engines (regorus's VM, the
default; regopy, the fallback), each against its raw engine call on the same inputs in
the same run (the physical limit of that engine), plus regorus's tree-walking
interpreter on the same bundle (what the gate ran before the VM) and each package's
own cost on all three.

    python -m autopilot.evals.bench.policy --n 5000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from regorus import Engine  # pyright: ignore[reportAttributeAccessIssue] - compiled, no stubs

from autopilot.runtime.config import Settings
from autopilot.runtime.contracts.policy import PolicyInput
from autopilot.runtime.policy.bundle import bundle_data, bundle_files
from autopilot.runtime.policy.cases import case_input, load_cases
from autopilot.runtime.policy.engine import decide
from autopilot.runtime.policy.rego import RegoEngine, interpreter
from autopilot.runtime.policy.regorus_engine import (
    RULE,
    RegorusEngine,
    Sources,
    compile_program,
    load_vm,
)

ENGINES = ("regorus", "interpreter", "regopy")  # regorus's VM, its tree-walker, regopy
PACKAGES = ["input", "scope", "budget", "discount", "contact", "consent", "residency"]
RULES = [f"data.autopilot.{p}.deny" for p in PACKAGES] + [
    "data.autopilot.approval.required",
    "data.autopilot.approval.obligations",
    RULE,
]


def inputs(folder: Path) -> list[PolicyInput]:
    """Every schema-valid case input: a realistic mix of allows, approvals and denies."""
    bases = yaml.safe_load((folder / "cases_base.yaml").read_text())
    out = []
    for case in load_cases(folder):
        if case.raw:
            continue
        try:
            out.append(PolicyInput.model_validate(case_input(case, bases)))
        except ValueError:
            continue
    return out


def timed(
    fn: Callable[[Any], Any], items: list[Any], n: int, cpu: list[float] | None = None
) -> list[float]:
    """Wall-clock µs per call; with `cpu`, also this thread's CPU µs per call (the
    machine is shared: CPU time shows the engine's cost without the waits for a core)."""
    samples = []
    for i in range(n):
        item = items[i % len(items)]
        c0, t0 = time.thread_time(), time.perf_counter()
        fn(item)
        samples.append((time.perf_counter() - t0) * 1e6)
        if cpu is not None:
            cpu.append((time.thread_time() - c0) * 1e6)
    return samples


def stats(samples: list[float], cpu: list[float] | None = None) -> dict[str, float]:
    ordered = sorted(samples)
    out = {
        "n": len(samples),
        "p50_us": round(ordered[len(ordered) // 2], 1),
        "p99_us": round(ordered[int(len(ordered) * 0.99)], 1),
        "per_s": round(1e6 / statistics.fmean(samples), 0),
    }
    if cpu:
        cpu = sorted(cpu)
        out["cpu_p50_us"] = round(cpu[len(cpu) // 2], 1)
        out["cpu_p99_us"] = round(cpu[int(len(cpu) * 0.99)], 1)
        out["cpu_mean_us"] = round(statistics.fmean(cpu), 1)
    return out


def interpreter_engine(files: dict[str, str]) -> Engine:
    """regorus's tree-walking interpreter on the bundle (the gate's engine before the VM)."""
    engine = Engine()
    for name, text in files.items():
        if name.endswith(".rego"):
            engine.add_policy(name, text)
    engine.add_data_json(json.dumps(bundle_data(files)))
    return engine


def package_costs(folder: Path, payloads: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """p50 µs of each package's rule alone, on each engine (input set + evaluation)."""
    files = bundle_files(folder)
    modules = [(name, text) for name, text in files.items() if name.endswith(".rego")]
    data_json = json.dumps(bundle_data(files))
    vm = load_vm(compile_program(modules, data_json, RULES), data_json)
    tree = interpreter_engine(files)
    interp = interpreter()
    for name, text in modules:
        interp.add_module(name, text)
    interp.add_data(bundle_data(files))
    texts = [json.dumps(p) for p in payloads]
    out: dict[str, Any] = {}
    for rule in RULES:
        built = interp.build(f"x = {rule}", [])

        def on_vm(k: int, rule: str = rule) -> None:
            vm.set_input_json(texts[k])
            vm.execute_entry_point(rule)

        def on_tree(k: int, rule: str = rule) -> None:
            tree.set_input_json(texts[k])
            tree.eval_rule_as_json(rule)

        def on_regopy(k: int, built: Any = built) -> None:
            interp.set_input(payloads[k])  # pyright: ignore[reportArgumentType] - any JSON value
            assert interp.query_bundle(built).ok()

        idx = list(range(len(payloads)))
        out[rule] = {}
        for name, fn in (("regorus", on_vm), ("interpreter", on_tree), ("regopy", on_regopy)):
            timed(fn, idx, 100)  # warm-up
            cpu: list[float] = []
            figures = stats(timed(fn, idx, n, cpu), cpu)
            out[rule] |= {
                f"{name}_p50_us": figures["p50_us"],
                f"{name}_cpu_us": figures["cpu_mean_us"],
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    settings = Settings()
    folder = settings.policies_path
    regopy_engine, regorus_engine = RegoEngine(folder), RegorusEngine(folder)
    items = inputs(folder)
    payloads = [i.model_dump(mode="json") for i in items]
    raw_interp = interpreter()
    bundle = regopy_engine._current.bundle  # the very bundle the engine evaluates
    sources: Sources = regorus_engine._current.bundle
    raw_vm = regorus_engine._vm(regorus_engine._current)  # this thread's own VM
    tree = interpreter_engine(bundle_files(folder))

    def raw_regopy(payload: dict[str, Any]) -> Any:
        raw_interp.set_input(payload)  # pyright: ignore[reportArgumentType] - any JSON value
        out = raw_interp.query_bundle(bundle)
        assert out.ok()
        return out.results[0].__dict__["bindings"]["x"]

    def raw_regorus(payload: dict[str, Any]) -> Any:
        raw_vm.set_input_json(json.dumps(payload))
        return json.loads(raw_vm.execute())

    def raw_interpreter(payload: dict[str, Any]) -> Any:
        tree.set_input_json(json.dumps(payload))
        return json.loads(tree.eval_rule_as_json(RULE))

    gates: dict[str, Callable[[Any], Any]] = {
        "gate_regorus": lambda item: decide(regorus_engine, item),
        "gate_regopy": lambda item: decide(regopy_engine, item),
    }
    raws: dict[str, Callable[[Any], Any]] = {
        "raw_regorus": raw_regorus,
        "raw_regopy": raw_regopy,
        "raw_interpreter": raw_interpreter,
    }
    # Same outcome on every input and engine, or the comparison means nothing.
    for item, payload in zip(items, payloads, strict=True):
        allow = raw_regopy(payload)["allow"]
        assert raw_regorus(payload)["allow"] == raw_interpreter(payload)["allow"] == allow
        assert all(gate(item).allow == allow for gate in gates.values())
    for _ in range(3):  # warm-up
        for fn in raws.values():
            timed(fn, payloads, 300)
        for fn in gates.values():
            timed(fn, items, 300)
    samples: dict[str, list[float]] = {name: [] for name in [*gates, *raws]}
    cpu: dict[str, list[float]] = {name: [] for name in samples}
    for _ in range(5):  # interleaved blocks: all see the same machine noise
        for name, fn in raws.items():
            samples[name] += timed(fn, payloads, args.n // 5, cpu[name])
        for name, fn in gates.items():
            samples[name] += timed(fn, items, args.n // 5, cpu[name])
    result: dict[str, Any] = {name: stats(s, cpu[name]) for name, s in samples.items()}
    result["meta"] = {
        "at": datetime.now(UTC).isoformat(),
        "inputs": len(items),
        "cpus": os.cpu_count(),
        "bundle_hash": regopy_engine.bundle_hash,
        "default_engine": settings.policy_engine,
        "program_bytes": len(sources.program),
    }
    for engine in ("regorus", "regopy"):
        gate, raw = result[f"gate_{engine}"], result[f"raw_{engine}"]
        result[f"ratio_{engine}"] = {
            "throughput": round(gate["per_s"] / raw["per_s"], 3),
            "p50": round(gate["p50_us"] / raw["p50_us"], 3),
        }
    # Throughput with concurrent gates (the worker's activity threads), one per core.
    threads = os.cpu_count() or 1
    per_thread = args.n // threads
    for name, gate in gates.items():
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(
                pool.map(
                    lambda k, gate=gate: timed(gate, items[k:] + items[:k], per_thread),
                    range(threads),
                )
            )
        result[f"{name}_concurrent"] = {
            "threads": threads,
            "per_s": round(threads * per_thread / (time.perf_counter() - t0), 0),
        }
    result["packages"] = package_costs(folder, payloads, max(args.n // 10, 200))
    out = args.out or settings.data_dir / "bench" / f"policy-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    for name in (*gates, *raws):
        r = result[name]
        print(
            f"{name:<15} p50 {r['p50_us']:7.1f} µs  p99 {r['p99_us']:7.1f} µs  {r['per_s']:8.0f}/s"
            f"  (CPU p50 {r['cpu_p50_us']:7.1f} µs  p99 {r['cpu_p99_us']:7.1f} µs"
            f"  mean {r['cpu_mean_us']:7.1f} µs)"
        )
    for name in gates:
        print(f"{name}, {threads} threads: {result[f'{name}_concurrent']['per_s']:.0f}/s")
    print("CPU µs per evaluation:", " ".join(f"{e:>11}" for e in ENGINES))
    for rule, cost in result["packages"].items():
        print(f"{rule:<40}" + " ".join(f"{cost[f'{e}_cpu_us']:11.1f}" for e in ENGINES))
    print(f"({len(items)} distinct inputs)  written: {out}")


if __name__ == "__main__":
    main()
