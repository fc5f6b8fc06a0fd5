"""The real app served by uvicorn on loopback over the test stack, with its OpenAPI
schema loaded by schemathesis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from autopilot.runtime.api.app import create_app
from tests.conftest import Stack, free_port

# The pass rule: no server error, no status the schema does not list, bodies (and the
# headers it names) as documented.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def bounded(examples: int) -> settings:
    """Hypothesis settings for a fuzz pass: `examples` per operation, the same on every run."""
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


@dataclass
class Served:
    url: str
    schema: schemathesis.BaseSchema


@pytest.fixture
async def served(stack: Stack) -> AsyncIterator[Served]:
    """Over real HTTP because schemathesis's client blocks: tests send from a thread
    (asyncio.to_thread) while the app answers on this loop, where the stack's Temporal
    client lives."""
    app = create_app(stack.services, stack.ingest)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not serving.done(), "uvicorn did not start"
            await asyncio.sleep(0.02)
        yield Served(
            f"http://127.0.0.1:{server.config.port}", schemathesis.openapi.from_dict(app.openapi())
        )
    finally:
        server.should_exit = True
        await serving
