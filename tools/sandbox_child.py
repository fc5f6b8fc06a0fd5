"""The sandboxed side of a tool call: read the payload on stdin, guard the process,
call the tool, write one JSON line on stdout. Run as
`python -I -m autopilot.tools.sandbox_child MODULE FUNCTION` by tools/sandbox.py."""

from __future__ import annotations

import importlib
import ipaddress
import json
import socket
import sys
from typing import Any


class SandboxViolation(PermissionError):
    pass


def _allowed(hosts: list[str]) -> set[tuple[str, int | None]]:
    out: set[tuple[str, int | None]] = set()
    for h in hosts:
        host, _, port = h.rpartition(":") if ":" in h else (h, "", "")
        host = host or h
        try:
            ips = {ipaddress.ip_address(host).compressed}
        except ValueError:
            ips = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
        out |= {(ip, int(port) if port else None) for ip in ips}
    return out


def guard(hosts: list[str]) -> None:
    """An audit hook (it cannot be removed): connections only to declared hosts, no
    new programs, no native code loaded by ctypes."""
    allowed = _allowed(hosts)

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in ("socket.connect", "socket.sendto"):
            address = args[1]
            if isinstance(address, tuple) and len(address) >= 2:
                ip, port = str(address[0]), int(address[1])
                if (ip, port) not in allowed and (ip, None) not in allowed:
                    raise SandboxViolation(
                        f"connection to {ip}:{port} is not among the tool's declared hosts"
                    )
            elif not isinstance(address, tuple):
                raise SandboxViolation(f"socket address {address!r} is not allowed")
        elif event in ("subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.system"):
            raise SandboxViolation(f"{event} is not allowed in the sandbox")
        elif event.startswith("ctypes.dl"):
            raise SandboxViolation("loading native code with ctypes is not allowed in the sandbox")

    sys.addaudithook(hook)


def main() -> None:
    module, function = sys.argv[1], sys.argv[2]
    sys.path[:0] = sys.argv[3:]  # where the tool's own package lives (-I ignores PYTHONPATH)
    payload = json.loads(sys.stdin.read())
    # Everything the tool needs is imported before the guard goes up.
    from typing import get_type_hints  # noqa: PLC0415 - the guard is installed before the tool's imports

    from autopilot.tools.registry import ToolContext  # noqa: PLC0415 - the guard is installed before the tool's imports

    fn = getattr(importlib.import_module(module), function)
    hints = get_type_hints(fn)
    first = next(iter(hints))
    guard(payload.get("hosts", []))
    try:
        try:
            args = hints[first].model_validate(payload["args"])
        except ValueError as err:
            _reply(False, kind="args", message=str(err))
            return
        ctx = ToolContext(idempotency_key=payload["idempotency_key"], dry_run=payload["dry_run"])
        result = fn(args, ctx)
        _reply(True, result=result.model_dump(mode="json"))
    except SandboxViolation as err:
        _reply(False, kind="violation", message=str(err))
    except MemoryError:
        _reply(False, kind="resource", message="memory limit reached")
    except BlockingIOError as err:
        _reply(False, kind="resource", message=f"process limit reached ({err})")
    except OSError as err:
        if err.errno in (101, 113) or isinstance(
            err, socket.gaierror
        ):  # no route: the network is not shared
            _reply(False, kind="violation", message=f"network access denied: {err}")
        else:
            _reply(False, kind="error", message=f"{type(err).__name__}: {err}")
    except Exception as err:  # noqa: BLE001 - the tool's own failure, reported typed
        _reply(False, kind="error", message=f"{type(err).__name__}: {err}")


def _reply(ok: bool, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"ok": ok, **fields}, default=str) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
