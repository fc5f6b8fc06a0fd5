"""The JSON Schema of an agent spec (agents/agent.schema.json), generated from AgentSpec.

Editors validate and complete agents/*.yaml with it (each file starts with
`# yaml-language-server: $schema=agent.schema.json`). The committed file is kept in step
by a test; regenerate it with `python -m autopilot.runtime.agents.schema`.

The schema describes what an author writes: it leaves out what the loader fills in
(`template_sources`), and admits a single option where the model accepts one (`do`).
The checks that need the catalogue, the tool registry or a sample account (grants,
CEL fields, templates) stay with `autopilot agents validate`."""

from __future__ import annotations

import copy
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from autopilot.runtime.contracts.agent_spec import _DURATION, AgentSpec

SCHEMA_FILE = "agent.schema.json"
LOADER_FIELDS = ("template_sources",)  # set by the loader from the files beside the YAML
DRAFT = "https://json-schema.org/draft/2020-12/schema"


def agent_schema() -> dict[str, Any]:
    """AgentSpec's JSON Schema as an author's editor should see it."""
    generated = copy.deepcopy(AgentSpec.model_json_schema())
    for name in LOADER_FIELDS:
        generated["properties"].pop(name, None)
        if name in generated.get("required", []):
            generated["required"].remove(name)
    action = generated["$defs"]["ActionStep"]["properties"]
    # `do: education_email` is one option: the model turns a string into a list.
    many = action["do"]
    action["do"] = {
        "anyOf": [{"type": "string"}, {k: many[k] for k in ("type", "items", "minItems")}],
        "description": many["description"],
        "title": many["title"],
    }
    wait = generated["$defs"]["WaitStep"]["properties"]["wait"]
    wait["pattern"] = _DURATION.pattern
    return {
        "$schema": DRAFT,
        "title": "CS Autopilot agent",
        "description": (
            "An agent: agents/<name>.yaml, its templates in agents/<name>/<template>[.<lang>].j2. "
            "An agent needs a `trigger`, a `schedule`, or both."
        ),
        "type": generated["type"],
        "additionalProperties": generated["additionalProperties"],
        "required": generated["required"],
        "anyOf": [{"required": ["trigger"]}, {"required": ["schedule"]}],
        "properties": generated["properties"],
        "$defs": generated["$defs"],
    }


def schema_text() -> str:
    """The schema file's exact text (what `write_schema` writes)."""
    return json.dumps(agent_schema(), indent=2, ensure_ascii=False) + "\n"


def shipped_path() -> Path:
    """agents/agent.schema.json in the package (the repository's agents folder)."""
    return Path(str(resources.files("autopilot.agents"))) / SCHEMA_FILE


def write_schema(path: Path) -> Path:
    """Write the schema to `path` (a file, or a folder to write agent.schema.json into)."""
    if path.is_dir():
        path = path / SCHEMA_FILE
    path.write_text(schema_text())
    return path


if __name__ == "__main__":
    print(write_schema(Path(sys.argv[1]) if len(sys.argv) > 1 else shipped_path()))
