"""Apply a sandbox policy's limits to this process, then exec the confined command:
`python -m autopilot.tools.launch POLICY_JSON CGROUP -- ARGV…`. Used where the
process is spawned by someone else (the MCP client's stdio transport)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> None:
    from autopilot.tools.sandbox import SandboxPolicy, _limits  # noqa: PLC0415 - the confined child imports as little as it can

    sep = sys.argv.index("--")
    raw, cgroup = json.loads(sys.argv[1]), sys.argv[2]
    policy = SandboxPolicy(**{**raw, "hosts": tuple(raw.get("hosts", ()))})
    _limits(policy, Path(cgroup) if cgroup else None)()
    argv = sys.argv[sep + 1 :]
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
