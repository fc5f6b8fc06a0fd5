"""Open-loop HTTP load from a process of its own, so that the client's CPU neither
runs in the server's process nor hides in its figures: request i is due at
start + i / rate and its latency counts from then (a stall of the server is not
hidden by the client waiting). A bare HTTP/1.1 keep-alive client on asyncio streams:
about a tenth of httpx's CPU per request, so the generator keeps to its schedule on a
busy machine; it reports the rate it achieved, how late it sent, and its own CPU.

    python -m autopilot.evals.bench.loadgen --url http://127.0.0.1:8400/approvals \
        --rate 200 --seconds 15      # headers as JSON in LOADGEN_HEADERS; JSON out
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def _exchange(conn: Conn, request: bytes) -> int:
    """One request on a kept-alive connection: the status (the body is read and dropped)."""
    reader, writer = conn
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(head[9:12])


async def run(
    url: str, headers: dict[str, str], rate: float, seconds: float, max_conns: int = 64
) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    # First in, first out: every connection stays in use, so none outlives the server's
    # keep-alive timeout while it waits at the back of the pool.
    idle: deque[Conn] = deque()
    opened = 0
    for _ in range(min(32, max_conns)):  # connect first: the measured part is the server
        conn = await asyncio.open_connection(host, port)
        await _exchange(conn, request)
        idle.append(conn)
        opened += 1
    total = int(rate * seconds)
    latencies: list[float] = []
    late: list[float] = []  # how long after its due time each request was sent
    errors = 0
    waiting = asyncio.Semaphore(max_conns)

    async def one(due: float) -> None:
        nonlocal errors, opened
        async with waiting:  # beyond max_conns a request queues here, and that counts
            reused = bool(idle)
            if reused:
                conn = idle.popleft()
            else:
                conn = await asyncio.open_connection(host, port)
                opened += 1
            late.append(time.perf_counter() - due)
            try:
                try:
                    status = await _exchange(conn, request)
                except (OSError, asyncio.IncompleteReadError):
                    if not reused:
                        raise
                    conn[1].close()  # closed by the server while idle: once more, anew
                    conn = await asyncio.open_connection(host, port)
                    opened += 1
                    status = await _exchange(conn, request)
                ok = status == 200
                idle.append(conn)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                ok = False
                conn[1].close()
            errors += not ok
            latencies.append((time.perf_counter() - due) * 1000)

    cpu0 = time.process_time()
    start = time.perf_counter() + 0.05
    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    for _, writer in idle:
        writer.close()
    return {
        "n": len(latencies),
        "errors": errors,
        "rate": rate,
        "achieved_rate": round(len(latencies) / elapsed, 1),
        "p50_ms": round(pct(latencies, 0.5), 2),
        "p99_ms": round(pct(latencies, 0.99), 2),
        "max_ms": round(max(latencies, default=0.0), 2),
        "send_late_p99_ms": round(pct(late, 0.99) * 1000, 2),
        "connections": opened,
        "client_cpu_ms_per_req": round(cpu / max(1, len(latencies)) * 1000, 3),
        "client_cpu_pct": round(cpu / elapsed * 100, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--max-conns", type=int, default=64)
    args = parser.parse_args()
    headers = json.loads(os.environ.get("LOADGEN_HEADERS", "{}"))
    result = asyncio.run(run(args.url, headers, args.rate, args.seconds, args.max_conns))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
