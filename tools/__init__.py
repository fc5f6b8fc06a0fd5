"""Built-in tools register themselves on import."""

from autopilot.tools import accounts as _accounts  # noqa: F401
from autopilot.tools import connectors as _connectors  # noqa: F401
from autopilot.tools import email as _email  # noqa: F401
from autopilot.tools.registry import registry

__all__ = ["registry"]
