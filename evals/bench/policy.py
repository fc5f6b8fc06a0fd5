"""Policy gate latency and throughput against raw regopy `query_bundle` on the same
inputs in the same run (the physical limit of the in-process engine).

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

from autopilot.runtime.config import Settings
from autopilot.runtime.contracts.policy import PolicyInput
from autopilot.runtime.policy.cases import case_input, load_cases
from autopilot.runtime.policy.engine import decide
from autopilot.runtime.policy.rego import RegoEngine, interpreter


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


def timed(fn: Callable[[Any], Any], items: list[Any], n: int) -> list[float]:
    samples = []
    for i in range(n):
        item = items[i % len(items)]
        t0 = time.perf_counter()
        fn(item)
        samples.append((time.perf_counter() - t0) * 1e6)
    return samples


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(samples),
        "p50_us": round(ordered[len(ordered) // 2], 1),
        "p99_us": round(ordered[int(len(ordered) * 0.99)], 1),
        "per_s": round(1e6 / statistics.fmean(samples), 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    settings = Settings()
    folder = settings.policies_path
    engine = RegoEngine(folder)
    items = inputs(folder)
    payloads = [i.model_dump(mode="json") for i in items]
    raw_interp = interpreter()
    bundle = engine._current.bundle  # the very bundle the engine evaluates

    def raw(payload: dict[str, Any]) -> Any:
        raw_interp.set_input(payload)  # pyright: ignore[reportArgumentType] - any JSON value
        out = raw_interp.query_bundle(bundle)
        assert out.ok()
        return out.results[0].__dict__["bindings"]["x"]

    def gate(item: PolicyInput) -> Any:
        return decide(engine, item)

    # Same outcome on every input, or the comparison means nothing.
    for item, payload in zip(items, payloads, strict=True):
        assert raw(payload)["allow"] == gate(item).allow
    for _ in range(3):  # warm-up
        timed(raw, payloads, 300)
        timed(gate, items, 300)
    raw_s, gate_s = [], []
    for _ in range(5):  # interleaved blocks: both see the same machine noise
        raw_s += timed(raw, payloads, args.n // 5)
        gate_s += timed(gate, items, args.n // 5)
    result = {
        "raw_regopy": stats(raw_s),
        "gate": stats(gate_s),
        "meta": {
            "at": datetime.now(UTC).isoformat(),
            "inputs": len(items),
            "cpus": os.cpu_count(),
            "bundle_hash": engine.bundle_hash,
        },
    }
    result["ratio_throughput"] = round(result["gate"]["per_s"] / result["raw_regopy"]["per_s"], 3)
    # Throughput with concurrent gates (the worker's activity threads), one per core.
    threads = os.cpu_count() or 1
    per_thread = args.n // threads
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda k: timed(gate, items[k:] + items[:k], per_thread), range(threads)))
    result["gate_concurrent"] = {
        "threads": threads,
        "per_s": round(threads * per_thread / (time.perf_counter() - t0), 0),
    }
    result["ratio_p50"] = round(result["gate"]["p50_us"] / result["raw_regopy"]["p50_us"], 3)
    out = args.out or settings.data_dir / "bench" / f"policy-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    for name in ("raw_regopy", "gate"):
        r = result[name]
        print(
            f"{name:<11} p50 {r['p50_us']:7.1f} µs  p99 {r['p99_us']:7.1f} µs  {r['per_s']:8.0f}/s"
        )
    print(f"gate, {threads} threads: {result['gate_concurrent']['per_s']:.0f}/s")
    print(
        f"gate vs raw: throughput {result['ratio_throughput']:.2f}×, p50 {result['ratio_p50']:.2f}×  "
        f"({len(items)} distinct inputs)"
    )
    print(f"written: {out}")


if __name__ == "__main__":
    main()
