"""The built-in tools, registered on import: `from autopilot.tools.builtin import registry`
gives the registry with all of them. Kept out of the package's `__init__`, so that a
sandboxed child (`python -m autopilot.tools.sandbox_child`) imports none of them, nor
numpy and the store they bring, under its memory limit."""

from autopilot.tools import accounts as _accounts  # noqa: F401
from autopilot.tools import compliance as _compliance  # noqa: F401
from autopilot.tools import connectors as _connectors  # noqa: F401
from autopilot.tools import email as _email  # noqa: F401
from autopilot.tools.registry import registry

__all__ = ["registry"]
