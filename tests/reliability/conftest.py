"""The fault suite's long form runs on demand: `./dev test tests/reliability -m long`."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "long: the long form of a fault test (run with -m long)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "long" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="long form: run with -m long")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)
