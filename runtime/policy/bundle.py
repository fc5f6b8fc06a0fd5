"""A policy bundle on disk: its .rego modules, its data documents and its hash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autopilot.runtime.contracts.hashing import sha256_hex


def bundle_files(folder: Path) -> dict[str, str]:
    """Every .rego module and data.json under `folder`, by relative path."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".rego" or path.name == "data.json":
            files[path.relative_to(folder).as_posix()] = path.read_text()
    return files


def bundle_data(files: dict[str, str]) -> dict[str, Any]:
    """All data.json files as one document; like an OPA bundle, data.json in folder
    a/b is mounted at data.a.b."""
    root: dict[str, Any] = {}
    for name, text in files.items():
        if not name.endswith("data.json"):
            continue
        node = root
        for part in Path(name).parent.parts:
            node = node.setdefault(part, {})
        node.update(json.loads(text))
    return root


def compute_bundle_hash(folder: Path) -> str:
    return sha256_hex(bundle_files(folder))
