"""The loops that run beside a worker (dispatcher, reconciler, rescore, checkpoints)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def every(
    interval_s: float, stop: asyncio.Event, step: Callable[[], Awaitable[object]], *, what: str
) -> None:
    """Run `step` now and then every `interval_s` until `stop` is set. A step that fails
    is logged and tried again next time: a store hiccup must not end the loop."""
    while not stop.is_set():
        try:
            await step()
        except Exception:
            log.exception("%s failed; retrying", what)
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        except TimeoutError:
            pass
