"""The built-in demo tool set that ``python -m loopback serve`` offers when given no tools.

Owns: a few harmless, dependency-free tools that show each result shape.
Must not know: servers or transports; it only fills a registry.
"""

from __future__ import annotations

import datetime
import platform
from typing import Any, Optional

from .tools import ToolRegistry


def demo_registry() -> ToolRegistry:
    """A new registry holding the demo tools."""
    registry = ToolRegistry()

    @registry.tool(annotations={"readOnlyHint": True})
    def echo(text: str) -> str:
        """Return the text unchanged. Useful to check that the connection works."""
        return text

    @registry.tool(annotations={"readOnlyHint": True})
    def add(a: float, b: float) -> float:
        """Add two numbers and return the sum."""
        total = a + b
        # 2 + 3 answers "5", not "5.0": a whole sum that a float holds exactly is sent as an integer.
        return int(total) if total.is_integer() and abs(total) <= 2**53 else total

    @registry.tool(annotations={"readOnlyHint": True})
    def current_time(utc_offset_hours: Optional[float] = None) -> str:
        """The current date and time in ISO 8601, in UTC or at the given UTC offset (hours)."""
        zone = datetime.timezone.utc
        if utc_offset_hours is not None:
            if not -24 < utc_offset_hours < 24:
                raise ValueError("utc_offset_hours must be between -24 and 24")
            zone = datetime.timezone(datetime.timedelta(hours=utc_offset_hours))
        return datetime.datetime.now(zone).isoformat(timespec="seconds")

    @registry.tool(annotations={"readOnlyHint": True})
    def word_count(text: str) -> dict[str, Any]:
        """Count the characters, words and lines of a text."""
        return {"characters": len(text), "words": len(text.split()), "lines": len(text.splitlines())}

    @registry.tool(annotations={"readOnlyHint": True})
    def host_info() -> dict[str, Any]:
        """Describe the host process: Python version and platform."""
        return {"python": platform.python_version(), "implementation": platform.python_implementation(),
                "platform": platform.platform(terse=True)}

    return registry
