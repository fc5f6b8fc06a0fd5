"""The Copilot's tests run on the full stack with the shipped knowledge base already
embedded: it is embedded once per session and copied into each stack's data directory
(embedding it takes tens of seconds; a copy, a few milliseconds)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from autopilot.runtime.config import Settings
from autopilot.runtime.kb import store as kb
from tests.conftest import Stack


@pytest.fixture(scope="session")
def shipped_kb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kb")
    kb.ensure_shipped(Settings(data_dir=root))
    return root / "chroma"


@pytest.fixture
async def stack(stack_factory, shipped_kb: Path, tmp_path: Path) -> AsyncIterator[Stack]:  # type: ignore[no-untyped-def]
    shutil.copytree(shipped_kb, tmp_path / "chroma")
    async with stack_factory() as s:
        yield s
